//! The catalog: collections, the items they hold, item metadata and versions, and
//! snapshots. Every answer comes from the manifests and markers in the object store.

mod collections;
mod items;
mod snapshots;

pub use items::{merge_metadata, Change, ItemInfo, VersionInfo};
pub use snapshots::SnapshotInfo;
