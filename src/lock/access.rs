//! Store access: a GET, SET or DEL of any key, fenced with the token of the lease this client
//! holds on a lock, with a token given by the caller, or not at all.
//!
//! ```text
//!   access ──▶ (Fence::Held: lease valid under this holder? no ──▶ Failed LeaseLapsed, nothing sent)
//!                │ yes
//!                ▼  GET / SET __ft / DEL __ft
//!             Sending ──▶ Accessed (final)
//!                │ a write sent and unanswered (timeout, disconnect, 5xx) ──▶ Failed Indeterminate
//!                │ the store refused (a stale token: its exact text) ──▶ Failed Service
//! ```
//!
//! A write is sent once: repeating it could land after somebody else's later write. A read is
//! repeated after a lost request. A read fenced by a lease counts only while the lease is valid
//! when its answer arrives (a later holder may have written since).

use super::client::Client;
use super::holder::HolderValue;
use super::operation::{OpKind, StoreAccess};
use super::{Event, IntentError, LockId, OpError, OpId, Options};
use crate::hlc::FencingToken;
use crate::store::{Command, SetOptions, StoreReply};
use crate::Now;
use bytes::Bytes;

/// What a store access does to its key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Read the key: [`Accessed::Value`].
    Get,
    /// Write this value (may be empty): [`Accessed::Written`].
    Set(Bytes),
    /// Delete the key: [`Accessed::Deleted`].
    Delete,
}

/// Which fencing token a store access carries (a GET carries none, but [`Fence::Held`] still
/// bounds it by the lease).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fence {
    /// No token: the store does not compare.
    #[default]
    Unfenced,
    /// The token of the lease this client holds on the lock under the access's holder value
    /// (its session id): past the lease's validity the access fails with
    /// [`OpError::LeaseLapsed`] without sending.
    Held,
    /// This token, as given (from another process that holds the lock, say).
    Token(FencingToken),
}

/// What a store access found or did: the payload of [`Event::Accessed`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accessed {
    /// The value read; `None` when the key is absent.
    Value(Option<Bytes>),
    /// The value was written.
    Written,
    /// The delete was applied; `existed`: the key was there.
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
}

impl Client {
    /// Read, write or delete `key` (not the lock's own key when fenced by its lease), fenced as
    /// `fence` says: [`Event::Accessed`]. The lock names the lease of [`Fence::Held`]; with
    /// another fence it only groups the operation (any lock will do, the key itself too).
    pub fn access(
        &mut self,
        now: Now,
        lock: LockId,
        key: impl Into<Bytes>,
        access: Access,
        fence: Fence,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let key = key.into();
        if key.is_empty() {
            return Err(IntentError::EmptyKey);
        }
        if fence == Fence::Held && key == self.locks.get(lock)?.name {
            return Err(IntentError::KeyIsTheLock);
        }
        self.locks.get(lock)?;
        let deadline = self.deadline(now, &options, true)?;
        let holder = self.holder_value(&options)?;
        let kind = OpKind::Access(Box::new(StoreAccess {
            key,
            access,
            fence,
            sent: false,
        }));
        Ok(self.start_op(now, lock, holder, deadline, kind))
    }

    /// The token of the lease held on `lock` under `holder`, while it may be used.
    fn held_token(&self, now: Now, lock: LockId, holder: &HolderValue) -> Option<FencingToken> {
        let lease = self.locks.get(lock).ok()?.lease.as_ref()?;
        (lease.holder == *holder && lease.validity.holds_at(now)).then(|| lease.token.clone())
    }

    /// The request of a store access of `key` by `holder` on `lock`, or why it cannot be sent.
    pub(super) fn access_request(
        &self,
        now: Now,
        lock: LockId,
        holder: &HolderValue,
        key: &Bytes,
        access: &Access,
        fence: &Fence,
    ) -> Result<(Command, Option<FencingToken>), OpError> {
        let token = match fence {
            Fence::Unfenced => None,
            Fence::Token(token) => Some(token.clone()),
            Fence::Held => Some(
                self.held_token(now, lock, holder)
                    .ok_or(OpError::LeaseLapsed)?,
            ),
        };
        let key = key.clone();
        Ok(match access {
            Access::Get => (Command::Get { key }, None),
            Access::Set(value) => (
                Command::Set {
                    key,
                    value: value.clone(),
                    options: SetOptions::default(),
                },
                token,
            ),
            Access::Delete => (Command::Del { key }, token),
        })
    }

    /// Whether the access is a write that has been sent: its outcome may be unknown.
    pub(super) fn access_write_sent(&self, id: OpId) -> bool {
        matches!(
            self.ops.get(&id).map(|op| &op.kind),
            Some(OpKind::Access(a)) if a.sent && a.access != Access::Get
        )
    }

    /// The answer to a store access.
    pub(super) fn on_access_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let op = &self.ops[&id];
        let lock = op.lock;
        let OpKind::Access(a) = &op.kind else {
            return;
        };
        let (access, fence) = (&a.access, &a.fence);
        let outcome = match (access, reply) {
            (Access::Get, StoreReply::Value(v)) => {
                Ok(Accessed::Value(Some(Bytes::copy_from_slice(&v))))
            }
            (Access::Get, StoreReply::NotFound) => Ok(Accessed::Value(None)),
            (Access::Set(_), StoreReply::Ok) => Ok(Accessed::Written),
            (Access::Delete, StoreReply::Integer(n)) if n >= 0 => {
                Ok(Accessed::Deleted { existed: n > 0 })
            }
            (_, other) => Err(OpError::UnexpectedReply(other)),
        };
        let outcome = match outcome {
            // What was read may have changed under a later holder once the lease is over.
            Ok(Accessed::Value(_))
                if *fence == Fence::Held && self.held_token(now, lock, &op.holder).is_none() =>
            {
                Err(OpError::LeaseLapsed)
            }
            o => o,
        };
        match outcome {
            Ok(outcome) => {
                let event = Event::Accessed {
                    op: id,
                    lock,
                    outcome,
                };
                self.finish(now, id, Some(event));
            }
            Err(error) => self.fail(now, id, lock, error),
        }
    }
}
