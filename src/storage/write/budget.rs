//! The engine-wide memory budget of upload chunks being sorted.
//!
//! Every batch an upload buffers holds a share of one budget (a semaphore counted in
//! KiB) until its chunk is sorted and written. N concurrent uploads hold at most the
//! budget together: a writer that finds it spent stages what it holds and waits for its
//! share (the client is held back by HTTP/2 flow control meanwhile), or fails with
//! [`Error::Busy`] after the configured wait. A writer that waits holds no share of its
//! own (it staged its chunk first), so writers never wait for each other in a cycle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::storage::error::{Error, Result};

/// The bytes of data `batch` holds (what the log's budget counts). Not
/// `get_array_memory_size`: the columns of a batch decoded from one Flight message share
/// that message's buffer, and each column would count all of it (a 3 MB message counted
/// five times over for five columns). The staging budget still counts that way, which
/// keeps it conservative.
pub(crate) fn batch_bytes(batch: &arrow::array::RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Budget unit: KiB, so that a `u32` count of permits covers any budget.
const UNIT: usize = 1024;

/// The budget; see the module docs.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    /// Size of the budget, in units.
    total: u32,
    /// How long a writer waits for its share.
    wait: Duration,
    /// Most units ever held at once (observability and tests).
    high_water: Arc<AtomicUsize>,
}

/// A share of the budget, returned when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Add `other` to this share.
    pub(crate) fn merge(&mut self, other: Reservation) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, theirs) => self.permit = theirs,
            (_, None) => {}
        }
    }

    /// An empty share.
    pub(crate) fn none() -> Self {
        Self { permit: None }
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one unit); writers wait at most `wait` for a share.
    pub(crate) fn new(bytes: usize, wait: Duration) -> Self {
        let total = u32::try_from(bytes / UNIT).unwrap_or(u32::MAX).max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
            wait,
            high_water: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The budget in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.total as usize * UNIT
    }

    /// The units a buffer of `bytes` takes (a buffer larger than the budget takes all).
    fn units(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total)
    }

    fn record(&self) {
        let held = self.total as usize - self.semaphore.available_permits();
        self.high_water.fetch_max(held, Ordering::Relaxed);
    }

    /// A share for `bytes` if one is free now.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let permit = Arc::clone(&self.semaphore)
            .try_acquire_many_owned(self.units(bytes))
            .ok()?;
        self.record();
        Some(Reservation {
            permit: Some(permit),
        })
    }

    /// A share for `bytes`, waiting for it up to the configured time.
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<Reservation> {
        let acquire = Arc::clone(&self.semaphore).acquire_many_owned(self.units(bytes));
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => {
                self.record();
                Ok(Reservation {
                    permit: Some(permit),
                })
            }
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(Error::Busy {
                message: format!(
                    "the upload memory budget ({} MiB, --stage-mb) stayed in use by other uploads for {} s",
                    self.bytes() >> 20,
                    self.wait.as_secs()
                ),
            }),
        }
    }

    /// Most bytes ever held at once.
    pub(crate) fn high_water_bytes(&self) -> usize {
        self.high_water.load(Ordering::Relaxed) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_come_back_when_dropped_and_waiters_time_out() {
        let budget = MemoryBudget::new(10 * UNIT, Duration::from_millis(20));
        let mut a = budget.try_reserve(6 * UNIT).unwrap();
        assert!(budget.try_reserve(5 * UNIT).is_none());
        a.merge(budget.try_reserve(4 * UNIT).unwrap());
        assert!(matches!(
            budget.reserve(UNIT).await,
            Err(Error::Busy { .. })
        ));
        drop(a);
        // Larger than the budget: takes all of it, once it is free.
        let all = budget.reserve(100 * UNIT).await.unwrap();
        assert!(budget.try_reserve(1).is_none());
        drop(all);
        assert_eq!(budget.high_water_bytes(), 10 * UNIT);
    }
}
