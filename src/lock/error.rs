//! Why an operation failed ([`OpError`]) or an intent was refused ([`IntentError`]).

use super::OpId;
use crate::hlc::HlcError;
use crate::store::{ResponseError, ServiceError, StoreReply};
use std::time::Duration;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    #[error("unexpected reply: {0:?}")]
    UnexpectedReply(StoreReply),
    /// A SET was answered `+OK` without the key's version (`__ts`): no fencing token.
    #[error("the store applied the SET but sent no version (__ts)")]
    MissingVersion,
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
#[non_exhaustive]
pub enum IntentError {
    /// The lock id does not belong to this client.
    #[error("unknown lock id")]
    UnknownLock,
    /// The lock name or edited key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The edited key is the lock's own key: writing it would overwrite the lock's holder.
    #[error("the edited key is the lock itself")]
    KeyIsTheLock,
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
