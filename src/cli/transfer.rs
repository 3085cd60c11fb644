//! `put`, `get` and `sql`: files to the server and results back, streamed batch by batch,
//! with a progress bar on a terminal.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use flightstore_client::{Client, Read, ReadStream, Write};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use super::files::{self, Counter, Format, Writer};
use super::progress;
use super::remote::{key_values, ItemPath};

/// `put`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct Put {
    /// The item to write.
    path: ItemPath,
    /// The files to upload, as one write (same columns in each).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The files' format (default: from their extension).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// append, upsert, overwrite, create or replace_range.
    #[arg(long, default_value = "append")]
    mode: String,
    /// The key of de-duplication (comma-separated).
    #[arg(long, value_delimiter = ',')]
    dedup_on: Vec<String>,
    /// Which duplicate stays: last or first.
    #[arg(long)]
    keep: Option<String>,
    /// The ordering column (default: the first timestamp column).
    #[arg(long)]
    ordered_on: Option<String>,
    /// replace_range's start.
    #[arg(long)]
    start: Option<String>,
    /// replace_range's end.
    #[arg(long)]
    end: Option<String>,
    /// Metadata to merge into the item's: KEY=VALUE (VALUE as JSON if it parses).
    #[arg(long = "metadata")]
    metadata: Vec<String>,
    /// A data-rules preset.
    #[arg(long)]
    preset: Option<String>,
    /// Make the write safe to retry (same id: committed once).
    #[arg(long)]
    write_id: Option<String>,
    /// Print the receipt as JSON.
    #[arg(long)]
    json: bool,
}

impl Put {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let (c, i) = (&self.path.collection, &self.path.item);
        let mut write = Write::append(c, i).mode(&self.mode);
        if !self.dedup_on.is_empty() {
            write = write.dedup_on(&self.dedup_on);
        }
        if let Some(keep) = &self.keep {
            write = write.keep(keep);
        }
        if let Some(column) = &self.ordered_on {
            write = write.ordered_on(column);
        }
        if !self.metadata.is_empty() {
            write = write.metadata(&key_values(&self.metadata)?);
        }
        if let Some(preset) = &self.preset {
            write = write.preset(preset);
        }
        if let Some(id) = &self.write_id {
            write = write.write_id(id);
        }
        let req = write.request_mut();
        req.start = self.start.map(Into::into);
        req.end = self.end.map(Into::into);

        let first = &self.files[0];
        let schema = files::schema_of(first, Format::for_path(self.format, first)?)?;
        let mut total = 0;
        for f in &self.files {
            total += std::fs::metadata(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .len();
        }
        let bar = progress::upload(total);
        let count = Counter::default();
        let batches = files::read_files(self.files, self.format, schema, Arc::clone(&count));
        let (rows, bar2) = (Counter::default(), bar.clone());
        let counted = Arc::clone(&rows);
        let batches = batches.inspect_ok(move |b| {
            let n = counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed) + b.num_rows() as u64;
            bar2.set_position(count.load(Ordering::Relaxed));
            bar2.set_message(format!("{n} rows"));
        });
        let receipt = client.write(write, batches).await;
        bar.finish_and_clear();
        let receipt = receipt?;
        if self.json {
            let mut out = json!({"rows_received": receipt.rows_received});
            if let Some(v) = receipt.version {
                out["version"] = v.into();
            }
            if let Some(n) = receipt.rows_written {
                out["rows_written"] = n.into();
            }
            if receipt.duplicate {
                out["duplicate"] = true.into();
            }
            println!("{out}");
        } else {
            let duplicate = if receipt.duplicate {
                " (a retry: already committed)"
            } else {
                ""
            };
            println!(
                "{c}/{i}: version {}, {} rows written of {} received{duplicate}",
                receipt.version.unwrap_or_default(),
                receipt.rows_written.unwrap_or_default(),
                receipt.rows_received
            );
        }
        Ok(())
    }
}

/// Where and how results go: `-o FILE` and `--format`.
#[derive(Debug, clap::Args)]
pub(crate) struct Output {
    /// Write to this file (default: stdout).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// table, csv, parquet, arrow or json (default: from -o's extension; on a terminal a
    /// table, else CSV).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

impl Output {
    /// The format to write in.
    fn format(&self) -> anyhow::Result<Format> {
        Ok(match (&self.format, &self.output) {
            (Some(f), _) => *f,
            (None, Some(path)) => Format::for_path(None, path)?,
            (None, None) if std::io::stdout().is_terminal() => Format::Table,
            (None, None) => Format::Csv,
        })
    }

    /// Write a read's batches, with a progress bar; the rows written.
    async fn write(&self, mut batches: ReadStream) -> anyhow::Result<u64> {
        let format = self.format()?;
        let stream_ipc = match &self.output {
            Some(p) => p.extension().is_some_and(|e| e == "arrows"),
            None => true,
        };
        let bar = progress::download(batches.total_records());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<arrow::array::RecordBatch>(2);
        let out = files::output(self.output.as_deref())?;
        let schema = batches.schema();
        // The writer is blocking: it runs on its own thread, two batches behind.
        let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut writer = Writer::new(format, out, &schema, stream_ipc)?;
            while let Some(batch) = rx.blocking_recv() {
                writer.write(&batch)?;
            }
            writer.finish()
        });
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut failed = None;
        while let Some(batch) = batches.next().await {
            match batch {
                Ok(batch) => {
                    rows += batch.num_rows() as u64;
                    bytes += batch.get_array_memory_size() as u64;
                    bar.set_position(rows);
                    bar.set_message(progress::bytes(bytes));
                    if tx.send(batch).await.is_err() {
                        break; // the writer failed: its error is below
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        bar.finish_and_clear();
        let written = writer.await.context("the writer's thread failed")?;
        if let Some(e) = failed {
            remove_partial(self.output.as_deref());
            return Err(e.into());
        }
        written.inspect_err(|_| remove_partial(self.output.as_deref()))?;
        Ok(rows)
    }
}

/// A file left half-written by a failed read is removed, never left looking complete.
fn remove_partial(path: Option<&Path>) {
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

/// `get`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct Get {
    /// The item to read.
    path: ItemPath,
    /// From this time (ISO-8601 or ns; inclusive).
    #[arg(long)]
    start: Option<String>,
    /// Up to this time (exclusive).
    #[arg(long)]
    end: Option<String>,
    /// Only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Only rows passing this SQL expression.
    #[arg(long)]
    filter: Option<String>,
    /// The last N rows.
    #[arg(long)]
    last: Option<u64>,
    /// The first N rows.
    #[arg(long)]
    limit: Option<u64>,
    /// As of this version.
    #[arg(long)]
    version: Option<u64>,
    /// As of this snapshot.
    #[arg(long)]
    snapshot: Option<String>,
    #[command(flatten)]
    output: Output,
}

impl Get {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let mut read = Read::new(&self.path.collection, &self.path.item).columns(self.columns);
        if let Some(t) = self.start {
            read = read.start(t);
        }
        if let Some(t) = self.end {
            read = read.end(t);
        }
        if let Some(f) = self.filter {
            read = read.filter(f);
        }
        if let Some(n) = self.last {
            read = read.last(n);
        }
        if let Some(n) = self.limit {
            read = read.limit(n);
        }
        if let Some(v) = self.version {
            read = read.version(v);
        }
        if let Some(s) = self.snapshot {
            read = read.snapshot(s);
        }
        let batches = client.read(read).await?;
        self.output.write(batches).await?;
        Ok(())
    }
}

/// `sql`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct Sql {
    /// The statement; without one, an interactive prompt reads statements ending in `;`.
    query: Option<String>,
    #[command(flatten)]
    output: Output,
}

impl Sql {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        if let Some(query) = &self.query {
            let batches = client.sql(query).await?;
            self.output.write(batches).await?;
            return Ok(());
        }
        self.prompt(client).await
    }

    /// Read statements from stdin (ending in `;`), run each and print its result; an
    /// error is printed and the prompt goes on. Ends at end of input or `\q`.
    async fn prompt(&self, client: &Client) -> anyhow::Result<()> {
        let interactive = std::io::stdin().is_terminal();
        let show_prompt = |continued: bool| {
            if interactive {
                eprint!(
                    "{}",
                    if continued {
                        "        -> "
                    } else {
                        "flightstore> "
                    }
                );
                let _ = std::io::stderr().flush();
            }
        };
        let mut statement = String::new();
        let mut failures = 0;
        show_prompt(false);
        let mut line = String::new();
        loop {
            line.clear();
            if std::io::stdin().read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim_end();
            if statement.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                break;
            }
            statement.push_str(line);
            statement.push('\n');
            let (complete, rest) = split_statements(&statement);
            statement = rest;
            for query in complete {
                let result = async {
                    let batches = client.sql(&query).await?;
                    self.output.write(batches).await
                }
                .await;
                match result {
                    Ok(rows) if interactive => eprintln!("({rows} rows)"),
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        eprintln!("error: {e:#}");
                    }
                }
            }
            show_prompt(!statement.trim().is_empty());
        }
        if interactive {
            eprintln!();
        }
        anyhow::ensure!(failures == 0, "{failures} statement(s) failed");
        Ok(())
    }
}

/// The statements of `text` that end in `;` (outside quotes), and the unfinished rest.
fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut done = Vec::new();
    let (mut start, mut quote) = (0, None);
    for (i, ch) in text.char_indices() {
        match (quote, ch) {
            (None, '\'' | '"') => quote = Some(ch),
            (Some(q), _) if ch == q => quote = None,
            (None, ';') => {
                let statement = text[start..i].trim();
                if !statement.is_empty() {
                    done.push(statement.to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let rest = text[start..].trim_start();
    (done, rest.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_end_at_semicolons_outside_quotes() {
        let (done, rest) = super::split_statements("select 1; select ';' as x;\nselect");
        assert_eq!(done, ["select 1", "select ';' as x"]);
        assert_eq!(rest, "select");
    }
}
