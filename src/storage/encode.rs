//! Parquet encoding with the columns of a batch encoded on two threads.
//!
//! [`ArrowWriter`] encodes the columns of a row group one after the other; a time-series
//! batch has a handful of columns of similar cost (the delta-encoded timestamps and ids,
//! the floats), so two threads halve the encode time of an append or an upsert. The file
//! is the same as `ArrowWriter` makes: it sets up the file writer and the Arrow schema
//! metadata, and row groups are cut at the same row target.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::error::Result;

/// Batches smaller than this are encoded on the calling thread alone (a thread costs
/// more than it saves).
const PARALLEL_MIN_ROWS: usize = 8 * 1024;

/// Encodes batches into an in-memory Parquet file, row groups of at most
/// `max_row_group_rows`.
pub(crate) struct ParallelWriter {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Column writers of the open row group (empty if none is open).
    columns: Vec<ArrowColumnWriter>,
    rows_in_group: usize,
    max_row_group_rows: usize,
}

impl std::fmt::Debug for ParallelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelWriter")
            .field("rows_in_group", &self.rows_in_group)
            .finish_non_exhaustive()
    }
}

impl ParallelWriter {
    pub(crate) fn try_new(schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let max_row_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let writer = ArrowWriter::try_new(
            Vec::with_capacity(1 << 20),
            Arc::clone(&schema),
            Some(props),
        )?;
        let (file, factory) = writer.into_serialized_writer()?;
        Ok(Self {
            file,
            factory,
            schema,
            columns: Vec::new(),
            rows_in_group: 0,
            max_row_group_rows,
        })
    }

    /// Encode `batch`, closing row groups as they reach the row target.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.columns.is_empty() {
                let index = self.file.flushed_row_groups().len();
                self.columns = self.factory.create_column_writers(index)?;
            }
            let take =
                (self.max_row_group_rows - self.rows_in_group).min(batch.num_rows() - offset);
            encode_columns(&mut self.columns, &self.schema, &batch.slice(offset, take))?;
            self.rows_in_group += take;
            offset += take;
            if self.rows_in_group >= self.max_row_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Close the open row group, if any.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let mut row_group = self.file.next_row_group()?;
        for column in self.columns.drain(..) {
            column.close()?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.rows_in_group = 0;
        Ok(())
    }

    /// Write the footer and return the file's bytes.
    pub(crate) fn into_inner(mut self) -> Result<Vec<u8>> {
        self.flush()?;
        Ok(self.file.into_inner()?)
    }
}

/// Encode the columns of `batch` into `writers` (one per Parquet leaf, in schema order):
/// two threads take columns from a shared queue until none is left.
fn encode_columns(
    writers: &mut [ArrowColumnWriter],
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<()> {
    let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(writers.len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        leaves.extend(compute_leaves(field, column)?);
    }
    if batch.num_rows() < PARALLEL_MIN_ROWS || writers.len() < 2 {
        for (w, leaf) in writers.iter_mut().zip(&leaves) {
            w.write(leaf)?;
        }
        return Ok(());
    }
    let queue = Mutex::new(writers.iter_mut().zip(&leaves));
    let work = || -> Result<()> {
        loop {
            let next = queue.lock().expect("encode queue poisoned").next();
            let Some((w, leaf)) = next else {
                return Ok(());
            };
            w.write(leaf)?;
        }
    };
    std::thread::scope(|s| {
        let helper = s.spawn(work);
        let mine = work();
        let theirs = helper.join().expect("encode thread panicked");
        mine.and(theirs)
    })
}
