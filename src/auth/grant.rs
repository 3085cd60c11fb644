//! Grants: `COLLECTION:LEVEL`, `*` for every collection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Error;

/// What a grant allows; each level allows what the levels below it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Reads: GetFlightInfo, DoGet, ListFlights, GetSchema, SQL queries, read actions.
    Read,
    /// Reads plus writes: DoPut, ingest, INSERT/DELETE, metadata, snapshots, deletes,
    /// compaction. A `write` grant lets a write create its collection.
    Write,
    /// Writes plus collections (create, delete) and vacuum.
    Admin,
}

impl Level {
    /// The name used in grants and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One grant: a level on one collection or on all (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The collection; `None` is `*`, every collection.
    pub collection: Option<String>,
    /// What it allows there.
    pub level: Level,
}

impl Grant {
    /// Whether this grant allows `level` on `collection`.
    pub fn allows(&self, collection: &str, level: Level) -> bool {
        self.level >= level && self.collection.as_deref().is_none_or(|c| c == collection)
    }
}

impl FromStr for Grant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadGrant {
            grant: s.to_string(),
            why: why.to_string(),
        };
        let (collection, level) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("a grant is COLLECTION:LEVEL, e.g. NASDAQ:write or '*:read'"))?;
        let level = match level {
            "read" => Level::Read,
            "write" => Level::Write,
            "admin" => Level::Admin,
            _ => return Err(bad("the level is read, write or admin")),
        };
        let collection = match collection {
            "*" => None,
            "" => return Err(bad("the collection is empty (use * for every collection)")),
            c => Some(c.to_string()),
        };
        Ok(Self { collection, level })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let collection = self.collection.as_deref().unwrap_or("*");
        write!(f, "{collection}:{}", self.level)
    }
}

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_allow_their_level_and_below() {
        let g: Grant = "NASDAQ:write".parse().unwrap();
        assert!(g.allows("NASDAQ", Level::Read));
        assert!(g.allows("NASDAQ", Level::Write));
        assert!(!g.allows("NASDAQ", Level::Admin));
        assert!(!g.allows("EOD", Level::Read));
        let all: Grant = "*:read".parse().unwrap();
        assert!(all.allows("anything", Level::Read));
        assert!(!all.allows("anything", Level::Write));
        assert_eq!(all.to_string(), "*:read");
        // A collection name may hold a colon: the level is after the last one.
        let g: Grant = "a:b:admin".parse().unwrap();
        assert_eq!(g.collection.as_deref(), Some("a:b"));
        for bad in ["NASDAQ", "NASDAQ:owner", ":read", "NASDAQ:"] {
            assert!(bad.parse::<Grant>().is_err(), "{bad}");
        }
    }
}
