//! Validated names and the object layout under the root.
//!
//! ```text
//! <root>/<collection>/_collection.json          marker written by create_collection
//! <root>/<collection>/_snapshots/<name>.json     snapshot: item -> version
//! <root>/<collection>/<seg>/<seg>/_manifest/<version:020>.json
//! <root>/<collection>/<seg>/<seg>/_data/<uuid>.parquet
//! ```
//!
//! Names are checked before they become paths: a segment may not be empty, `.` or `..`,
//! hold control characters or characters object stores escape, or start with `_` (that
//! prefix is reserved for the store's own objects, so an item can never collide with them).

use std::fmt;

use object_store::path::Path;

use super::error::{Error, Result};

/// Longest accepted segment, in bytes (a common filesystem limit).
pub(crate) const MAX_SEGMENT_BYTES: usize = 200;

/// Characters that are never part of a name segment.
const FORBIDDEN: &[char] = &[
    '/', '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|', '*', '?',
];

fn check_segment(name: &str, segment: &str) -> Result<()> {
    let reason = if segment.is_empty() {
        "empty segment"
    } else if segment == "." || segment == ".." {
        "`.` and `..` are not allowed"
    } else if segment.starts_with('_') {
        "segments starting with `_` are reserved"
    } else if segment.len() > MAX_SEGMENT_BYTES {
        "segment longer than 200 bytes"
    } else if segment.chars().any(|c| c.is_control()) {
        "control characters are not allowed"
    } else if segment.chars().any(|c| FORBIDDEN.contains(&c)) {
        "characters / \\ { } ^ % ` [ ] \" < > ~ # | * ? are not allowed"
    } else if segment.trim() != segment {
        "leading or trailing whitespace is not allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// A validated name newtype: `$check` validates the whole name in `new`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validate `name`.
            pub fn new(name: impl Into<String>) -> Result<Self> {
                let name = name.into();
                let check: fn(&str) -> Result<()> = $check;
                check(&name)?;
                Ok(Self(name))
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A validated collection name: one path segment.
    CollectionName,
    |name| check_segment(name, name)
);

name_type!(
    /// A validated item name: one or more segments joined with `/`.
    ItemName,
    |name| name.split('/').try_for_each(|segment| check_segment(name, segment))
);

name_type!(
    /// A validated snapshot name: one segment.
    SnapshotName,
    |name| check_segment(name, name)
);

/// Where the objects of the store live, relative to the object store's root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: Path,
}

/// File name of the collection marker.
pub(crate) const COLLECTION_MARKER: &str = "_collection.json";
/// Folder of an item's manifests.
pub(crate) const MANIFEST_DIR: &str = "_manifest";
/// Folder of an item's Parquet files.
pub(crate) const DATA_DIR: &str = "_data";
/// Folder of a collection's snapshots.
pub(crate) const SNAPSHOT_DIR: &str = "_snapshots";

impl Layout {
    pub(crate) fn new(root: Path) -> Self {
        Self { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn collection(&self, c: &CollectionName) -> Path {
        self.root.clone().join(c.as_str())
    }

    pub(crate) fn collection_marker(&self, c: &CollectionName) -> Path {
        self.collection(c).clone().join(COLLECTION_MARKER)
    }

    pub(crate) fn item(&self, c: &CollectionName, i: &ItemName) -> Path {
        let mut p = self.collection(c);
        for seg in i.as_str().split('/') {
            p = p.clone().join(seg);
        }
        p
    }

    pub(crate) fn manifest_dir(&self, c: &CollectionName, i: &ItemName) -> Path {
        self.item(c, i).clone().join(MANIFEST_DIR)
    }

    pub(crate) fn manifest(&self, c: &CollectionName, i: &ItemName, version: u64) -> Path {
        self.manifest_dir(c, i)
            .clone()
            .join(format!("{version:020}.json"))
    }

    pub(crate) fn data_dir(&self, c: &CollectionName, i: &ItemName) -> Path {
        self.item(c, i).clone().join(DATA_DIR)
    }

    pub(crate) fn data_file(&self, c: &CollectionName, i: &ItemName, file: &str) -> Path {
        self.data_dir(c, i).clone().join(file)
    }

    pub(crate) fn snapshot_dir(&self, c: &CollectionName) -> Path {
        self.collection(c).clone().join(SNAPSHOT_DIR)
    }

    pub(crate) fn snapshot(&self, c: &CollectionName, s: &SnapshotName) -> Path {
        self.snapshot_dir(c)
            .clone()
            .join(format!("{}.json", s.as_str()))
    }
}

/// Parse a manifest file name (`00000000000000000012.json`) into its version.
pub(crate) fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["AAPL", "BRK.B", "temperature-berlin", "EUR_USD", "é", "a b"] {
            CollectionName::new(n).unwrap();
        }
        assert_eq!(
            ItemName::new("temperature-berlin/1D").unwrap().as_str(),
            "temperature-berlin/1D"
        );
    }

    #[test]
    fn rejects_names_that_could_escape_or_collide() {
        for n in [
            "",
            ".",
            "..",
            "a/b",
            "_manifest",
            "a\0b",
            "a\nb",
            "%2e%2e",
            " a",
            "a*",
            "a\\..",
        ] {
            assert!(
                matches!(CollectionName::new(n), Err(Error::InvalidName { .. })),
                "{n:?} accepted"
            );
        }
        for n in ["a//b", "/a", "a/", "a/../b", "a/./b", "a/_data", "a/\u{7f}"] {
            assert!(ItemName::new(n).is_err(), "{n:?} accepted");
        }
    }

    #[test]
    fn layout_keeps_names_verbatim() {
        let layout = Layout::new(Path::from("root"));
        let c = CollectionName::new("NASDAQ").unwrap();
        let i = ItemName::new("x/1D").unwrap();
        assert_eq!(
            layout.manifest(&c, &i, 12).as_ref(),
            "root/NASDAQ/x/1D/_manifest/00000000000000000012.json"
        );
        assert_eq!(parse_manifest_name("00000000000000000012.json"), Some(12));
    }
}
