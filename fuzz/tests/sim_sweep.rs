//! Sweeps the simulator over a range of seeds: `SIM_SEED .. SIM_SEED + SIM_SEEDS - 1`
//! (defaults 0 and 2000). Each seed expands into input bytes (`sim::seed_input`), whose first
//! byte also chooses the mode: about half the seeds run in message mode, half in byte mode.
//!
//! `SIM_LEN` sets the input length per seed (default 600 bytes: a few hundred steps);
//! `SIM_MODE=messages` or `SIM_MODE=bytes` runs every seed in that mode; `SIM_HERD=1` runs four
//! clients on one lock in every seed (`sim::set_herd`: where waiters make herds). `SIM_ALL=1` goes on
//! after a failing seed, prints one line per failure and fails at the end with their count (for
//! long fuzzing: how often, not only whether).
//!
//! Rerun one seed: `SIM_SEED=123 SIM_SEEDS=1 cargo test -p leasedlock-fuzz --test sim_sweep -- --nocapture`
//! (prints its trace).

use leasedlock_fuzz::sim::{self, Mode};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Default input length of one seed-expanded schedule.
const INPUT_LEN: u64 = 600;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What the schedules of one mode did.
#[derive(Default)]
struct Totals {
    schedules: u64,
    steps: u64,
    acquisitions: u64,
    edits: u64,
}

#[test]
fn sweep_seeds() {
    let first = env_u64("SIM_SEED", 0);
    let count = env_u64("SIM_SEEDS", 2000);
    let len = usize::try_from(env_u64("SIM_LEN", INPUT_LEN)).unwrap_or(600);
    let forced = match std::env::var("SIM_MODE").as_deref().map(str::trim) {
        Ok("messages") => Some(Mode::Messages),
        Ok("bytes") => Some(Mode::Bytes),
        _ => None,
    };
    let keep_going = std::env::var("SIM_ALL").is_ok_and(|v| v == "1");
    let herd = std::env::var("SIM_HERD").is_ok_and(|v| v == "1");
    let mut failures = 0u64;
    let mut totals = [Totals::default(), Totals::default()];
    for seed in first..first.saturating_add(count) {
        let mut input = sim::seed_input(seed, len);
        if let Some(mode) = forced {
            sim::set_mode(&mut input, mode);
        }
        if herd {
            sim::set_herd(&mut input);
        }
        let len_var = if len == 600 {
            String::new()
        } else {
            format!("SIM_LEN={len} ")
        };
        let herd_var = if herd { "SIM_HERD=1 " } else { "" };
        let mode_var = match forced {
            Some(Mode::Messages) => "SIM_MODE=messages ",
            Some(Mode::Bytes) => "SIM_MODE=bytes ",
            None => "",
        };
        let rerun = format!(
            "{len_var}{herd_var}{mode_var}SIM_SEED={seed} SIM_SEEDS=1 cargo test -p leasedlock-fuzz --test sim_sweep -- --nocapture"
        );
        let mode = sim::mode_of(&input);
        match catch_unwind(AssertUnwindSafe(|| sim::simulate(&input))) {
            Ok(Ok(summary)) => {
                assert_eq!(summary.mode, mode, "seed {seed}: the mode the input chose");
                let t = &mut totals[usize::from(mode == Mode::Bytes)];
                t.schedules += 1;
                t.steps += summary.steps;
                t.acquisitions += summary.acquisitions;
                t.edits += summary.edits_written;
                if count == 1 {
                    for line in &summary.trace {
                        println!("{line}");
                    }
                    println!(
                        "seed {seed} ({:?} mode): {} steps, {} acquisitions, {} edits written, {} ms simulated",
                        summary.mode,
                        summary.steps,
                        summary.acquisitions,
                        summary.edits_written,
                        summary.simulated_ms
                    );
                }
            }
            Ok(Err(failure)) if keep_going => {
                failures += 1;
                let first = failure.to_string();
                println!("seed {seed}: {}", first.lines().next().unwrap_or_default());
            }
            Ok(Err(failure)) => panic!("seed {seed}: {failure}\nrerun: {rerun}"),
            Err(_) if keep_going => {
                failures += 1;
                println!("seed {seed} ({mode:?} mode): the simulation panicked (S5)");
            }
            Err(_) => {
                panic!("seed {seed} ({mode:?} mode): the simulation panicked (S5)\nrerun: {rerun}")
            }
        }
    }
    println!(
        "ran {count} schedules (seeds {first}..={}):",
        first + count.saturating_sub(1)
    );
    for (mode, t) in [Mode::Messages, Mode::Bytes].iter().zip(&totals) {
        println!(
            "  {mode:?} mode: {} schedules, {} steps, {} acquisitions, {} edits written",
            t.schedules, t.steps, t.acquisitions, t.edits
        );
    }
    assert_eq!(failures, 0, "{failures} of {count} schedules failed");
}

#[test]
fn same_input_same_trace() {
    for seed in [1u64, 7, 42, 1234] {
        for mode in [Mode::Messages, Mode::Bytes] {
            let mut input = sim::seed_input(seed, 600);
            sim::set_mode(&mut input, mode);
            let a = sim::simulate(&input).map(|s| (s.trace_hash, s.steps, s.mode));
            let b = sim::simulate(&input).map(|s| (s.trace_hash, s.steps, s.mode));
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "seed {seed}, {mode:?} mode: two runs differ");
                    assert_eq!(a.2, mode);
                }
                (a, b) => panic!("seed {seed}, {mode:?} mode: {a:?} / {b:?}"),
            }
        }
    }
}

/// The same seed in the two modes: the same configuration and actions, different schedules.
#[test]
fn the_mode_changes_the_run() {
    let mut messages = sim::seed_input(3, 600);
    sim::set_mode(&mut messages, Mode::Messages);
    let mut bytes = messages.clone();
    sim::set_mode(&mut bytes, Mode::Bytes);
    let (m, b) = match (sim::simulate(&messages), sim::simulate(&bytes)) {
        (Ok(m), Ok(b)) => (m, b),
        (m, b) => panic!("{m:?} / {b:?}"),
    };
    assert_eq!((m.mode, b.mode), (Mode::Messages, Mode::Bytes));
    assert_eq!(m.clients, b.clients);
    assert_ne!(m.trace_hash, b.trace_hash);
}
