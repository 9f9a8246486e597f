//! What the engine tells: [`Event`]s for the user and [`Output`]s for the driver.

use super::{Accessed, Holder, LockId, OpError, OpId, Request};
use crate::hlc::FencingToken;
use bytes::Bytes;
use std::time::Instant;

/// What an edit did to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum NotDelivered {
    /// Nobody is subscribed to the request topic: the state store is not connected (yet). The
    /// request is repeated after a short delay.
    NoSubscribers,
    /// The broker refused the request (the PUBACK reason, e.g. "not authorized"); the operation
    /// fails with [`OpError::NotDelivered`].
    Refused(String),
    /// The client's MQTT session dropped it unsent: its time ran out before it could leave (no
    /// connection, a full in-flight window, a suspended host). The store never saw it; the
    /// engine goes on as after a timeout, knowing that a write was not applied.
    Unsent,
}

/// Something the user should learn. Events with an `op` belong to that operation; the operation
/// ends with its final event (marked *final* below).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The lease was won: `try_acquire`/`acquire` (*final*), or a hold (`hold: true`, not final: a
    /// hold announces every acquisition, also after a loss).
    Acquired {
        /// The operation.
        op: OpId,
        /// The lock.
        lock: LockId,
        /// Fencing token of this acquisition.
        token: FencingToken,
        /// The token may be used until this instant.
        valid_until: Instant,
        /// Won by a hold, which goes on renewing it: the event does not end the operation.
        hold: bool,
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
        /// Who holds it.
        holder: Option<Holder>,
    },
    /// An observed lock changed holder: `None` when it was released or expired.
    HolderChanged {
        /// The lock.
        lock: LockId,
        /// Who holds it now.
        holder: Option<Holder>,
    },
    /// Observing a lock failed: the KEYNOTIFY registration was refused.
    ObserveFailed {
        /// The lock.
        lock: LockId,
        /// Why.
        error: OpError,
    },
    /// An edit holds the lock and read the key: answer with [`Client::complete_edit`](super::Client::complete_edit).
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
    /// A store access finished (*final*).
    Accessed {
        /// The access.
        op: OpId,
        /// The lock it was started on.
        lock: LockId,
        /// What it found or did.
        outcome: Accessed,
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
            | Event::Accessed { op, .. }
            | Event::Failed { op, .. } => Some(*op),
            Event::Expired { .. } | Event::HolderChanged { .. } | Event::ObserveFailed { .. } => {
                None
            }
        }
    }

    /// Whether this is the last event of its operation: after it, the operation's id names
    /// nothing (a driver drops its route). Events of no operation are never final.
    pub fn is_final(&self) -> bool {
        match self {
            Event::Acquired { hold, .. } => !hold,
            Event::Busy { .. }
            | Event::Released { .. }
            | Event::HoldEnded { .. }
            | Event::Holder { .. }
            | Event::EditDone { .. }
            | Event::Accessed { .. }
            | Event::Failed { .. } => true,
            Event::Renewed { .. }
            | Event::Lost { .. }
            | Event::Expired { .. }
            | Event::HolderChanged { .. }
            | Event::ObserveFailed { .. }
            | Event::EditRequested { .. } => false,
        }
    }
}

/// What the client asks its driver to do. Deliberately exhaustive: a driver must carry out
/// every output, so a new one is a breaking change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this state-store request: publish it with QoS 1 (as a [`Message`](crate::Message):
    /// [`Client::to_message`](super::Client::to_message)), and report a PUBACK with a failure
    /// reason with [`Client::handle_not_delivered`](super::Client::handle_not_delivered).
    Request(Request),
    /// Subscribe to this topic filter with QoS 1, then report the SUBACK with
    /// [`Client::handle_subscribed`](super::Client::handle_subscribed).
    Subscribe(String),
    /// Tell the user.
    Event(Event),
}
