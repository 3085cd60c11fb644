//! Which files compaction merges (pure).
//!
//! Automatic compaction is size-tiered: a file's tier is `log_fanin(rows)`; when
//! `fanin` neighbouring small files share a tier they are merged into one file of the next
//! tier. Each row is therefore rewritten about `log_fanin(file_target / append_size)`
//! times, and an item of appends keeps at most `fanin - 1` small files per tier.

use std::ops::Range;

use crate::storage::manifest::{FileEntry, Manifest};

/// A file is small if it holds less than this fraction of the file target.
const SMALL_FRACTION: u64 = 2;

fn is_small(f: &FileEntry, target: u64) -> bool {
    f.rows < target / SMALL_FRACTION
}

fn tier(rows: u64, fanin: usize) -> u32 {
    let fanin = fanin.max(2) as u64;
    let mut t = 0;
    let mut r = rows.max(1);
    while r >= fanin {
        r /= fanin;
        t += 1;
    }
    t
}

/// How many of `files` are small.
pub(crate) fn small_files(files: &[FileEntry], target: u64) -> usize {
    files.iter().filter(|f| is_small(f, target)).count()
}

/// Ranges of neighbouring files to merge, size-tiered (see the module docs).
pub(crate) fn plan_auto(files: &[FileEntry], target: u64, fanin: usize) -> Vec<Range<usize>> {
    // Virtual files: (range of original files, rows); merge until nothing changes.
    let mut virt: Vec<(Range<usize>, u64)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (i..i + 1, f.rows))
        .collect();
    loop {
        let mut merged = false;
        let mut out: Vec<(Range<usize>, u64)> = Vec::with_capacity(virt.len());
        let mut k = 0;
        while k < virt.len() {
            let small = |v: &(Range<usize>, u64)| v.1 < target / SMALL_FRACTION;
            let t = tier(virt[k].1, fanin);
            let mut j = k;
            while j < virt.len() && small(&virt[j]) && tier(virt[j].1, fanin) == t {
                j += 1;
            }
            if j - k >= fanin {
                let range = virt[k].0.start..virt[j - 1].0.end;
                let rows = virt[k..j].iter().map(|v| v.1).sum();
                out.push((range, rows));
                merged = true;
                k = j;
            } else {
                out.push(virt[k].clone());
                k += 1;
            }
        }
        virt = out;
        if !merged {
            break;
        }
    }
    virt.into_iter()
        .filter(|(r, _)| r.len() > 1)
        .map(|(r, _)| r)
        .collect()
}

/// Ranges of neighbouring files to merge for a manual compaction: every run of two or
/// more files that are not full.
pub(crate) fn plan_full(files: &[FileEntry], target: u64) -> Vec<Range<usize>> {
    let full = |f: &FileEntry| f.rows * 10 >= target * 9;
    let mut out = Vec::new();
    let mut k = 0;
    while k < files.len() {
        let mut j = k;
        while j < files.len() && !full(&files[j]) {
            j += 1;
        }
        if j - k >= 2 {
            out.push(k..j);
        }
        k = j.max(k + 1);
    }
    out
}

/// The file list of `latest` with each range of `base`'s files replaced by its merged
/// `outputs`. `None` if a range's files are no longer all there, next to each other (a
/// write rewrote one, or put a file between them): the merge no longer applies. Where
/// they are, the outputs span exactly what they replace, so order and disjointness hold.
pub(crate) fn rebase(
    latest: &Manifest,
    base: &Manifest,
    ranges: &[Range<usize>],
    outputs: &[Vec<FileEntry>],
) -> Option<Vec<FileEntry>> {
    let mut files = Vec::with_capacity(latest.files.len());
    let mut k = 0;
    for (r, out) in ranges.iter().zip(outputs) {
        let inputs = &base.files[r.clone()];
        let start = k + latest.files[k..].iter().position(|f| f == &inputs[0])?;
        let block = latest.files.get(start..start + inputs.len())?;
        if block != inputs {
            return None;
        }
        files.extend_from_slice(&latest.files[k..start]);
        files.extend_from_slice(out);
        k = start + inputs.len();
    }
    files.extend_from_slice(&latest.files[k..]);
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(rows: &[u64]) -> Vec<FileEntry> {
        rows.iter()
            .enumerate()
            .map(|(i, &r)| FileEntry {
                name: format!("{i}"),
                min: i as i64,
                max: i as i64,
                rows: r,
                bytes: 0,
                row_groups: None,
                memory: None,
            })
            .collect()
    }

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: 0,
            version: 1,
            committed_at: 0,
            operation: "append".into(),
            deleted: false,
            settings: None,
            schema: None,
            metadata: Default::default(),
            files,
            write_ids: Vec::new(),
            deltas: Vec::new(),
        }
    }

    fn names(files: &[FileEntry]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn a_merge_rebases_only_where_its_inputs_are_intact() {
        let base = manifest(files(&[1, 1, 1, 1]));
        let out = |name: &str| FileEntry {
            name: name.into(),
            ..base.files[1].clone()
        };
        let outputs = vec![vec![out("m")]];
        // Nothing changed: the merge applies as planned.
        let same = rebase(&base, &base, &[1..3], &outputs).unwrap();
        assert_eq!(names(&same), ["0", "m", "3"]);
        // A file added after the inputs: kept, after the merged file.
        let mut grown = base.files.clone();
        grown.push(FileEntry {
            name: "new".into(),
            ..grown[3].clone()
        });
        let r = rebase(&manifest(grown), &base, &[1..3], &outputs).unwrap();
        assert_eq!(names(&r), ["0", "m", "3", "new"]);
        // An input rewritten by a write: the merge no longer applies.
        let mut rewritten = base.files.clone();
        rewritten[2].name = "rewritten".into();
        assert!(rebase(&manifest(rewritten), &base, &[1..3], &outputs).is_none());
        // A file put between the inputs: no longer applies either.
        let mut split = base.files.clone();
        split.insert(
            2,
            FileEntry {
                name: "between".into(),
                ..split[1].clone()
            },
        );
        assert!(rebase(&manifest(split), &base, &[1..3], &outputs).is_none());
    }

    #[test]
    fn auto_plan_merges_a_full_tier_only() {
        assert!(plan_auto(&files(&[100; 7]), 1_000_000, 8).is_empty());
        assert_eq!(plan_auto(&files(&[100; 8]), 1_000_000, 8), vec![0..8]);
        // A big file in front is left alone.
        assert_eq!(
            plan_auto(
                &files(&[900_000, 100, 100, 100, 100, 100, 100, 100, 100]),
                1_000_000,
                8
            ),
            vec![1..9]
        );
        // Cascades: seven tier-3 files plus eight tier-2 ones become one file.
        let mut rows = vec![800; 7];
        rows.extend([100; 8]);
        assert_eq!(plan_auto(&files(&rows), 1_000_000, 8), vec![0..15]);
    }

    #[test]
    fn full_plan_merges_runs_of_partial_files() {
        assert_eq!(plan_full(&files(&[10, 10, 100, 10]), 100), vec![0..2]);
        assert!(plan_full(&files(&[100, 100]), 100).is_empty());
    }
}
