#![allow(clippy::disallowed_methods)] // the benchmark is the driver: it reads the clock
//! Memory over long runs, measured with a counting allocator (not criterion: it reports bytes).
//!
//! - live heap of a `Connection` after 1 000, 100 000 and 1 000 000 try_acquire → release cycles
//!   (the engine must not grow);
//! - live heap per held lock for one client holding and renewing 10 000 locks;
//! - live heap after a million distinct lock names, each acquired and released once (the lock
//!   table must shrink back: within 10 % of its start).
//!
//! Run: `cargo bench --bench memory`.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{pump, Counting, Cycle, ALLOCS, LIVE};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    cycles();
    held_locks();
    distinct_names();
}

fn cycles() {
    let mut cycle = Cycle::new();
    let base = live();
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut done = 0u64;
    println!("try_acquire → release cycles through Connection (bytes in, bytes out):");
    for checkpoint in [1_000u64, 100_000, 1_000_000] {
        while done < checkpoint {
            cycle.run();
            done += 1;
        }
        println!(
            "  after {:>9} cycles: live heap {:+} bytes vs. start ({:.3} allocations per cycle)",
            done,
            live() - base,
            (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / done as f64
        );
    }
    let per = started.elapsed() / done as u32;
    println!("  mean {per:?} per cycle (with the counting allocator)");
    assert_eq!(cycle.conn.engine().operations_in_progress(), 0);
}

fn held_locks() {
    const LOCKS: usize = 10_000;
    let before = live();
    let (mut conn, mut broker, mut scratch, t) = support::holding("holder", LOCKS);
    let held = live() - before;
    let at = t + Duration::from_secs(10);
    let started = Instant::now();
    conn.handle_timeout(at);
    let renewed = pump(&mut conn, &mut broker, at, &mut scratch);
    let round = started.elapsed();
    println!("one client holding {LOCKS} locks (30 s lease, renewed every 10 s):");
    println!(
        "  live heap {} bytes = {} bytes per held lock",
        held,
        held / LOCKS as isize
    );
    println!(
        "  one renewal round: {renewed} renewals in {round:?} = {:?} CPU per renewal (bytes and broker included)",
        round / LOCKS as u32
    );
}

fn distinct_names() {
    const NAMES: u64 = 1_000_000;
    let mut cycle = Cycle::new();
    cycle.run_named("warm-up");
    let base = live();
    let started = Instant::now();
    println!("a million distinct lock names, each acquired and released once:");
    for i in 0..NAMES {
        cycle.run_named(&format!("device-{i:07}"));
    }
    let grown = live() - base;
    println!(
        "  live heap {grown:+} bytes vs. start ({} locks kept), mean {:?} per name",
        cycle.conn.engine().locks_kept(),
        started.elapsed() / NAMES as u32
    );
    assert!(
        grown * 10 <= base,
        "the lock table did not shrink back: {grown:+} bytes over a start of {base}"
    );
}
