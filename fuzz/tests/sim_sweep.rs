//! Sweeps the simulator over a range of seeds: `SIM_SEED .. SIM_SEED + SIM_SEEDS - 1`
//! (defaults 0 and 2000). Each seed expands into input bytes (`sim::seed_input`).
//!
//! `SIM_LEN` sets the input length per seed (default 600 bytes: a few hundred steps).
//!
//! Rerun one seed: `SIM_SEED=123 SIM_SEEDS=1 cargo test -p leasedlock-fuzz --test sim_sweep -- --nocapture`
//! (prints its trace).

use leasedlock_fuzz::sim;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Default input length of one seed-expanded schedule.
const INPUT_LEN: u64 = 600;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn sweep_seeds() {
    let first = env_u64("SIM_SEED", 0);
    let count = env_u64("SIM_SEEDS", 2000);
    let len = usize::try_from(env_u64("SIM_LEN", INPUT_LEN)).unwrap_or(600);
    let mut steps = 0u64;
    let mut acquisitions = 0u64;
    let mut edits = 0u64;
    for seed in first..first.saturating_add(count) {
        let input = sim::seed_input(seed, len);
        let len_var = if len == 600 {
            String::new()
        } else {
            format!("SIM_LEN={len} ")
        };
        let rerun = format!(
            "{len_var}SIM_SEED={seed} SIM_SEEDS=1 cargo test -p leasedlock-fuzz --test sim_sweep -- --nocapture"
        );
        match catch_unwind(AssertUnwindSafe(|| sim::simulate(&input))) {
            Ok(Ok(summary)) => {
                steps += summary.steps;
                acquisitions += summary.acquisitions;
                edits += summary.edits_written;
                if count == 1 {
                    for line in &summary.trace {
                        println!("{line}");
                    }
                    println!(
                        "seed {seed}: {} steps, {} acquisitions, {} edits written, {} ms simulated",
                        summary.steps,
                        summary.acquisitions,
                        summary.edits_written,
                        summary.simulated_ms
                    );
                }
            }
            Ok(Err(failure)) => panic!("seed {seed}: {failure}\nrerun: {rerun}"),
            Err(_) => panic!("seed {seed}: the simulation panicked (S5)\nrerun: {rerun}"),
        }
    }
    println!(
        "ran {count} schedules (seeds {first}..={}): {steps} steps, {acquisitions} acquisitions, {edits} edits written",
        first + count.saturating_sub(1)
    );
}

#[test]
fn same_input_same_trace() {
    for seed in [1u64, 7, 42, 1234] {
        let input = sim::seed_input(seed, 600);
        let a = sim::simulate(&input).map(|s| (s.trace_hash, s.steps));
        let b = sim::simulate(&input).map(|s| (s.trace_hash, s.steps));
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed}: two runs differ"),
            (a, b) => panic!("seed {seed}: {a:?} / {b:?}"),
        }
    }
}
