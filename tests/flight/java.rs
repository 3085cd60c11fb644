//! The JDBC interop suite (tests/java) against the real `flightstore` binary: the Arrow Flight
//! SQL JDBC driver 18.3.0 (the one DBeaver ships), run by Maven (`mvn -q -B test`), which
//! downloads the driver from Maven Central on first use. The Java tests start the server
//! themselves from `FLIGHTSTORE_BIN`.
//!
//! Needs `mvn` and a JDK 17+ on PATH; without them this test fails (it never passes silently).

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

#[test]
fn jdbc_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java");
    let mut cmd = Command::new("mvn");
    cmd.args(["-q", "-B", "test"])
        .current_dir(&dir)
        .env("FLIGHTSTORE_BIN", env!("CARGO_BIN_EXE_flightstore"));
    let status = match cmd.status() {
        Ok(status) => status,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`mvn` is not on PATH: the JDBC suite (tests/java) needs Maven and a JDK 17+ \
             (Debian: apt-get install maven openjdk-17-jdk-headless)"
        ),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    };
    assert!(
        status.success(),
        "the JDBC suite failed ({status}): see Maven's report above, \
         tests/java/target/surefire-reports/ and tests/java/target/flightstore-server.log"
    );
}
