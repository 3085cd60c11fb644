//! The `flightstore` binary (the Flight server arrives with the next issue).

fn main() {
    eprintln!(
        "flightstore {}: the Flight server is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
