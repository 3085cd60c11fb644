//! Progress bars (indicatif) for long transfers, drawn on stderr only when it is a
//! terminal: piped or redirected output never carries them.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` units, or hidden when stderr is not a terminal.
fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::no_length(),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// An upload's bar: input bytes read of `total` (rate and ETA), rows in the message.
pub(crate) fn upload(total_bytes: u64) -> ProgressBar {
    bar(
        Some(total_bytes),
        "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
    )
}

/// A download's bar: rows of `total` if known (rate and ETA), bytes in the message.
pub(crate) fn download(total_rows: Option<u64>) -> ProgressBar {
    match total_rows {
        Some(_) => bar(
            total_rows,
            "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} rows {per_sec:.0} ETA {eta} {msg}",
        ),
        None => bar(None, "{spinner} {elapsed_precise} {human_pos} rows {per_sec:.0} {msg}"),
    }
}

/// `1.5 MiB`-style bytes for a bar's message.
pub(crate) fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
