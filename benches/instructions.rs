#![allow(clippy::disallowed_methods)] // the benchmark is the driver: it reads the clock
//! The try_acquire → release cycle through `Connection`, a fixed number of times, for instruction
//! counts: run its release binary under `valgrind --tool=callgrind` (see BENCHMARKS.md) and divide
//! by the cycles. Deterministic where timings are not: the count does not depend on what else the
//! machine is doing.
//!
//! Run: `cargo bench --bench instructions` (prints the cycles/s too); `CYCLES` sets the count
//! (default 20 000).

mod support;

use std::time::Instant;
use support::Cycle;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let cycles: u64 = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut cycle = Cycle::new();
    let started = Instant::now();
    for _ in 0..cycles {
        cycle.run();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{cycles} try_acquire → release cycles in {secs:.3} s: {:.2} µs per cycle",
        secs * 1e6 / cycles as f64
    );
}
