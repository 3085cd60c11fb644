//! `flightstore token ...` and `flightstore user ...`: edit an auth file. The server
//! rereads it within a second; no restart is needed.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use flightstore::auth::{AuthFile, Grant};

/// Where the auth file is.
#[derive(Debug, clap::Args)]
pub(crate) struct FileArg {
    /// The auth file (created if missing; only hashes are stored in it).
    #[arg(long, env = "FLIGHTSTORE_AUTH_FILE")]
    auth_file: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Token {
    /// Create a token and print it (alone on stdout, once: it cannot be shown again).
    Create {
        #[command(flatten)]
        file: FileArg,
        /// A name to manage the token by.
        #[arg(long)]
        name: String,
        /// What it may do: COLLECTION:LEVEL (read, write or admin), `*` for every
        /// collection; repeat for several.
        #[arg(long = "grant", required = true)]
        grants: Vec<Grant>,
    },
    /// List the tokens: one JSON object a line, {"name", "grants", "created_at"}.
    List {
        #[command(flatten)]
        file: FileArg,
    },
    /// Revoke a token.
    Revoke {
        #[command(flatten)]
        file: FileArg,
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum User {
    /// Add a user; the password is read from stdin (one line).
    Add {
        #[command(flatten)]
        file: FileArg,
        /// User name.
        #[arg(long)]
        name: String,
        /// What they may do: COLLECTION:LEVEL, repeat for several.
        #[arg(long = "grant", required = true)]
        grants: Vec<Grant>,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a user (their login sessions end too).
    Remove {
        #[command(flatten)]
        file: FileArg,
        /// User name.
        name: String,
    },
}

/// Load the file, change it, save it.
fn edit<T>(
    path: &std::path::Path,
    change: impl FnOnce(&mut AuthFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut file = AuthFile::load_or_default(path)?;
    let out = change(&mut file)?;
    file.save(path)?;
    Ok(out)
}

impl Token {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create { file, name, grants } => {
                let token = edit(&file.auth_file, |f| Ok(f.create_token(&name, grants)?))?;
                println!("{token}");
            }
            Self::List { file } => {
                let f = AuthFile::load_or_default(&file.auth_file)?;
                for t in f.tokens {
                    let line = serde_json::json!({
                        "name": t.name, "grants": t.grants, "created_at": t.created_at,
                    });
                    println!("{line}");
                }
            }
            Self::Revoke { file, name } => {
                edit(&file.auth_file, |f| Ok(f.revoke_token(&name)?))?;
                eprintln!("token {name:?} revoked");
            }
        }
        Ok(())
    }
}

impl User {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Add {
                file, name, grants, ..
            } => {
                let mut password = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut password)
                    .context("reading the password from stdin")?;
                let password = password.trim_end_matches(['\r', '\n']);
                edit(
                    &file.auth_file,
                    |f| Ok(f.add_user(&name, password, grants)?),
                )?;
                eprintln!("user {name:?} added");
            }
            Self::Remove { file, name } => {
                edit(&file.auth_file, |f| Ok(f.remove_user(&name)?))?;
                eprintln!("user {name:?} removed");
            }
        }
        Ok(())
    }
}
