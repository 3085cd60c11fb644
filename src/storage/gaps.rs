//! Gap detection: the slots of a regular grid that hold no row (dccd's
//! `missing_intervals`).

use futures::TryStreamExt;

use super::error::{Error, Result};
use super::key::{order_keys, KeyRange, Period};
use super::names::{CollectionName, ItemName};
use super::read::{At, ReadOptions};
use super::Engine;

impl Engine {
    /// The slots of the grid `start + k*freq` inside `[start, end)` that hold no row,
    /// neighbouring empty slots merged, as `[first missing slot start, end of the last
    /// missing slot)` (the last slot is clipped to `end`). Streams only the ordering column.
    pub async fn missing_intervals(
        &self,
        c: &CollectionName,
        i: &ItemName,
        start: i64,
        end: i64,
        freq: Period,
        at: At,
    ) -> Result<Vec<(i64, i64)>> {
        if start >= end {
            return Err(Error::invalid("missing_intervals needs start < end"));
        }
        let plan = self
            .plan_read(
                c,
                i,
                ReadOptions {
                    range: KeyRange::new(Some(start), Some(end)),
                    at,
                    ..Default::default()
                },
            )
            .await?;
        let ordered_on = plan.ordered_on().to_string();
        let plan = plan.with_columns(vec![ordered_on.clone()])?;
        let slot_start = |k: i64| -> Result<i64> {
            freq.add(start, k)
                .map(|t| t.min(end))
                .ok_or_else(|| Error::invalid("the grid overflows the time range"))
        };
        let mut stream = self.execute(&plan, &plan.whole()).await?.stream;
        let mut gaps: Vec<(i64, i64)> = Vec::new();
        let mut expected = 0i64; // the first slot not yet known to hold a row
        while let Some(batch) = stream.try_next().await? {
            let keys = order_keys(&ordered_on, batch.column(0).as_ref())?;
            let mut pos = 0;
            while pos < keys.len() {
                let slot = freq.slot(start, keys[pos]);
                if slot > expected {
                    gaps.push((slot_start(expected)?, slot_start(slot)?));
                }
                expected = expected.max(slot + 1);
                // Skip the rest of this slot in one step.
                let next = slot_start(slot + 1)?;
                pos += keys[pos..].partition_point(|&k| k < next);
            }
        }
        let last = slot_start(expected)?;
        if last < end {
            gaps.push((last, end));
        }
        Ok(gaps)
    }
}
