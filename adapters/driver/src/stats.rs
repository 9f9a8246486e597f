//! Metrics: what the actor counts, and the snapshot [`Client::stats`](crate::Client::stats)
//! returns.

use leasedlock::lock::{Event, Intent, OpError};
use std::time::Duration;

/// How the operations of one kind ended. Each operation is counted once in `started` and, once
/// its outcome is known, in exactly one of the others (an operation still running is in none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcomes {
    /// Operations the engine accepted.
    pub started: u64,
    /// Operations that did what they were asked: the lock won (a hold: first won), released,
    /// its holder read, the edit or the store access done.
    pub succeeded: u64,
    /// `try_acquire` (or `try_hold`) found another holder.
    pub busy: u64,
    /// Operations that failed (timeout, disconnect, refused request, …).
    pub failed: u64,
    /// Operations cancelled by dropping their future or hold before their outcome.
    pub cancelled: u64,
    /// Calls the engine refused at once (nothing was sent; not counted in `started`).
    pub refused: u64,
}

/// A snapshot of a driver's metrics, from [`Client::stats`](crate::Client::stats). Counters only
/// grow, from the driver's start; `locks_held` is the state now.
///
/// The README's "Metrics" table lists the fields; `examples/metrics.rs` of `leasedlock-tokio`
/// prints them periodically.
///
/// ```no_run
/// use leasedlock_driver::{Client, Error};
///
/// async fn report(client: &Client) -> Result<(), Error> {
///     let s = client.stats().await?;
///     let waited = s.wait_total.checked_div(s.acquisitions as u32).unwrap_or_default();
///     println!(
///         "acquire: {} ok, {} failed; mean wait {waited:?}; closest renewal {:?}",
///         s.acquire.succeeded, s.acquire.failed, s.renewal_slack_min
///     );
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `try_acquire` calls.
    pub try_acquire: Outcomes,
    /// `acquire` calls.
    pub acquire: Outcomes,
    /// `hold` calls (succeeded: the lock was first won).
    pub hold: Outcomes,
    /// Holds that end at their first loss: `try_hold` and election campaigns (succeeded: the
    /// lock was won; busy: a single try found another holder).
    pub keep: Outcomes,
    /// `release` calls and `Hold::close`.
    pub release: Outcomes,
    /// `holder` calls.
    pub holder: Outcomes,
    /// `edit` calls.
    pub edit: Outcomes,
    /// Store accesses: `get`, `set` and `delete` of any key.
    pub access: Outcomes,
    /// State-store requests published.
    pub requests_sent: u64,
    /// Requests that got no response in time.
    pub request_timeouts: u64,
    /// Requests made again: the previous one timed out, was cut by a disconnect or reached no
    /// state store.
    pub retries: u64,
    /// Requests the MQTT session refused to publish (they time out).
    pub publishes_refused: u64,
    /// Connections the broker accepted.
    pub connections: u64,
    /// Connections accepted after the first one.
    pub reconnects: u64,
    /// Connection attempts that failed (transport, TLS, CONNACK refusal, ended before CONNACK).
    pub connect_failures: u64,
    /// Accepted connections that ended.
    pub disconnects: u64,
    /// Connections the broker ended because another connection took the session over
    /// (DISCONNECT 0x8E: another client uses the same client id).
    pub takeovers: u64,
    /// Messages that could not be decoded or were on a topic the client does not use.
    pub malformed_messages: u64,
    /// Responses that matched no pending request (late, duplicate or foreign).
    pub unmatched_responses: u64,
    /// Timestamps the hybrid logical clock refused (drift or overflow).
    pub clock_errors: u64,
    /// Key notifications processed.
    pub notifications: u64,
    /// Locks held now (a lease won and not yet released, lost or run out), by any operation.
    pub locks_held: u64,
    /// Acquisitions whose wait is counted in `wait_total` and `wait_max`: every `acquire` and
    /// `try_acquire` won, every hold (`hold`, `try_hold`, a campaign) first won and every `edit`
    /// that got the lock.
    pub acquisitions: u64,
    /// Time from those operations' start until they had the lock, added up.
    pub wait_total: Duration,
    /// The longest of those waits.
    pub wait_max: Duration,
    /// Renewals of holds that succeeded.
    pub renewals: u64,
    /// The smallest renewal slack seen: how long the previous lease could still be used when a
    /// renewal succeeded (its `valid_until` minus the time of the renewal). `None` before the
    /// first renewal. Small values mean renewals come close to losing the lease.
    pub renewal_slack_min: Option<Duration>,
    /// The slack of the latest renewal.
    pub renewal_slack_last: Option<Duration>,
    /// The slacks of all renewals, added up (divide by `renewals` for the mean).
    pub renewal_slack_total: Duration,
    /// Leases of holds lost (a `hold` then acquires again; a `try_hold` or a leadership ends).
    pub leases_lost: u64,
    /// Leases of `try_acquire`/`acquire` that ran out or were taken before their release.
    pub leases_expired: u64,
    /// Events of the engine that nobody waited for any more (the operation's handle was gone).
    pub events_dropped: u64,
}

/// The kind of an operation, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    TryAcquire,
    Acquire,
    Hold,
    Keep,
    Release,
    Holder,
    Edit,
    Access,
}

impl Kind {
    pub(crate) fn of(intent: &Intent) -> Kind {
        match intent {
            Intent::TryAcquire { .. } => Kind::TryAcquire,
            Intent::Acquire { .. } => Kind::Acquire,
            Intent::Hold { .. } => Kind::Hold,
            Intent::Keep { .. } => Kind::Keep,
            Intent::Release | Intent::CloseHold => Kind::Release,
            Intent::Holder => Kind::Holder,
            Intent::Edit { .. } => Kind::Edit,
            Intent::Access { .. } => Kind::Access,
        }
    }

    /// The name in traces.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::TryAcquire => "try_acquire",
            Kind::Acquire => "acquire",
            Kind::Hold => "hold",
            Kind::Keep => "keep",
            Kind::Release => "release",
            Kind::Holder => "holder",
            Kind::Edit => "edit",
            Kind::Access => "access",
        }
    }
}

/// How an operation ended, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Busy,
    Failed,
    Cancelled,
}

impl Outcome {
    /// The outcome an event decides, if it decides one.
    pub(crate) fn of(event: &Event) -> Option<Outcome> {
        match event {
            Event::Acquired { .. }
            | Event::Released { .. }
            | Event::Holder { .. }
            | Event::EditDone { .. }
            | Event::Accessed { .. } => Some(Outcome::Succeeded),
            Event::Busy { .. } => Some(Outcome::Busy),
            Event::Failed {
                error: OpError::Cancelled,
                ..
            }
            | Event::HoldEnded { .. } => Some(Outcome::Cancelled),
            Event::Failed { .. } => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl Stats {
    fn outcomes(&mut self, kind: Kind) -> &mut Outcomes {
        match kind {
            Kind::TryAcquire => &mut self.try_acquire,
            Kind::Acquire => &mut self.acquire,
            Kind::Hold => &mut self.hold,
            Kind::Keep => &mut self.keep,
            Kind::Release => &mut self.release,
            Kind::Holder => &mut self.holder,
            Kind::Edit => &mut self.edit,
            Kind::Access => &mut self.access,
        }
    }

    pub(crate) fn started(&mut self, kind: Kind) {
        self.outcomes(kind).started += 1;
    }

    pub(crate) fn refused(&mut self, kind: Kind) {
        self.outcomes(kind).refused += 1;
    }

    pub(crate) fn ended(&mut self, kind: Kind, outcome: Outcome) {
        let outcomes = self.outcomes(kind);
        match outcome {
            Outcome::Succeeded => outcomes.succeeded += 1,
            Outcome::Busy => outcomes.busy += 1,
            Outcome::Failed => outcomes.failed += 1,
            Outcome::Cancelled => outcomes.cancelled += 1,
        }
    }

    pub(crate) fn waited(&mut self, wait: Duration) {
        self.acquisitions += 1;
        self.wait_total += wait;
        self.wait_max = self.wait_max.max(wait);
    }

    pub(crate) fn renewed(&mut self, slack: Duration) {
        self.renewals += 1;
        self.renewal_slack_last = Some(slack);
        self.renewal_slack_min = Some(self.renewal_slack_min.map_or(slack, |m| m.min(slack)));
        self.renewal_slack_total += slack;
    }

    /// This snapshot with the engine's counters and its leases now.
    pub(crate) fn with_engine(&self, engine: &leasedlock::lock::Client) -> Stats {
        let counted = engine.stats();
        Stats {
            requests_sent: counted.requests_sent,
            request_timeouts: counted.request_timeouts,
            retries: counted.retries,
            malformed_messages: counted.malformed_messages,
            unmatched_responses: counted.unmatched_responses,
            clock_errors: counted.clock_errors,
            notifications: counted.notifications,
            locks_held: engine.leases_held() as u64,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_slack_keeps_the_smallest_the_latest_and_the_sum() {
        let mut stats = Stats::default();
        assert_eq!(stats.renewal_slack_min, None);
        for ms in [300, 100, 200] {
            stats.renewed(Duration::from_millis(ms));
        }
        assert_eq!(stats.renewals, 3);
        assert_eq!(stats.renewal_slack_min, Some(Duration::from_millis(100)));
        assert_eq!(stats.renewal_slack_last, Some(Duration::from_millis(200)));
        assert_eq!(stats.renewal_slack_total, Duration::from_millis(600));
    }

    #[test]
    fn waits_add_up_and_keep_their_maximum() {
        let mut stats = Stats::default();
        stats.waited(Duration::from_millis(5));
        stats.waited(Duration::from_millis(2));
        assert_eq!(
            (stats.acquisitions, stats.wait_total, stats.wait_max),
            (2, Duration::from_millis(7), Duration::from_millis(5))
        );
    }
}
