//! Files on disk, for tests that check what a store left behind. Shared by the test
//! binaries (`#[path]` module); not a test target itself.

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively (none if `dir` does not exist).
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
