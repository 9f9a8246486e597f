//! The simulator must find the bug planted by the `canary` feature (lease validity without the
//! safety margin) within a small budget of seeds.
//!
//! `cargo test -p leasedlock-fuzz --features canary --test canary -- --nocapture`
#![cfg(feature = "canary")]

use leasedlock_fuzz::sim;

/// Seeds tried before the test gives up.
const BUDGET: u64 = 500;
const INPUT_LEN: usize = 600;

#[test]
fn simulator_finds_the_planted_bug() {
    for seed in 0..BUDGET {
        let input = sim::seed_input(seed, INPUT_LEN);
        if let Err(failure) = sim::simulate(&input) {
            println!(
                "found after {} schedules (seed {seed}):\n{failure}",
                seed + 1
            );
            assert!(
                failure.message.starts_with("S1"),
                "the planted bug shows as two holders: {}",
                failure.message
            );
            return;
        }
    }
    panic!("the simulator did not find the planted bug in {BUDGET} seeds");
}
