//! What every client command shares: the server (`--url`, `--token`), names given as
//! `COLLECTION/ITEM`, times, `KEY=VALUE` pairs and JSON output.

use anyhow::{bail, Context};
use flightstore_client::time::format_time;
use flightstore_client::Client;
use serde_json::{Map, Value};

/// The server a client command talks to.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Remote {
    /// The server's URL (grpc://host:port, grpc+tls://host:port).
    #[arg(
        long,
        global = true,
        env = "FLIGHTSTORE_URL",
        default_value = "grpc://127.0.0.1:8815"
    )]
    pub(crate) url: String,
    /// A bearer token (from `flightstore token create`).
    #[arg(long, global = true, env = "FLIGHTSTORE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Trust this CA certificate (PEM) for a grpc+tls:// server.
    #[arg(long, global = true, env = "FLIGHTSTORE_TLS_CA")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
}

impl Remote {
    /// Connect to the server.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url, self.token.as_deref(), self).await
    }
}

/// Connect to `url` with `token` and `remote`'s TLS options.
pub(crate) async fn connect(
    url: &str,
    token: Option<&str>,
    remote: &Remote,
) -> anyhow::Result<Client> {
    let mut builder = Client::builder(url);
    if let Some(token) = token {
        builder = builder.token(token);
    }
    if let Some(ca) = &remote.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        builder = builder.ca_certificate(pem);
    }
    Ok(builder.connect().await?)
}

/// `COLLECTION/ITEM` (the item may hold more `/`).
#[derive(Debug, Clone)]
pub(crate) struct ItemPath {
    pub(crate) collection: String,
    pub(crate) item: String,
}

impl std::str::FromStr for ItemPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok(ItemPath {
                collection: c.into(),
                item: i.into(),
            }),
            _ => Err(format!("expected COLLECTION/ITEM, got {s:?}")),
        }
    }
}

/// `COLLECTION` or `COLLECTION/REST` (a prefix, or an item).
pub(crate) fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('/') {
        Some((c, rest)) => (c, Some(rest).filter(|r| !r.is_empty())),
        None => (path, None),
    }
}

/// `KEY=VALUE`, the value read as JSON if it is JSON (`3`, `true`, `null`, `[1,2]`), else
/// as a string.
pub(crate) fn key_values(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("expected KEY=VALUE, got {pair:?}");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        map.insert(key.into(), value);
    }
    Ok(map)
}

/// A time in ns for people: RFC 3339 in UTC.
pub(crate) fn time(ns: Option<i64>) -> String {
    ns.map(format_time).unwrap_or_default()
}

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Print rows as a table (arrow's pretty printer): `header` names the columns, each row
/// holds one string per column.
pub(crate) fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    if rows.is_empty() {
        return Ok(());
    }
    let schema = Schema::new(
        header
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| {
            let column: StringArray = rows.iter().map(|r| Some(r[i].as_str())).collect();
            std::sync::Arc::new(column) as ArrayRef
        })
        .collect();
    let batch = arrow::array::RecordBatch::try_new(std::sync::Arc::new(schema), columns)?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&[batch])?);
    Ok(())
}
