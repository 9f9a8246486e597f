//! Fuzz harnesses for leasedlock. Each harness is a plain function over bytes: the cargo-fuzz
//! targets in `fuzz_targets/` call it, and `tests/replay.rs` runs it over the checked-in corpus.

pub mod mqtt;
pub mod sim;
pub mod wire;
