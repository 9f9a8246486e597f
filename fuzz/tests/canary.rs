//! The simulator must find the bugs planted by the canary features within a small budget of
//! seeds:
//!
//! - `canary` (lease validity without the safety margin) in each mode: driving the engine at the
//!   `Message` level, and as a `Connection` over bytes through the modelled broker;
//! - `canary-edit-fence` (edits that do not raise the key's fence before the user sees the
//!   value) in message mode, where a fenced write can be held past the next holder's read;
//! - `canary-pause` (lease validity by the monotonic clock only) in each mode, where a client's
//!   host is suspended: its monotonic clock stands still while its wall clock runs on;
//! - `canary-stall` (a lease's validity counted from the reply's arrival, not from the SET's
//!   sending) in each mode, where a message or a connection's bytes stall beyond the margin;
//! - `canary-5xx` (a write answered 503 taken as a definite failure) in each mode, where the
//!   service answers 503 to a request the store may or may not have applied;
//! - `canary-handoff` (a waiter ignores the DELETE that overtook its refused SET's reply) in
//!   message mode, where messages are reordered, by the handoff bound L3;
//! - `canary-resend` (a connection keeps the requests in flight when it ends and writes them
//!   without asking the engine) in byte mode, where the broker resumes sessions: the client
//!   re-sends with DUP requests the engine gave up;
//! - `canary-delete-absent` (a delete edit of a key read absent reports `Deleted` and leaves the
//!   fence's placeholder) in each mode, where edits end with `Delete` or `Abort` too, by S4;
//! - `canary-suback` (a refused SUBACK ignored: the operations wait on for the subscription) in
//!   each mode, where the broker refuses subscriptions, by L4;
//! - `canary-holder` (holder values without the session id) in each mode, where two engines
//!   have one client id and tell their leases apart by session ids, as S1 (or S4);
//! - `canary-forget` (a waiter with a confirmed registration waits for the DELETE without a
//!   fallback re-check) in message mode, where the store forgets registrations, by L5;
//! - `canary-quota` (a repeated write refused with the store's quota error reported as a
//!   definite failure) in message mode, where the store fills up, with edits without the fence
//!   (the only ones that repeat a write), by S4.
//!
//! `cargo test -p leasedlock-fuzz --features canary --test canary -- --nocapture`, and the same
//! with `--features canary-edit-fence`, `canary-pause`, `canary-stall`, `canary-5xx`,
//! `canary-handoff`, `canary-resend`, `canary-delete-absent`, `canary-suback`, `canary-holder`,
//! `canary-forget` and `canary-quota`.
#![cfg(any(
    feature = "canary",
    feature = "canary-edit-fence",
    feature = "canary-pause",
    feature = "canary-stall",
    feature = "canary-5xx",
    feature = "canary-handoff",
    feature = "canary-resend",
    feature = "canary-delete-absent",
    feature = "canary-suback",
    feature = "canary-holder",
    feature = "canary-forget",
    feature = "canary-quota"
))]

use leasedlock_fuzz::sim::{self, Mode};

/// Seeds tried before a test gives up.
const BUDGET: u64 = 1000;
const INPUT_LEN: usize = 600;

/// The first seed whose run in `mode` fails; the failure must be one of the invariants
/// `expected`.
#[cfg_attr(
    any(feature = "canary-forget", feature = "canary-quota"),
    allow(dead_code)
)] // their tests prepare the inputs
fn finds_the_planted_bug(mode: Mode, expected: &[&str]) {
    finds_the_planted_bug_in(mode, expected, |_| {});
}

/// As [`finds_the_planted_bug`], with each input changed by `prepare` first.
fn finds_the_planted_bug_in(mode: Mode, expected: &[&str], prepare: fn(&mut [u8])) {
    for seed in 0..BUDGET {
        let mut input = sim::seed_input(seed, INPUT_LEN);
        sim::set_mode(&mut input, mode);
        prepare(&mut input);
        if let Err(failure) = sim::simulate(&input) {
            println!(
                "{mode:?} mode: found after {} schedules (seed {seed}):\n{failure}",
                seed + 1
            );
            assert_eq!(failure.mode, mode);
            assert!(
                expected.iter().any(|e| failure.message.starts_with(e)),
                "the planted bug shows as one of {expected:?}: {}",
                failure.message
            );
            return;
        }
    }
    panic!("the simulator did not find the planted bug in {BUDGET} seeds in {mode:?} mode");
}

/// Without the margin, two clients hold a lock at once (S1).
#[cfg(feature = "canary")]
#[test]
fn simulator_finds_the_planted_bug() {
    finds_the_planted_bug(Mode::Messages, &["S1"]);
}

#[cfg(feature = "canary")]
#[test]
fn simulator_finds_the_planted_bug_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S1"]);
}

/// Without the edit fence, a held write of a previous holder lands after the next edit showed
/// its user the value (S6).
#[cfg(feature = "canary-edit-fence")]
#[test]
fn simulator_finds_the_missing_edit_fence() {
    finds_the_planted_bug(Mode::Messages, &["S6"]);
}

/// With validity by the monotonic clock only, a client whose host was suspended past its lease
/// still holds the lock when another has taken it (S1), or takes a reply that waited out the
/// suspension as a win with a token older than the next holder's (S2).
#[cfg(feature = "canary-pause")]
#[test]
fn simulator_finds_validity_by_the_monotonic_clock_only() {
    finds_the_planted_bug(Mode::Messages, &["S1", "S2"]);
}

#[cfg(feature = "canary-pause")]
#[test]
fn simulator_finds_validity_by_the_monotonic_clock_only_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S1", "S2"]);
}

/// With validity counted from the reply, a reply that stalled beyond the margin makes the client
/// trust its lease after the store has ended it and given the lock to another (S1), or announce
/// a token older than the next holder's (S2).
#[cfg(feature = "canary-stall")]
#[test]
fn simulator_finds_validity_counted_from_the_reply() {
    finds_the_planted_bug(Mode::Messages, &["S1", "S2"]);
}

#[cfg(feature = "canary-stall")]
#[test]
fn simulator_finds_validity_counted_from_the_reply_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S1", "S2"]);
}

/// With a 503 taken as a definite failure, an edit whose write the store applied before the
/// service answered 503 is reported failed: the counter is above what the edits report (S4).
#[cfg(feature = "canary-5xx")]
#[test]
fn simulator_finds_unavailable_taken_as_not_applied() {
    finds_the_planted_bug(Mode::Messages, &["S4"]);
}

#[cfg(feature = "canary-5xx")]
#[test]
fn simulator_finds_unavailable_taken_as_not_applied_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S4"]);
}

/// A waiter that ignores the DELETE which overtook its refused SET's reply sleeps until its
/// re-check, past the handoff bound (L3).
#[cfg(feature = "canary-handoff")]
#[test]
fn simulator_finds_a_waiter_that_sleeps_through_the_handoff() {
    finds_the_planted_bug(Mode::Messages, &["L3"]);
}

/// A connection that keeps its requests in flight when it ends, and lets out whatever its
/// session holds without asking the engine, re-sends them on the resumed session: a fenced write of an edit the engine gave up leaves after its lease (S7), or a write
/// the engine reported failed reaches the store (S4), or a SET given up takes the lock (S1).
#[cfg(feature = "canary-resend")]
#[test]
fn simulator_finds_requests_resent_after_the_engine_gave_up() {
    finds_the_planted_bug(Mode::Bytes, &["S7", "S4", "S1"]);
}

/// A delete edit that takes a key read absent as deleted already reports `Deleted` while the
/// store carried out no delete: S4 counts the deletes as it counts the sets.
#[cfg(feature = "canary-delete-absent")]
#[test]
fn simulator_finds_a_delete_reported_but_not_done() {
    finds_the_planted_bug(Mode::Messages, &["S4"]);
}

#[cfg(feature = "canary-delete-absent")]
#[test]
fn simulator_finds_a_delete_reported_but_not_done_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S4"]);
}

/// A client that ignores a refused SUBACK keeps its operations waiting for a subscription its
/// connection will not get (L4).
#[cfg(feature = "canary-suback")]
#[test]
fn simulator_finds_operations_waiting_on_a_refused_subscription() {
    finds_the_planted_bug(Mode::Messages, &["L4"]);
}

#[cfg(feature = "canary-suback")]
#[test]
fn simulator_finds_operations_waiting_on_a_refused_subscription_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["L4"]);
}

/// Without the session id in the holder value, two engines with one client id have one holder
/// value: both win the lock (S1), or one's edit writes under the other's lease (S4).
#[cfg(feature = "canary-holder")]
#[test]
fn simulator_finds_twins_with_one_holder_value() {
    finds_the_planted_bug(Mode::Messages, &["S1", "S4"]);
}

#[cfg(feature = "canary-holder")]
#[test]
fn simulator_finds_twins_with_one_holder_value_in_byte_mode() {
    finds_the_planted_bug(Mode::Bytes, &["S1", "S4"]);
}

/// A waiter that trusts its confirmed KEYNOTIFY registration to bring the DELETE, with no
/// fallback re-check, sleeps through the lock's freeing when the store forgot the registration:
/// L5. No message is lost in these runs, so that the forgetful store, not a lost notification,
/// is what finds it.
#[cfg(feature = "canary-forget")]
#[test]
fn simulator_finds_a_waiter_that_trusts_its_registration() {
    finds_the_planted_bug_in(Mode::Messages, &["L5"], sim::set_lossless);
}

/// An edit whose write was repeated (the first attempt's reply lost) and whose repetition the
/// full store refused reports a definite failure, though the first attempt may have been
/// applied: the store carried out more writes than were reported done or indeterminate (S4).
/// Only an edit without the edit fence repeats its write (one with it releases the lock right
/// behind the write), so the runs leave the fence out.
#[cfg(feature = "canary-quota")]
#[test]
fn simulator_finds_a_refused_repetition_taken_as_definite() {
    finds_the_planted_bug_in(Mode::Messages, &["S4"], |input| {
        sim::set_unfenced(input);
        sim::set_repeats_into_a_full_store(input);
    });
}
