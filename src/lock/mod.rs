//! The lock engine: many named leased locks multiplexed on one state-store client, sans-IO.
//!
//! [`Client`] takes user intents, state-store [`Message`](crate::Message)s, connection changes and
//! clock readings, and returns [`Output`]s (messages to publish, topics to subscribe, [`Event`]s) and
//! the next deadline. It never reads a clock and never does I/O.
//!
//! # The drive loop
//!
//! After **every** call into the client (an intent, `handle_*`), drain [`Client::poll_output`] until
//! it returns `None`, then sleep until [`Client::poll_timeout`] (or until a message, a connection
//! change or a new intent arrives) and call [`Client::handle_timeout`]. Calling `handle_timeout`
//! early, late or twice is harmless.
//!
//! ```
//! use leasedlock::lock::{Client, Config, Event, Options, Output};
//! use leasedlock::Now;
//! use std::time::{Duration, Instant};
//!
//! let now = Now::new(Instant::now(), 1_700_000_000_000);
//! let mut client = Client::new(Config::new("worker-1"), now, 42).unwrap();
//! let lock = client.lock("my-lock").unwrap();
//! client.handle_connected(now);
//! let op = client.try_acquire(now, lock, Duration::from_secs(10), Options::default()).unwrap();
//! while let Some(output) = client.poll_output() {
//!     match output {
//!         Output::Subscribe(filter) => { /* subscribe, then call handle_subscribed */ let _ = filter; }
//!         Output::Publish(message) => { /* publish with QoS 1 */ let _ = message; }
//!         Output::Event(event) => println!("{event:?}"),
//!     }
//! }
//! let _ = (op, client.poll_timeout());
//! ```
//!
//! # Safety rules the engine keeps
//!
//! - A lease is believed held only until `send time of the SET that won it + lease − margin`; the
//!   margin covers the configured clock-rate drift. After that [`Client::token`] returns `None`, and a
//!   hold emits [`Event::Lost`] no later than that instant.
//! - A waiting acquire registers KEYNOTIFY before its first try, retries on DELETE (at once; after a
//!   seeded jitter while it is part of a herd, see [`Config::retry_jitter_max`]), re-checks when a
//!   fallback timer fires and after every reconnect: a lost notification never hangs it.
//! - A release ends any hold on the lock first: no renewal response that arrives later is used.
//! - Every loss of a lease is reported ([`Event::Lost`] for holds, [`Event::Expired`] otherwise).

pub(crate) mod client;
mod rng;
mod slab;
mod timer;

pub(crate) use client::shrink_after_burst;
pub use client::{Client, Stats};
pub use rng::SplitMix64;

use crate::hlc::{FencingToken, HlcError};
use crate::store::{ResponseError, ServiceError};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Configuration of a lock [`Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The MQTT client id: the holder value of every lock (with `:sessionId` when a session id is
    /// given), `__srcId` of every request, and part of the response and notification topics.
    pub client_id: String,
    /// Timeout of one request when the operation gives none (default 10 s).
    pub request_timeout: Duration,
    /// How far the hybrid logical clock may run ahead of the local wall clock (default 60 s).
    pub max_clock_drift: Duration,
    /// Fixed part of the safety margin subtracted from every lease (default 100 ms): covers the
    /// time a holder needs to act on its token after checking it.
    pub safety_margin: Duration,
    /// Bound on the relative rate drift between this client's monotonic clock and the store's, in
    /// parts per million (default 10 000 = 1 %); `lease × ppm / 10⁶` is added to the margin.
    pub clock_rate_drift_ppm: u32,
    /// Smallest delay before a waiter in a herd retries after a DELETE notification (default 0).
    pub retry_jitter_min: Duration,
    /// Largest delay before a waiter in a herd retries after a DELETE notification (default
    /// 3 ms). A waiter retries at once after a DELETE, with no timer, until one of its SETs right
    /// after a DELETE is refused: then another client won the race, other clients wait too, and
    /// for a second after each such lost race this client retries after a delay drawn from the
    /// seeded PRNG between the two bounds. The jitter spreads the wins among the clients of a
    /// herd (without it, the client the broker notifies first wins nearly every race: 21× between
    /// 8 workers in the demo, 1.2–1.5× with it) and spares the store a burst of SETs that are all
    /// refused but one; a lone waiter never pays it (BENCHMARKS.md, rows 3 and 4). Zero: every
    /// waiter always retries at once.
    pub retry_jitter_max: Duration,
    /// After this client releases a lock it had to wait for, its own next waiting acquisition of
    /// that lock holds back by this much plus a retry jitter (default 2 ms), so that the waiters
    /// woken by the DELETE go first: otherwise the releaser's next SET, right behind its VDEL on
    /// the same connection, would always win.
    pub release_holdback: Duration,
}

impl Config {
    /// The defaults for a client id.
    pub fn new(client_id: impl Into<String>) -> Self {
        Config {
            client_id: client_id.into(),
            request_timeout: Duration::from_secs(10),
            max_clock_drift: crate::hlc::DEFAULT_MAX_DRIFT,
            safety_margin: Duration::from_millis(100),
            clock_rate_drift_ppm: 10_000,
            retry_jitter_min: Duration::ZERO,
            retry_jitter_max: Duration::from_millis(3),
            release_holdback: Duration::from_millis(2),
        }
    }

    /// The margin subtracted from a lease of this length.
    pub fn margin(&self, lease: Duration) -> Duration {
        let drift_ns = lease.as_nanos() * u128::from(self.clock_rate_drift_ppm) / 1_000_000;
        self.safety_margin + Duration::from_nanos(u64::try_from(drift_ns).unwrap_or(u64::MAX))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        if self.client_id.contains(['+', '#', '/']) {
            return Err(ConfigError::InvalidClientId(self.client_id.clone()));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroRequestTimeout);
        }
        if self.retry_jitter_min > self.retry_jitter_max {
            return Err(ConfigError::JitterBounds);
        }
        if self.clock_rate_drift_ppm >= 1_000_000 {
            return Err(ConfigError::DriftTooLarge);
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The client id is empty.
    #[error("the client id is empty")]
    EmptyClientId,
    /// The client id contains a character that is not allowed in an MQTT topic level.
    #[error("the client id {0:?} contains '+', '#' or '/', which cannot appear in a topic level")]
    InvalidClientId(String),
    /// The request timeout is zero.
    #[error("the request timeout is zero")]
    ZeroRequestTimeout,
    /// The smallest retry jitter is larger than the largest.
    #[error("retry_jitter_min is larger than retry_jitter_max")]
    JitterBounds,
    /// The clock-rate drift bound is 100 % or more.
    #[error("clock_rate_drift_ppm must be below 1 000 000")]
    DriftTooLarge,
}

/// A named lock of one [`Client`] (no I/O to create).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockId(pub(crate) u32);

/// One operation started by an intent; every operation ends with exactly one final event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub(crate) std::num::NonZeroU64);

/// Per-operation options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Deadline of the whole operation, from the intent. Sent on the wire as each request's message
    /// expiry, rounded up to whole seconds; the exact deadline is kept locally. `None`: a single
    /// request uses the client's request timeout, and `acquire` waits without limit.
    pub timeout: Option<Duration>,
    /// Session id: the holder value becomes `clientId:sessionId`, used alike by acquire, renewals,
    /// release and edit.
    pub session_id: Option<String>,
}

impl Options {
    /// Options with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Options with a session id.
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
}

/// What the user decides once an edit has read the current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditAction {
    /// Write this value (may be empty).
    Set(Bytes),
    /// Delete the key (deleting an absent key succeeds).
    Delete,
    /// Leave the key as it is.
    Abort,
}

/// What an edit did to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// A value was written.
    Written,
    /// The key was deleted (or was already absent).
    Deleted,
    /// The user aborted: nothing was written.
    Unchanged,
}

/// Why a held lease was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// A renewal found the lock held by another holder.
    RenewalRefused,
    /// No renewal succeeded in time: the lease may have expired at the store.
    ExpiredLocally,
    /// The connection was down for longer than the lease could be trusted.
    Disconnected,
    /// The store reported the lock deleted or taken by another holder.
    TakenAway,
}

/// Why the broker did not deliver a request (from its PUBACK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotDelivered {
    /// Nobody is subscribed to the request topic: the state store is not connected (yet). The
    /// request is repeated after a short delay.
    NoSubscribers,
    /// The broker refused the request (the PUBACK reason, e.g. "not authorized"); the operation
    /// fails with [`OpError::NotDelivered`].
    Refused(String),
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The operation's deadline passed.
    #[error("the operation timed out")]
    Timeout,
    /// The state store refused the request (exact service text).
    #[error("state store error: {0}")]
    Service(ServiceError),
    /// The response broke the protocol (status, version, payload…).
    #[error("protocol error: {0}")]
    Protocol(ResponseError),
    /// The response was well formed but not a reply this request can have.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The hybrid logical clock refused a timestamp (the broker clock is far ahead, or overflow).
    #[error("clock error: {0}")]
    Clock(HlcError),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The connection dropped while the request was in flight, and the request cannot be repeated.
    #[error("disconnected while the request was in flight")]
    Disconnected,
    /// The lease lapsed (locally) before the operation could use it.
    #[error("the lease lapsed before it could be used")]
    LeaseLapsed,
    /// A write under the lock was sent but its outcome is unknown: it may have been applied.
    #[error("the write was sent but its outcome is unknown (it may have been applied)")]
    Indeterminate,
    /// The broker refused to deliver the request (its PUBACK reason).
    #[error("the broker refused the request: {0}")]
    NotDelivered(String),
    /// The MQTT subscription the engine needs was refused by the broker.
    #[error("the broker refused the subscription to {0}")]
    SubscriptionRefused(String),
}

/// A misuse detected synchronously by an intent: nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// The lock id does not belong to this client.
    #[error("unknown lock id")]
    UnknownLock,
    /// The lock name or edited key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The session id is empty or contains a character a holder value cannot carry.
    #[error("invalid session id")]
    InvalidSessionId,
    /// The lease is shorter than 1 ms plus the safety margin, or longer than u64 milliseconds.
    #[error("lease of {lease:?} is not longer than its safety margin of {margin:?}")]
    LeaseTooShort {
        /// The requested lease.
        lease: Duration,
        /// The margin that would be subtracted from it.
        margin: Duration,
    },
    /// The renewal interval is zero or does not leave time to renew before the lease lapses.
    #[error(
        "renewal interval {interval:?} must be non-zero and below the usable lease {usable:?}"
    )]
    BadInterval {
        /// The requested interval.
        interval: Duration,
        /// Lease minus margin.
        usable: Duration,
    },
    /// The timeout is zero.
    #[error("the timeout is zero")]
    ZeroTimeout,
    /// The lock is in use by another local operation that needs it exclusively.
    #[error("the lock is in use by operation {0:?}")]
    LockInUse(OpId),
    /// This client holds the lock already (an edit needs to take it itself).
    #[error("this client holds the lock already")]
    HeldLocally,
    /// There is no hold on this lock.
    #[error("no hold on this lock")]
    NoHold,
    /// The lock is already observed.
    #[error("the lock is already observed")]
    AlreadyObserving,
    /// The lock is not observed.
    #[error("the lock is not observed")]
    NotObserving,
    /// The operation does not exist (ended already) or is not waiting for this call.
    #[error("no such operation waiting for this call")]
    NoSuchOperation,
}

/// Something the user should learn. Events with an `op` belong to that operation; the operation
/// ends with its final event (marked *final* below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The lease was won: `try_acquire`/`acquire` (*final*), or a hold (not final: a hold announces
    /// every acquisition, also after a loss).
    Acquired {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Fencing token of this acquisition.
        token: FencingToken,
        /// The token may be used until this instant.
        valid_until: Instant,
    },
    /// `try_acquire` found the lock held by another holder (*final*).
    Busy {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
    },
    /// A hold renewed its lease; use the new token from now on.
    Renewed {
        /// The hold.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// The newer fencing token.
        token: FencingToken,
        /// The token may be used until this instant.
        valid_until: Instant,
    },
    /// A hold lost its lease; it goes back to acquiring and will announce the next `Acquired`.
    Lost {
        /// The hold.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Why.
        reason: LossReason,
    },
    /// A lease won by `try_acquire`/`acquire` ended without a release: its local validity ran
    /// out, or the store reported it deleted or taken.
    Expired {
        /// The lock.
        lock: LockId,
        /// Why.
        reason: LossReason,
    },
    /// `release`/`close_hold` finished (*final*); `was_held` tells whether the store had the lock
    /// under our holder value.
    Released {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Whether the VDEL deleted the lock.
        was_held: bool,
    },
    /// A hold ended because of `release`, `close_hold` or `cancel` (*final* for the hold).
    HoldEnded {
        /// The hold.
        op: OpId,
        /// The lock.
        lock: LockId,
    },
    /// `holder` answered (*final*): the holder value, `None` when the lock is free.
    Holder {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Holder value.
        holder: Option<Bytes>,
    },
    /// An observed lock changed holder: `None` when it was released or expired.
    HolderChanged {
        /// The lock.
        lock: LockId,
        /// New holder value.
        holder: Option<Bytes>,
    },
    /// Observing a lock failed: the KEYNOTIFY registration was refused.
    ObserveFailed {
        /// The lock.
        lock: LockId,
        /// Why.
        error: OpError,
    },
    /// An edit holds the lock and read the key: answer with [`Client::complete_edit`].
    EditRequested {
        /// The edit.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Current value; `None` when absent (an empty value is `Some` of empty bytes).
        current: Option<Bytes>,
    },
    /// An edit finished (*final*); the lock has been released.
    EditDone {
        /// The edit.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// What it did.
        outcome: EditOutcome,
    },
    /// The operation failed (*final*).
    Failed {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Why.
        error: OpError,
    },
}

impl Event {
    /// The operation this event belongs to, if any.
    pub fn op(&self) -> Option<OpId> {
        match self {
            Event::Acquired { op, .. }
            | Event::Busy { op, .. }
            | Event::Renewed { op, .. }
            | Event::Lost { op, .. }
            | Event::Released { op, .. }
            | Event::HoldEnded { op, .. }
            | Event::Holder { op, .. }
            | Event::EditRequested { op, .. }
            | Event::EditDone { op, .. }
            | Event::Failed { op, .. } => Some(*op),
            Event::Expired { .. } | Event::HolderChanged { .. } | Event::ObserveFailed { .. } => {
                None
            }
        }
    }
}

/// What the client asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Publish this message (QoS 1 for requests).
    Publish(crate::Message),
    /// Subscribe to this topic filter with QoS 1, then report the SUBACK with
    /// [`Client::handle_subscribed`].
    Subscribe(String),
    /// Tell the user.
    Event(Event),
}
