//! The command line: `flightstore serve`, and the commands that edit an auth file. Only
//! clap lives here; each command calls into the library.

mod auth;
mod serve;

use clap::{Parser, Subcommand};

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
}

/// Run the command given on the command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(s) => s.run().await,
        Command::Token(t) => t.run(),
        Command::User(u) => u.run(),
    }
}
