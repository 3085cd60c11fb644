//! Every checked-in input (`corpus/<target>/`, `regressions/<target>/`) through its
//! target's check, on stable and without cargo-fuzz:
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml
//! ```

use std::fs;
use std::path::Path;

use flightstore_fuzz::{check_action, check_command, check_ticket, check_time_text, do_put};

const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("ticket", check_ticket),
    ("command", check_command),
    ("action", check_action),
    ("time", check_time_text),
    ("do_put", |b| {
        do_put::check_do_put(b);
    }),
];

fn replay(folder: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut n = 0;
    for (target, check) in TARGETS {
        let Ok(entries) = fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let bytes = fs::read(&path).expect("input read");
            println!("{}", path.display());
            check(&bytes);
            n += 1;
        }
    }
    n
}

#[test]
fn corpus_inputs_pass() {
    assert!(replay("corpus") > 0, "no corpus: run `cargo run --example seeds`");
}

#[test]
fn regression_inputs_pass() {
    replay("regressions");
}

/// The seeds decode: the valid inputs really are valid (a seed the decoder rejects would
/// start the fuzzer on the error path only).
#[test]
fn seeds_are_valid() {
    use flightstore_client::{decode, proto};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for name in ["ticket.json", "ticket.pb", "multi.json", "multi.pb", "handwritten.json"] {
        let bytes = fs::read(root.join("ticket").join(name)).expect("seed");
        decode::<proto::ReadRequest>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["write.json", "write.pb", "write_batch.json"] {
        let bytes = fs::read(root.join("command").join(name)).expect("seed");
        decode::<proto::WriteRequest>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, batches) in [
        ("path_one_batch", 1),
        ("cmd_two_batches", 2),
        ("cmd_pb_one_batch", 1),
        ("nested_dictionary", 2),
        ("descriptor_only_first", 1),
    ] {
        let bytes = fs::read(root.join("do_put").join(name)).expect("seed");
        assert_eq!(do_put::check_do_put(&bytes), batches, "{name}");
    }
}
