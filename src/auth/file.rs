//! The auth file: tokens and users with their grants, hashes only.
//!
//! ```json
//! {"tokens": [{"name": "ingest", "sha256": "<hex of SHA-256(token)>",
//!              "grants": ["NASDAQ:write", "*:read"], "created_at": "2026-12-03T10:00:00Z"}],
//!  "users":  [{"name": "alice", "password": "$argon2id$v=19$...",
//!              "grants": ["*:read"], "created_at": "..."}]}
//! ```
//!
//! A token is 256 random bits (`fst_` + base64url); the file keeps only its SHA-256, so
//! a leaked file gives no token. Passwords are kept as argon2id hashes (slow on purpose).
//! The file is replaced atomically (a temporary file renamed over it, mode 0600).

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Grant};

/// Prefix of every token (so a token is recognisable in a leak scanner).
const TOKEN_PREFIX: &str = "fst_";

/// The whole auth file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Users who log in with a password (Flight `Handshake`).
    #[serde(default)]
    pub users: Vec<UserEntry>,
}

/// A token, by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A name to manage it by (unique among tokens).
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
    /// What it may do.
    pub grants: Vec<Grant>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// A user, by the hash of their password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// User name (unique among users).
    pub name: String,
    /// argon2id PHC string of the password.
    pub password: String,
    /// What they may do.
    pub grants: Vec<Grant>,
    /// When they were added (RFC 3339).
    pub created_at: String,
}

impl AuthFile {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes).map_err(|why| Error::BadFile {
            path: path.display().to_string(),
            why,
        })
    }

    /// Read `path`, or an empty file if there is none yet (for the commands that edit it).
    pub fn load_or_default(path: &Path) -> Result<Self, Error> {
        if path.exists() {
            Self::load(path)
        } else {
            Ok(Self::default())
        }
    }

    /// Parse and check the text of an auth file.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let file: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut names = std::collections::HashSet::new();
        for t in &file.tokens {
            if !names.insert(("token", t.name.as_str())) {
                return Err(format!("two tokens are named {:?}", t.name));
            }
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(format!("token {:?}: sha256 is not 64 hex digits", t.name));
            }
        }
        for u in &file.users {
            if !names.insert(("user", u.name.as_str())) {
                return Err(format!("two users are named {:?}", u.name));
            }
            PasswordHash::new(&u.password)
                .map_err(|e| format!("user {:?}: password is not a PHC hash: {e}", u.name))?;
        }
        Ok(file)
    }

    /// Write to `path` atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        let text = serde_json::to_vec_pretty(self).expect("the auth file serializes");
        std::io::Write::write_all(&mut tmp, &text).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Add a token named `name`: returns the token (shown once, never stored).
    pub fn create_token(&mut self, name: &str, grants: Vec<Grant>) -> Result<String, Error> {
        check_name(name)?;
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(Error::Exists {
                what: "token",
                name: name.into(),
            });
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        self.tokens.push(TokenEntry {
            name: name.into(),
            sha256: token_hash(&token),
            grants,
            created_at: now(),
        });
        Ok(token)
    }

    /// Add a user with `password`.
    pub fn add_user(
        &mut self,
        name: &str,
        password: &str,
        grants: Vec<Grant>,
    ) -> Result<(), Error> {
        check_name(name)?;
        if name.contains(':') {
            return Err(Error::BadName {
                name: name.into(),
                why: "a user name cannot hold ':' (Basic credentials are user:password)",
            });
        }
        if password.is_empty() {
            return Err(Error::EmptyPassword);
        }
        if self.users.iter().any(|u| u.name == name) {
            return Err(Error::Exists {
                what: "user",
                name: name.into(),
            });
        }
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Hash(e.to_string()))?
            .to_string();
        self.users.push(UserEntry {
            name: name.into(),
            password: hash,
            grants,
            created_at: now(),
        });
        Ok(())
    }

    /// Remove the token named `name`.
    pub fn revoke_token(&mut self, name: &str) -> Result<(), Error> {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.name != name);
        if self.tokens.len() == before {
            return Err(Error::NoSuch {
                what: "token",
                name: name.into(),
            });
        }
        Ok(())
    }

    /// Remove the user named `name`.
    pub fn remove_user(&mut self, name: &str) -> Result<(), Error> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            return Err(Error::NoSuch {
                what: "user",
                name: name.into(),
            });
        }
        Ok(())
    }
}

/// SHA-256 of a token, lowercase hex: what the file keeps.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `password` matches the PHC string `hash` (slow: run it off the async runtime).
pub(crate) fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::BadName {
            name: name.into(),
            why: "a name is 1 to 128 characters, no control characters",
        });
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_users_are_kept_as_hashes_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let mut file = AuthFile::load_or_default(&path).unwrap();
        let token = file
            .create_token("ingest", vec!["NASDAQ:write".parse().unwrap()])
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        file.add_user("alice", "s3cret", vec!["*:read".parse().unwrap()])
            .unwrap();
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]) && !text.contains("s3cret"));
        let back = AuthFile::load(&path).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.tokens[0].sha256, token_hash(&token));
        assert!(password_matches("s3cret", &back.users[0].password));
        assert!(!password_matches("secret", &back.users[0].password));
        assert!(matches!(
            file.create_token("ingest", vec![]),
            Err(Error::Exists { .. })
        ));
        assert!(matches!(
            file.revoke_token("nobody"),
            Err(Error::NoSuch { .. })
        ));
        file.revoke_token("ingest").unwrap();
        file.remove_user("alice").unwrap();
        assert_eq!(file, AuthFile::default());
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        let bad = [
            (
                r#"{"tokens": [{"name": "a", "sha256": "00", "grants": [], "created_at": ""}]}"#,
                "64 hex",
            ),
            (r#"{"tokens": [], "userz": []}"#, "unknown field"),
            (
                r#"{"users": [{"name": "a", "password": "x", "grants": [], "created_at": ""}]}"#,
                "PHC",
            ),
            (
                r#"{"tokens": [{"name": "a", "sha256": "00", "grants": ["a:owner"], "created_at": ""}]}"#,
                "read, write or admin",
            ),
        ];
        for (text, want) in bad {
            let err = AuthFile::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
