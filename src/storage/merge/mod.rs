//! Sorting, k-way merging and exact de-duplication of ordered batches.
//!
//! ```text
//!  source 0 (stored file) ─┐
//!  source 1 (stored file) ─┤  Merger: smallest (key, source) first   Dedup: per run of
//!  source 2 (new run)     ─┼─────────────────────────────────────────► equal keys, drop
//!  source 3 (new run)     ─┘  (stable: ties keep source order)        rows equal on the key
//! ```
//!
//! Order among rows with equal ordering keys is always: stored rows first, then new rows in
//! upload order. De-duplication only looks inside a run of equal ordering keys (the
//! ordering column is part of every key), so it streams with one run of look-behind.

mod dedup;
mod kway;
mod sort;

pub(crate) use dedup::Dedup;
pub(crate) use kway::{Merger, Source};
pub(crate) use sort::{sort_batch, Keyed};

#[cfg(test)]
mod tests {
    use super::kway::gallop;
    use super::*;
    use crate::storage::manifest::Keep;
    use arrow::array::RecordBatch;
    use futures::StreamExt;
    use std::sync::Arc;

    #[test]
    fn gallop_agrees_with_partition_point() {
        for len in 0..70usize {
            let keys: Vec<i64> = (0..len as i64).map(|k| k / 3).collect();
            for bound in -1..=(len as i64 / 3 + 1) {
                assert_eq!(
                    gallop(&keys, |k| k <= bound),
                    keys.partition_point(|&k| k <= bound)
                );
                assert_eq!(
                    gallop(&keys, |k| k < bound),
                    keys.partition_point(|&k| k < bound)
                );
            }
        }
    }
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::stream;

    fn batch(ts: &[i64], v: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ts.to_vec())),
                Arc::new(StringArray::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    fn values(k: &Keyed) -> Vec<(i64, String)> {
        let v = k
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        (0..k.num_rows())
            .map(|i| (k.keys[i], v.value(i).to_string()))
            .collect()
    }

    #[test]
    fn sort_is_stable() {
        let k = sort_batch(batch(&[3, 1, 3, 1], &["a", "b", "c", "d"]), "ts", true).unwrap();
        assert_eq!(
            values(&k),
            vec![
                (1, "b".into()),
                (1, "d".into()),
                (3, "a".into()),
                (3, "c".into())
            ]
        );
    }

    #[tokio::test]
    async fn merge_breaks_ties_by_source_and_dedups() {
        let b = batch(&[1, 2, 2, 5], &["s1", "s2", "s2b", "s5"]);
        let schema = b.schema();
        let sources = vec![
            Source {
                stream: stream::iter(vec![Ok(b)]).boxed(),
                is_new: false,
            },
            Source {
                stream: stream::iter(vec![
                    Ok(batch(&[2], &["n2"])),
                    Ok(batch(&[2, 7], &["s2", "n7"])),
                ])
                .boxed(),
                is_new: true,
            },
        ];
        let mut m = Merger::new("ts", sources, 2);
        let mut all = vec![];
        let mut d = Dedup::new(Arc::clone(&schema), "ts", &["v".into()], Keep::Last).unwrap();
        let mut deduped = vec![];
        while let Some(k) = m.next().await.unwrap() {
            all.extend(values(&k));
            if let Some(out) = d.push(k).unwrap() {
                deduped.extend(values(&out));
            }
        }
        if let Some(out) = d.finish().unwrap() {
            deduped.extend(values(&out));
        }
        let s = |t: i64, v: &str| (t, v.to_string());
        assert_eq!(
            all,
            vec![
                s(1, "s1"),
                s(2, "s2"),
                s(2, "s2b"),
                s(2, "n2"),
                s(2, "s2"),
                s(5, "s5"),
                s(7, "n7")
            ]
        );
        // The stored ("2","s2") is replaced by the new one, placed after the stored rows.
        assert_eq!(
            deduped,
            vec![
                s(1, "s1"),
                s(2, "s2b"),
                s(2, "n2"),
                s(2, "s2"),
                s(5, "s5"),
                s(7, "n7")
            ]
        );
    }
}
