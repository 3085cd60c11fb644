//! Flightstore client: wire types (a later issue fills this crate).
