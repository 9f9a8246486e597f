//! Leases: what the client holds, until when it may trust it, and what happens when it may not.

use super::client::Client;
use super::operation::OpKind;
use super::timer::TimerKey;
use super::{Event, LockId, LossReason, OpError, OpId, Output};
use crate::hlc::FencingToken;
use crate::Now;
use bytes::Bytes;
use std::time::Instant;

/// A lease this client believes it holds.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) holder: Bytes,
    pub(super) token: FencingToken,
    pub(super) valid_until: Instant,
    pub(super) timer: TimerKey,
    /// The hold or edit whose lease this is; `None` for `try_acquire`/`acquire`.
    pub(super) owner: Option<OpId>,
}

impl Client {
    /// The newest fencing token of the lock, while the lease is valid at `now`.
    pub fn token(&self, now: Now, lock: LockId) -> Option<&FencingToken> {
        let lease = self.locks.get(lock).ok()?.lease.as_ref()?;
        (now.instant < lease.valid_until).then_some(&lease.token)
    }

    /// Whether the client holds the lock at `now` (the lease is valid).
    pub fn is_held(&self, now: Now, lock: LockId) -> bool {
        self.token(now, lock).is_some()
    }

    /// Until when the current lease may be trusted (it may already be in the past).
    pub fn valid_until(&self, lock: LockId) -> Option<Instant> {
        Some(self.locks.get(lock).ok()?.lease.as_ref()?.valid_until)
    }

    pub(super) fn lease_lost(&mut self, now: Now, lock: LockId, reason: LossReason) {
        let l = &mut self.locks[lock];
        let Some(lease) = l.lease.take() else {
            return;
        };
        self.timers.cancel(Some(lease.timer));
        match lease.owner {
            None => self.emit(Output::Event(Event::Expired { lock, reason })),
            Some(owner) => match self.ops.get(&owner).map(|o| &o.kind) {
                Some(OpKind::Hold { .. }) => {
                    let op = self.ops.get_mut(&owner).expect("hold exists");
                    if let OpKind::Hold { held, .. } = &mut op.kind {
                        *held = false;
                    }
                    // Whatever renewal is in flight can no longer give the hold back its lease.
                    let req = op.req.take();
                    let timer = op.retry_timer.take();
                    if let Some(p) = req.and_then(|c| self.pending.remove(&c)) {
                        self.timers.cancel(p.timer);
                    }
                    self.timers.cancel(timer);
                    let keep = matches!(op.kind, OpKind::Hold { keep: Some(_), .. });
                    self.emit(Output::Event(Event::Lost {
                        op: owner,
                        lock,
                        reason,
                    }));
                    if keep {
                        self.end_hold(now, owner, true);
                    } else {
                        self.advance(now, owner);
                    }
                }
                Some(OpKind::Edit { .. }) => {
                    self.finish_edit(now, owner, Err(OpError::LeaseLapsed));
                }
                _ => {}
            },
        }
        self.locks.may_be_idle(lock);
    }
}
