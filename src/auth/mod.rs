//! Who may do what (DESIGN.md, "Security").
//!
//! ```text
//! auth file (file.rs) ─► Authenticator: tokens by hash, users, login sessions;
//!                        reread within a second of a change
//! every call ─► server's auth layer: `authorization: Bearer <token>` ─► Access
//!               (in the request's extensions) ─► flight / sql check the collection
//!               each call touches: Access::check(collection, Level)
//! Handshake  ─► Basic user:password ─► argon2 ─► a session token (Bearer)
//! ```
//!
//! With no auth file every caller gets [`Access::everything`] (the server then binds
//! to loopback only, unless told `--no-auth`).

mod credentials;
mod file;
mod grant;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rand::RngCore;
use tracing::{info, warn};

pub use credentials::{credentials, Credentials};
pub use file::{AuthFile, TokenEntry, UserEntry};
pub use grant::{Grant, Level};

use crate::storage::SpawnedTask;
use file::{password_matches, token_hash};

/// How often the auth file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// How long a token from a `Handshake` login stays valid.
const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Login sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 100_000;
/// Prefix of login session tokens.
const SESSION_PREFIX: &str = "fss_";

/// What went wrong with the auth file or a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A grant that does not parse.
    #[error("bad grant {grant:?}: {why}")]
    BadGrant {
        /// As given.
        grant: String,
        /// What is wrong.
        why: String,
    },
    /// The auth file could not be read or written.
    #[error("auth file {path}: {source}")]
    Io {
        /// Its path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The auth file does not parse.
    #[error("auth file {path} is not valid: {why}")]
    BadFile {
        /// Its path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A token or user name that exists already.
    #[error("a {what} named {name:?} exists already")]
    Exists {
        /// `token` or `user`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A token or user name that does not exist.
    #[error("no {what} is named {name:?}")]
    NoSuch {
        /// `token` or `user`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A name that cannot be used.
    #[error("bad name {name:?}: {why}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// An empty password.
    #[error("the password is empty")]
    EmptyPassword,
    /// Hashing a password failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// What a caller may do: the grants of its token or user.
#[derive(Debug, Clone)]
pub struct Access {
    who: Who,
    grants: Arc<[Grant]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// No authentication is configured: everything is allowed.
    Everyone,
    Token(String),
    User(String),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Everyone => f.write_str("anyone"),
            Self::Token(name) => write!(f, "token {name:?}"),
            Self::User(name) => write!(f, "user {name:?}"),
        }
    }
}

/// A call its caller may not make.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{who} may not {level} {}: its grants are [{grants}]", on(.collection))]
pub struct Denied {
    who: String,
    /// The collection; `None` is every collection.
    collection: Option<String>,
    level: Level,
    grants: String,
}

fn on(collection: &Option<String>) -> String {
    match collection {
        Some(c) => format!("collection {c:?}"),
        None => "every collection".into(),
    }
}

impl Access {
    /// Everything allowed (no authentication configured).
    pub fn everything() -> Self {
        Self {
            who: Who::Everyone,
            grants: Arc::new([]),
        }
    }

    /// Whether the caller may do `level` on `collection`.
    pub fn allows(&self, collection: &str, level: Level) -> bool {
        self.who == Who::Everyone || self.grants.iter().any(|g| g.allows(collection, level))
    }

    /// Whether the caller may do `level` on every collection (a `*` grant).
    pub fn allows_all(&self, level: Level) -> bool {
        self.who == Who::Everyone
            || self
                .grants
                .iter()
                .any(|g| g.collection.is_none() && g.level >= level)
    }

    /// [`Access::allows`], or why not.
    pub fn check(&self, collection: &str, level: Level) -> Result<(), Box<Denied>> {
        if self.allows(collection, level) {
            return Ok(());
        }
        Err(self.denied(Some(collection), level))
    }

    /// [`Access::allows_all`], or why not.
    pub fn check_all(&self, level: Level) -> Result<(), Box<Denied>> {
        if self.allows_all(level) {
            return Ok(());
        }
        Err(self.denied(None, level))
    }

    fn denied(&self, collection: Option<&str>, level: Level) -> Box<Denied> {
        let grants = self.grants.iter().map(Grant::to_string).collect::<Vec<_>>();
        Box::new(Denied {
            who: self.who.to_string(),
            collection: collection.map(str::to_string),
            level,
            grants: grants.join(", "),
        })
    }
}

/// A credential that is not accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub String);

/// The tokens and users of an auth file, kept current.
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
    /// Rereads the file; ends with the last clone.
    _watch: Arc<SpawnedTask<()>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    table: RwLock<Arc<Table>>,
    /// What the file looked like (modified time, length) when last read.
    stamp: Mutex<Option<(SystemTime, u64)>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// The auth file, indexed.
#[derive(Debug)]
struct Table {
    /// Token hash -> (name, grants).
    tokens: HashMap<String, (String, Arc<[Grant]>)>,
    /// User name -> (password hash, grants).
    users: HashMap<String, (String, Arc<[Grant]>)>,
}

#[derive(Debug)]
struct Session {
    user: String,
    expires: Instant,
}

impl Table {
    fn read(path: &Path) -> Result<Self, Error> {
        let file = AuthFile::load(path)?;
        Ok(Self {
            tokens: file
                .tokens
                .into_iter()
                .map(|t| (t.sha256, (t.name, t.grants.into())))
                .collect(),
            users: file
                .users
                .into_iter()
                .map(|u| (u.name, (u.password, u.grants.into())))
                .collect(),
        })
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Authenticator {
    /// Read the auth file at `path` and keep rereading it when it changes (call from a
    /// tokio runtime: the watch is a task that ends when the authenticator is dropped).
    pub fn open(path: &Path) -> Result<Self, Error> {
        // Taken before the read: a change during it is seen at the next check.
        let stamp = stamp(path);
        let table = Table::read(path)?;
        info!(
            path = %path.display(), tokens = table.tokens.len(), users = table.users.len(),
            "authentication on"
        );
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            table: RwLock::new(Arc::new(table)),
            stamp: Mutex::new(stamp),
            sessions: Mutex::new(HashMap::new()),
        });
        let watch = SpawnedTask::spawn("auth file watch", watch(Arc::downgrade(&inner)));
        Ok(Self {
            inner,
            _watch: Arc::new(watch),
        })
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.inner.table.read().expect("auth table poisoned"))
    }

    /// The access of a bearer token: an API token of the file, or a login session of a
    /// user who still exists (with the user's current grants).
    pub fn bearer(&self, token: &str) -> Result<Access, Unauthenticated> {
        let hash = token_hash(token);
        let table = self.table();
        if let Some((name, grants)) = table.tokens.get(&hash) {
            return Ok(Access {
                who: Who::Token(name.clone()),
                grants: Arc::clone(grants),
            });
        }
        let user = {
            let sessions = self.inner.sessions.lock().expect("sessions poisoned");
            sessions
                .get(&hash)
                .filter(|s| s.expires > Instant::now())
                .map(|s| s.user.clone())
        };
        match user.and_then(|u| table.users.get(&u).map(|(_, g)| (u, g))) {
            Some((user, grants)) => Ok(Access {
                who: Who::User(user),
                grants: Arc::clone(grants),
            }),
            None => Err(Unauthenticated(
                "the bearer token is not valid (unknown, revoked or expired)".into(),
            )),
        }
    }

    /// Log `user` in with `password`: a session token, valid for a day or until the
    /// user is removed.
    pub async fn login(&self, user: &str, password: &str) -> Result<String, Unauthenticated> {
        let refused = || Unauthenticated("wrong user name or password".into());
        let Some((hash, _)) = self.table().users.get(user).cloned() else {
            return Err(refused());
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password_matches(&password, &hash))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!(
            "{SESSION_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let now = Instant::now();
        let mut sessions = self.inner.sessions.lock().expect("sessions poisoned");
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            token_hash(&token),
            Session {
                user: user.to_string(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Ok(token)
    }
}

/// Reread the auth file whenever it changes, until the authenticator is gone. A file
/// that does not parse is logged and the previous one kept.
async fn watch(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let path = inner.path.clone();
        let known = *inner.stamp.lock().expect("auth stamp poisoned");
        let read = tokio::task::spawn_blocking(move || {
            let now = stamp(&path);
            (now != known).then(|| (now, Table::read(&path)))
        })
        .await;
        let Ok(Some((now, table))) = read else {
            continue;
        };
        // Read once per change, whether it parses or not.
        *inner.stamp.lock().expect("auth stamp poisoned") = now;
        match table {
            Ok(table) => {
                info!(
                    path = %inner.path.display(), tokens = table.tokens.len(),
                    users = table.users.len(), "auth file reloaded"
                );
                *inner.table.write().expect("auth table poisoned") = Arc::new(table);
            }
            Err(e) => warn!(error = %e, "auth file not reloaded: the previous one stays in force"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(g: &[&str]) -> Vec<Grant> {
        g.iter().map(|g| g.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn tokens_sessions_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let mut file = AuthFile::default();
        let token = file
            .create_token("ingest", grants(&["NASDAQ:write"]))
            .unwrap();
        file.add_user("alice", "pw", grants(&["*:read"])).unwrap();
        file.save(&path).unwrap();
        let auth = Authenticator::open(&path).unwrap();

        let access = auth.bearer(&token).unwrap();
        assert!(access.allows("NASDAQ", Level::Write));
        assert!(!access.allows("NASDAQ", Level::Admin));
        let denied = access.check("EOD", Level::Read).unwrap_err().to_string();
        assert_eq!(
            denied,
            r#"token "ingest" may not read collection "EOD": its grants are [NASDAQ:write]"#
        );
        assert!(auth.bearer("fst_nope").is_err());

        assert!(auth.login("alice", "wrong").await.is_err());
        assert!(auth.login("bob", "pw").await.is_err());
        let session = auth.login("alice", "pw").await.unwrap();
        let access = auth.bearer(&session).unwrap();
        assert!(access.allows_all(Level::Read) && !access.allows_all(Level::Write));

        // Revoking the token and removing the user take effect without a restart.
        file.revoke_token("ingest").unwrap();
        file.remove_user("alice").unwrap();
        file.save(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while auth.bearer(&token).is_ok() || auth.bearer(&session).is_ok() {
            assert!(Instant::now() < deadline, "the auth file was not reread");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
