//! A deterministic simulator of lock clients, the state store and the network between them.
//!
//! The input bytes choose a configuration (1–4 clients, clock skews and drifts, network delays,
//! leases) and then, step by step, one of the actions possible at that moment: let time jump to
//! the next deadline, sleep, start a user intent on a client, complete an edit, disconnect,
//! reconnect or crash a client, or change a client's clock rate. Every message a client or the
//! store sends takes one more byte that decides its fate on its link: delivered after a delay
//! (which reorders), dropped, duplicated, or (requests) applied with the reply lost. Time only
//! moves to the next deadline (a delivery, a client timer, a key expiry): there is no tick.
//!
//! Model limits (each one a decision, see the report in the commit history): one-way delays are
//! below the engine's safety margin (the margin covers the time a holder needs to act on its
//! token); a duplicated *request* reaches the store right after its original (an MQTT QoS 1
//! redelivery happens before anything the client sends later), while duplicated responses and
//! notifications may come at any delay. A request whose copy arrived after the client had already
//! seen the answer to the original could replay a VDEL onto a later lease of the same holder
//! value: that is a limit of the protocol (holder values are reused), not of the engine.
//!
//! After every step the invariants are checked:
//!
//! - **S1** no two clients consider themselves holders of a lock at the same real instant
//!   (each client's monotonic clock drifts at most `clock_rate_drift_ppm` from real time);
//! - **S2** the fencing tokens announced to users (`Acquired`, `Renewed`) never decrease per lock;
//! - **S3** every operation ends exactly once, with a final event of its kind, and gets no event
//!   after that;
//! - **S4** for each lock's counter (edited under the lock): `ok ≤ counter ≤ ok + indeterminate
//!   (+ writes still in flight)`, and the store never accepts a write to the counter without a
//!   fencing token or with one lower than the stored token;
//! - **S5** nothing panics (a panic is a failure of the run).
//!
//! When the input ends, faults stop and the network heals: every client reconnects, holds are
//! closed, edits that wait for the user are completed, and the simulation runs to quiescence
//! (bounded). Then **L1** every operation has ended, and **L2** a fresh `acquire` on a free lock
//! succeeds within a bounded simulated time.
//!
//! A violation is returned as a [`Failure`] (and [`run`] panics with it): the step, the invariant
//! and the last events of the trace.

mod checks;
mod input;
mod trace;
mod world;

pub use input::seed_input;
pub use world::{Failure, Summary};

/// Runs one schedule; `Err` describes the first violated invariant with a trace.
pub fn simulate(data: &[u8]) -> Result<Summary, Failure> {
    world::World::run(data)
}

/// The fuzz harness: runs one schedule and panics with the trace on a violation.
pub fn run(data: &[u8]) {
    if let Err(failure) = simulate(data) {
        panic!("{failure}");
    }
}
