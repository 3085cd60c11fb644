//! The pyarrow interop suite (tests/python) against the real `flightstore` binary.
//!
//! Uses the venv in `.venv` (created here if missing; the pinned packages of
//! tests/python/requirements.txt and the `flightstore` package of client/python are
//! installed in it on each run), or the interpreter in `FLIGHTSTORE_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// The venv's interpreter, with tests/python/requirements.txt and the `flightstore`
/// package of this checkout (client/python, reinstalled on every run) installed.
fn python(root: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("FLIGHTSTORE_PYTHON") {
        return p.into();
    }
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    }
    let pip = |args: &[&str]| {
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args)
            .current_dir(root))
    };
    pip(&["-r", "tests/python/requirements.txt"]);
    pip(&["--no-deps", "--force-reinstall", "./client/python"]);
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
