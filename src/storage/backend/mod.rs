//! Where the data lives: a data root (a folder path, `file:///path` or `memory://`)
//! opened as an [`ObjectStore`]. Local folders use [`DurableLocal`], whose puts are
//! durable (fsynced) when they return.

mod durable_local;

pub(crate) use durable_local::sweep_staging;

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::ObjectStore;

use super::error::{Error, Result};
use durable_local::DurableLocal;

/// The local folder of a data root, if it is one (`file:///abs/path` or a plain path).
pub(crate) fn local_folder(location: &str) -> Option<std::path::PathBuf> {
    if location == "memory://" || location == "memory:" {
        return None;
    }
    match location.strip_prefix("file://") {
        Some(p) => Some(p.into()),
        None if location.contains("://") => None,
        None => Some(location.into()),
    }
}

/// The object store of a data root: `memory://` (nothing persists), `file:///abs/path`,
/// or a plain path (created if missing).
pub(crate) fn open(location: &str) -> Result<Arc<dyn ObjectStore>> {
    if location == "memory://" || location == "memory:" {
        return Ok(Arc::new(InMemory::new()));
    }
    let Some(path) = local_folder(location) else {
        return Err(Error::invalid(format!(
            "unsupported storage URL {location:?}: use a path, file:///path or memory://"
        )));
    };
    // The root folder must exist before the store can be rooted there.
    std::fs::create_dir_all(&path)
        .map_err(|e| Error::invalid(format!("cannot create data folder {path:?}: {e}")))?;
    Ok(Arc::new(DurableLocal::new(&path)?))
}
