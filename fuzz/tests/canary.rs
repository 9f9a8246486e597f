//! The simulator must find the bug planted by the `canary` feature (lease validity without the
//! safety margin) within a small budget of seeds — in each mode: driving the engine at the
//! `Message` level, and as a `Connection` over bytes through the modelled broker.
//!
//! `cargo test -p leasedlock-fuzz --features canary --test canary -- --nocapture`
#![cfg(feature = "canary")]

use leasedlock_fuzz::sim::{self, Mode};

/// Seeds tried before a test gives up.
const BUDGET: u64 = 500;
const INPUT_LEN: usize = 600;

/// The first seed whose run in `mode` fails; the failure must be two holders (S1).
fn finds_the_planted_bug(mode: Mode) {
    for seed in 0..BUDGET {
        let mut input = sim::seed_input(seed, INPUT_LEN);
        sim::set_mode(&mut input, mode);
        if let Err(failure) = sim::simulate(&input) {
            println!(
                "{mode:?} mode: found after {} schedules (seed {seed}):\n{failure}",
                seed + 1
            );
            assert_eq!(failure.mode, mode);
            assert!(
                failure.message.starts_with("S1"),
                "the planted bug shows as two holders: {}",
                failure.message
            );
            return;
        }
    }
    panic!("the simulator did not find the planted bug in {BUDGET} seeds in {mode:?} mode");
}

#[test]
fn simulator_finds_the_planted_bug() {
    finds_the_planted_bug(Mode::Messages);
}

#[test]
fn simulator_finds_the_planted_bug_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes);
}
