//! Footers: the parsed metadata (with page indexes) of data files, read once and cached,
//! and the key range of each row group from its statistics.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use crate::storage::error::{Error, Result};
use crate::storage::key::stat_keys;
use crate::storage::manifest::FileEntry;

/// Parsed footers (with page indexes) of recently read files. Data files never change
/// once written (their names are unique), so an entry never goes stale; the map is
/// bounded by emptying it when full.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    map: Mutex<HashMap<Path, ArrowReaderMetadata>>,
}

/// Files whose metadata [`MetaCache`] keeps at most.
const META_CACHE_FILES: usize = 4096;

impl MetaCache {
    fn get(&self, path: &Path) -> Option<ArrowReaderMetadata> {
        self.map
            .lock()
            .expect("metadata cache poisoned")
            .get(path)
            .cloned()
    }

    fn insert(&self, path: Path, meta: ArrowReaderMetadata) {
        let mut map = self.map.lock().expect("metadata cache poisoned");
        if map.len() >= META_CACHE_FILES {
            map.clear();
        }
        map.insert(path, meta);
    }
}

/// Reads a Parquet file of known size through `object_store`.
///
/// Hand-written on purpose: parquet 59.2 deprecated its `ParquetObjectReader` in favour
/// of implementing [`AsyncFileReader`] directly (apache/arrow-rs#10308).
#[derive(Debug, Clone)]
pub(crate) struct ObjectReader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: Path,
    pub(crate) size: u64,
}

fn to_parquet_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The footer and page index of a data file, from the cache or read once.
pub(crate) async fn load_metadata(
    reader: &mut ObjectReader,
    meta: &MetaCache,
) -> Result<ArrowReaderMetadata> {
    if let Some(m) = meta.get(&reader.path) {
        return Ok(m);
    }
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let m = ArrowReaderMetadata::load_async(reader, options)
        .await
        .map_err(|e| Error::corrupt(&reader.path, e))?;
    meta.insert(reader.path.clone(), m.clone());
    Ok(m)
}

/// The row groups of `file` an entry covers.
pub(crate) fn entry_row_groups(file: &FileEntry, metadata: &ArrowReaderMetadata) -> Range<usize> {
    match file.row_groups {
        Some([first, end]) => first..end,
        None => 0..metadata.metadata().num_row_groups(),
    }
}

/// `file` as one entry per row group, with the key range of each from the statistics
/// (the entry itself if it has a single row group or statistics are missing), and the
/// number of row groups of the whole file.
pub(crate) async fn split_row_groups(
    store: Arc<dyn ObjectStore>,
    meta: &MetaCache,
    path: Path,
    file: &FileEntry,
    ordered_on: &str,
) -> Result<(Vec<FileEntry>, usize)> {
    let mut reader = ObjectReader {
        store,
        path,
        size: file.bytes,
    };
    let metadata = load_metadata(&mut reader, meta).await?;
    let count = metadata.metadata().num_row_groups();
    let groups = entry_row_groups(file, &metadata);
    if groups.len() < 2 {
        return Ok((vec![file.clone()], count));
    }
    let converter =
        StatisticsConverter::try_new(ordered_on, metadata.schema(), metadata.parquet_schema())?;
    let keys = row_group_keys(&converter, metadata.metadata(), groups.clone())?;
    let mut out = Vec::with_capacity(groups.len());
    for (g, key_range) in groups.zip(keys) {
        let Some((min, max)) = key_range else {
            return Ok((vec![file.clone()], count));
        };
        out.push(FileEntry {
            name: file.name.clone(),
            min,
            max,
            rows: metadata.metadata().row_group(g).num_rows() as u64,
            bytes: file.bytes,
            row_groups: Some([g, g + 1]),
            memory: None,
        });
    }
    Ok((out, count))
}

/// The smallest and largest key of each row group of `groups`, where the statistics have
/// both.
pub(crate) fn row_group_keys(
    converter: &StatisticsConverter<'_>,
    metadata: &ParquetMetaData,
    groups: Range<usize>,
) -> Result<Vec<Option<(i64, i64)>>> {
    let row_groups = &metadata.row_groups()[groups];
    let mins = stat_keys(&converter.row_group_mins(row_groups.iter())?);
    let maxes = stat_keys(&converter.row_group_maxes(row_groups.iter())?);
    Ok(mins
        .into_iter()
        .zip(maxes)
        .map(|(lo, hi)| lo.zip(hi))
        .collect())
}
