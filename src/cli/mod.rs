//! The command line: `flightstore serve`, the commands that edit an auth file, and the
//! client commands (`ls`, `get`, `put`, `sql`, `sync`, ...), which talk to any server
//! through the Rust client (`flightstore-client`), never to the engine directly.

mod auth;
mod commands;
mod files;
mod progress;
mod remote;
mod serve;
mod sync;
mod transfer;

use clap::{Parser, Subcommand};

use remote::{ItemPath, Remote};

/// The `flightstore` command line.
#[derive(Debug, Parser)]
#[command(
    name = "flightstore",
    version,
    about = "A time-series store that speaks Apache Arrow Flight"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Flight server.
    Serve(serve::Serve),
    /// Bearer tokens of an auth file: create (prints the token once), list, revoke.
    #[command(subcommand)]
    Token(auth::Token),
    /// Users of an auth file (they log in with Handshake): add, remove.
    #[command(subcommand)]
    User(auth::User),
    /// List collections, or the items of COLLECTION (under a name PREFIX).
    Ls {
        /// COLLECTION or COLLECTION/PREFIX.
        path: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// An item's rows, range, version, files, metadata, columns and settings.
    Info {
        path: ItemPath,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An item's versions, oldest first.
    Versions {
        path: ItemPath,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload files (CSV, Parquet, Arrow IPC, JSON lines) to an item as one write.
    Put(transfer::Put),
    /// Read an item (a range, columns, a filter, ...) to stdout or a file.
    Get(transfer::Get),
    /// Run a SQL statement, or an interactive prompt when none is given.
    Sql(transfer::Sql),
    /// Delete an item, a range of it (--start, --end), or a collection (--recursive).
    Rm {
        /// COLLECTION/ITEM, or COLLECTION with --recursive.
        path: String,
        /// Delete only the rows from this time...
        #[arg(long)]
        start: Option<String>,
        /// ...up to this time (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Delete the whole collection.
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Snapshots of a collection: create, list, rm.
    #[command(subcommand)]
    Snapshot(commands::Snapshot),
    /// Merge an item's files toward the target size.
    Compact { path: ItemPath },
    /// Remove versions past retention and orphan files (everything, a collection, an item).
    Vacuum {
        /// COLLECTION or COLLECTION/ITEM.
        path: Option<String>,
    },
    /// The empty slots of the grid start + k*freq in [start, end).
    Gaps {
        path: ItemPath,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        /// The grid's period: 1min, 30s, 1D, ...
        #[arg(long)]
        freq: String,
        /// Print JSON ([[start, end], ...] in ns).
        #[arg(long)]
        json: bool,
    },
    /// Print an item's metadata, or merge KEY=VALUE pairs into it (KEY=null removes).
    Meta { path: ItemPath, pairs: Vec<String> },
    /// Copy what changed on one server since the last sync to another.
    Sync(sync::Sync),
}

/// Run the command given on the command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let remote = &cli.remote;
    match cli.command {
        Command::Serve(s) => s.run().await,
        Command::Token(t) => t.run(),
        Command::User(u) => u.run(),
        Command::Sync(s) => s.run(remote).await,
        command => {
            let client = remote.connect().await?;
            let client = &client;
            match command {
                Command::Ls { path, json } => commands::ls(client, path.as_deref(), json).await,
                Command::Info { path, json } => commands::info(client, &path, json).await,
                Command::Versions { path, json } => commands::versions(client, &path, json).await,
                Command::Put(put) => put.run(client).await,
                Command::Get(get) => get.run(client).await,
                Command::Sql(sql) => sql.run(client).await,
                Command::Rm {
                    path,
                    start,
                    end,
                    recursive,
                } => commands::rm(client, &path, start, end, recursive).await,
                Command::Snapshot(s) => s.run(client).await,
                Command::Compact { path } => commands::compact(client, &path).await,
                Command::Vacuum { path } => commands::vacuum(client, path.as_deref()).await,
                Command::Gaps {
                    path,
                    start,
                    end,
                    freq,
                    json,
                } => commands::gaps(client, &path, start, end, &freq, json).await,
                Command::Meta { path, pairs } => commands::meta(client, &path, &pairs).await,
                Command::Serve(_) | Command::Token(_) | Command::User(_) | Command::Sync(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}
