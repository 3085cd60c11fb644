//! The pyarrow interop suite (tests/python) against the real `flightstore` binary.
//!
//! Uses the venv in `.venv` (created here with pyarrow, pandas and pytest from PyPI if
//! it is missing), or the interpreter in `FLIGHTSTORE_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn python(root: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("FLIGHTSTORE_PYTHON") {
        return p.into();
    }
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(root.join("tests/python/requirements.txt")));
    }
    python
}

#[test]
fn pyarrow_interop_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new(python(root))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("tests/python"))
        .env("FLIGHTSTORE_BIN", env!("CARGO_BIN_EXE_flightstore")));
}
