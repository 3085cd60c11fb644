//! The `flightstore` binary: parse the command line, start logging, run the command
//! (`cli`).

mod cli;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A closed stderr must not turn a log line into a panic (and a failed shutdown).
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLIGHTSTORE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    // Errors go to stderr as one line with their causes (no backtrace), with exit status 1.
    match cli::run(cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
