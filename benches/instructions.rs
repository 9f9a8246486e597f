#![allow(clippy::disallowed_methods)] // the benchmark is the driver: it reads the clock
//! The try_acquire → release cycle through `Connection`, a fixed number of times, for instruction
//! counts: run its release binary under `valgrind --tool=callgrind` (see BENCHMARKS.md) and divide
//! by the cycles. Deterministic where timings are not: the count does not depend on what else the
//! machine is doing.
//!
//! Run: `cargo bench --bench instructions` (prints the cycles/s too); `CYCLES` sets the count
//! (default 20 000).

mod support;

use bytes::BytesMut;
use leasedlock::connection::Connection;
use leasedlock::lock::{Config, Intent, Options};
use leasedlock::mqtt;
use std::time::{Duration, Instant};
use support::{now, pump, Broker};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let cycles: u64 = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let t = now();
    let mut conn =
        Connection::new(Config::new("bench"), mqtt::Options::new("bench"), t, 1).unwrap();
    let mut broker = Broker::new("bench");
    let mut scratch = BytesMut::with_capacity(4096);
    conn.connect(t);
    pump(&mut conn, &mut broker, t, &mut scratch);
    let lock = conn.lock_id("bench-lock").unwrap();
    let lease = Duration::from_secs(10);
    let started = Instant::now();
    for _ in 0..cycles {
        let t = now();
        conn.start(t, lock, Intent::TryAcquire { lease }, Options::default())
            .unwrap();
        let acquired = pump(&mut conn, &mut broker, t, &mut scratch);
        conn.start(t, lock, Intent::Release, Options::default())
            .unwrap();
        let released = pump(&mut conn, &mut broker, t, &mut scratch);
        assert_eq!((acquired, released), (1, 1));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{cycles} try_acquire → release cycles in {secs:.3} s: {:.2} µs per cycle",
        secs * 1e6 / cycles as f64
    );
}
