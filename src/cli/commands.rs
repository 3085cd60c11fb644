//! The client commands that are one or two calls: `ls`, `info`, `versions`, `rm`,
//! `snapshot`, `compact`, `vacuum`, `gaps`, `meta`.

use anyhow::{bail, Context};
use flightstore_client::{proto, time::format_time, Client};
use serde_json::{json, Value};

use super::remote::{key_values, print_json, print_table, split, time, ItemPath};

/// `ls`: collections, or a collection's items (with a name prefix).
pub(crate) async fn ls(
    client: &Client,
    path: Option<&str>,
    json_lines: bool,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        for c in client.list_collections().await? {
            if json_lines {
                println!("{}", json!({ "collection": c }));
            } else {
                println!("{c}");
            }
        }
        return Ok(());
    };
    let (collection, prefix) = split(path);
    let infos = client
        .list_flights(proto::ListCriteria {
            collection: Some(collection.into()),
            prefix: prefix.map(Into::into),
            metadata: None,
        })
        .await?;
    let mut rows = Vec::new();
    for info in infos {
        let descriptor = info
            .flight_descriptor
            .context("a FlightInfo without a descriptor")?;
        let item = descriptor.path.get(1..).unwrap_or_default().join("/");
        let meta: Value = serde_json::from_slice(&info.app_metadata).unwrap_or(Value::Null);
        let (start, end, version) = (
            meta["start"].as_i64(),
            meta["end"].as_i64(),
            meta["version"].as_u64(),
        );
        if json_lines {
            println!(
                "{}",
                json!({"collection": collection, "item": item, "rows": info.total_records,
                       "start": start, "end": end, "bytes": info.total_bytes, "version": version})
            );
        } else {
            rows.push(vec![
                item,
                info.total_records.to_string(),
                time(start),
                time(end),
                indicatif::HumanBytes(info.total_bytes.max(0) as u64).to_string(),
                version.map(|v| v.to_string()).unwrap_or_default(),
            ]);
        }
    }
    print_table(&["item", "rows", "start", "end", "bytes", "version"], rows)
}

/// `info`.
pub(crate) async fn info(client: &Client, path: &ItemPath, json: bool) -> anyhow::Result<()> {
    let info = client.item_info(&path.collection, &path.item).await?;
    if json {
        return print_json(&json!({
            "rows": info.rows, "start": info.start, "end": info.end, "version": info.version,
            "files": info.files, "bytes": info.bytes, "metadata": info.metadata,
            "schema": info.schema.iter().map(|f| json!({"name": f.name, "type": f.data_type, "nullable": f.nullable})).collect::<Vec<_>>(),
            "settings": info.settings,
        }));
    }
    println!("{}/{}", path.collection, path.item);
    println!("  rows      {}", info.rows);
    println!("  start     {}", time(info.start));
    println!("  end       {}", time(info.end));
    println!("  version   {}", info.version);
    println!(
        "  files     {} ({})",
        info.files,
        indicatif::HumanBytes(info.bytes)
    );
    println!("  metadata  {}", Value::Object(info.metadata));
    println!("  settings  {}", info.settings);
    println!("  columns");
    for f in &info.schema {
        let null = if f.nullable { "" } else { " not null" };
        println!("    {} {}{null}", f.name, f.data_type);
    }
    Ok(())
}

/// `versions`.
pub(crate) async fn versions(client: &Client, path: &ItemPath, json: bool) -> anyhow::Result<()> {
    let versions = client.list_versions(&path.collection, &path.item).await?;
    if json {
        let list: Vec<Value> = versions
            .iter()
            .map(|v| json!({"version": v.version, "committed_at": v.committed_at, "rows": v.rows, "operation": v.operation}))
            .collect();
        return print_json(&list);
    }
    let rows = versions
        .into_iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                format_time(v.committed_at),
                v.rows.to_string(),
                v.operation,
            ]
        })
        .collect();
    print_table(&["version", "committed_at", "rows", "operation"], rows)
}

/// `rm`: an item, a range of it, or (with `--recursive`) a whole collection.
pub(crate) async fn rm(
    client: &Client,
    path: &str,
    start: Option<String>,
    end: Option<String>,
    recursive: bool,
) -> anyhow::Result<()> {
    let (collection, item) = split(path);
    match (item, start, end) {
        (None, None, None) if recursive => {
            client.delete_collection(collection).await?;
            eprintln!("deleted collection {collection}");
        }
        (None, ..) => bail!(
            "rm {collection}: give COLLECTION/ITEM, or --recursive to delete the whole collection"
        ),
        (Some(item), None, None) => {
            client.delete_item(collection, item).await?;
            eprintln!("deleted {collection}/{item}");
        }
        (Some(item), Some(start), Some(end)) => {
            let r = client.delete_range(collection, item, start, end).await?;
            eprintln!("deleted {} rows: version {}", r.rows_deleted, r.version);
        }
        (Some(_), ..) => bail!("a range to delete needs both --start and --end"),
    }
    Ok(())
}

/// `snapshot create|list|rm`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Snapshot {
    /// Pin every item's current version under NAME.
    Create { collection: String, name: String },
    /// The collection's snapshots.
    List {
        collection: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot (its versions become vacuumable).
    Rm { collection: String, name: String },
}

impl Snapshot {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        match self {
            Snapshot::Create { collection, name } => {
                let s = client.create_snapshot(&collection, &name).await?;
                eprintln!("snapshot {} holds {} items", s.snapshot, s.items);
            }
            Snapshot::List { collection, json } => {
                let list = client.list_snapshots(&collection).await?;
                if json {
                    let list: Vec<Value> = list
                        .iter()
                        .map(|s| json!({"snapshot": s.snapshot, "created_at": s.created_at, "items": s.items}))
                        .collect();
                    return print_json(&list);
                }
                let rows = list
                    .into_iter()
                    .map(|s| vec![s.snapshot, format_time(s.created_at), s.items.to_string()])
                    .collect();
                print_table(&["snapshot", "created_at", "items"], rows)?;
            }
            Snapshot::Rm { collection, name } => {
                client.delete_snapshot(&collection, &name).await?;
                eprintln!("deleted snapshot {name}");
            }
        }
        Ok(())
    }
}

/// `compact`.
pub(crate) async fn compact(client: &Client, path: &ItemPath) -> anyhow::Result<()> {
    let r = client.compact(&path.collection, &path.item).await?;
    println!(
        "{}",
        json!({"version": r.version, "files_before": r.files_before, "files_after": r.files_after})
    );
    Ok(())
}

/// `vacuum`: everything, a collection, or an item.
pub(crate) async fn vacuum(client: &Client, path: Option<&str>) -> anyhow::Result<()> {
    let (collection, item) = match path {
        Some(p) => {
            let (c, i) = split(p);
            (Some(c), i)
        }
        None => (None, None),
    };
    let r = client.vacuum(collection, item).await?;
    println!(
        "{}",
        json!({"files_removed": r.files_removed, "bytes_removed": r.bytes_removed})
    );
    Ok(())
}

/// `gaps`: the empty slots of a grid, as `start end` lines (RFC 3339), or JSON.
pub(crate) async fn gaps(
    client: &Client,
    path: &ItemPath,
    start: String,
    end: String,
    freq: &str,
    json: bool,
) -> anyhow::Result<()> {
    let gaps = client
        .missing_intervals(&path.collection, &path.item, start, end, freq)
        .await?;
    if json {
        return print_json(&gaps);
    }
    for (s, e) in gaps {
        println!("{}\t{}", format_time(s), format_time(e));
    }
    Ok(())
}

/// `meta`: print the metadata, or merge `KEY=VALUE` pairs into it (`KEY=null` removes).
pub(crate) async fn meta(client: &Client, path: &ItemPath, pairs: &[String]) -> anyhow::Result<()> {
    let metadata = if pairs.is_empty() {
        client.get_metadata(&path.collection, &path.item).await?
    } else {
        client
            .update_metadata(&path.collection, &path.item, &key_values(pairs)?)
            .await?
    };
    print_json(&metadata)
}
