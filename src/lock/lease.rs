//! Leases: what the client holds, until when it may trust it, and what happens when it may not.

use super::client::Client;
use super::holder::HolderValue;
use super::operation::{EditPhase, OpKind};
use super::timer::TimerKey;
use super::{Event, LockId, LossReason, OpError, OpId, Output};
use crate::hlc::FencingToken;
use crate::time::later;
use crate::Now;
use std::time::{Duration, Instant};

/// Until when a lease may be trusted, by both clocks: the monotonic clock does not advance while
/// the host is suspended, the wall clock does (and a wall clock that steps forward only ends the
/// lease sooner). The lease holds while both say so.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validity {
    pub(super) instant: Instant,
    pub(super) wall_ms: u64,
}

impl Validity {
    /// `trusted` from the SET's send time `sent`.
    pub(super) fn from(sent: Now, trusted: Duration) -> Validity {
        let ms = u64::try_from(trusted.as_millis()).unwrap_or(u64::MAX);
        Validity {
            instant: later(sent.instant, trusted),
            wall_ms: sent.wall_ms.saturating_add(ms),
        }
    }

    pub(super) fn holds_at(&self, now: Now) -> bool {
        // The canary `canary-pause` plants a bug for the simulator: the monotonic clock only.
        let by_wall = cfg!(feature = "canary-pause") || now.wall_ms < self.wall_ms;
        now.instant < self.instant && by_wall
    }

    /// The monotonic instant by which it surely still holds, as of `now`: sooner than `instant`
    /// when the wall clock says so (the monotonic clock lost a suspension before `now`). The wall
    /// clock's part is counted short twice over: by one millisecond, since a whole-millisecond
    /// reading may be up to a millisecond behind the true time, and by `drift_ppm`, the most a
    /// monotonic clock may run slow against it, so that no later reading made before this instant
    /// finds the lease over by either clock.
    pub(super) fn end_as_of(&self, now: Now, drift_ppm: u32) -> Instant {
        let wall_ms = self.wall_ms.saturating_sub(now.wall_ms).saturating_sub(1);
        let wall_left = Duration::from_millis(wall_ms);
        let lag_ns = (wall_left.as_nanos() * u128::from(drift_ppm)).div_ceil(1_000_000);
        let lag = Duration::from_nanos(u64::try_from(lag_ns).unwrap_or(u64::MAX));
        self.instant
            .min(later(now.instant, wall_left.saturating_sub(lag)))
    }

    /// The later end of two validities of one holder.
    pub(super) fn latest(self, other: Validity) -> Validity {
        Validity {
            instant: self.instant.max(other.instant),
            wall_ms: self.wall_ms.max(other.wall_ms),
        }
    }
}

/// A lease this client believes it holds.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) holder: HolderValue,
    pub(super) token: FencingToken,
    pub(super) validity: Validity,
    pub(super) timer: TimerKey,
    /// The hold or edit whose lease this is; `None` for `try_acquire`/`acquire`.
    pub(super) owner: Option<OpId>,
}

impl Client {
    /// The newest fencing token of the lock, while the lease is valid at `now`.
    pub fn token(&self, now: Now, lock: LockId) -> Option<&FencingToken> {
        let lease = self.locks.get(lock).ok()?.lease.as_ref()?;
        lease.validity.holds_at(now).then_some(&lease.token)
    }

    /// The fencing token a write under the lock may still carry at `now`: the lease's while it
    /// holds, and that of a lease an edit released right behind its write
    /// ([`Config::raise_edit_fence`](super::Config::raise_edit_fence)) while that write is
    /// awaited and the lease holds. The store handles one client's requests in order, so such a
    /// write reaches it before the VDEL. For a driver (or a checker) that decides late whether
    /// a fenced write may still go.
    pub fn write_token(&self, now: Now, lock: LockId) -> Option<&FencingToken> {
        if let Some(token) = self.token(now, lock) {
            return Some(token);
        }
        let op = self.ops.get(&self.locks.get(lock).ok()?.edit?)?;
        match &op.kind {
            OpKind::Edit(edit) => match &edit.phase {
                EditPhase::Writing {
                    released: Some(r), ..
                } if op.req.is_some() && r.validity.holds_at(now) => Some(&r.token),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the client holds the lock at `now` (the lease is valid).
    pub fn is_held(&self, now: Now, lock: LockId) -> bool {
        self.token(now, lock).is_some()
    }

    /// Whether a fenced write sent at `sent` under the current lease of `lock` could still be
    /// sent at `now`: the lease's end for writes, as of that send, is not yet reached.
    pub(super) fn holds_for_writes_sent(&self, now: Now, lock: LockId, sent: Now) -> bool {
        let drift_ppm = self.config.clock_rate_drift_ppm;
        self.locks
            .get(lock)
            .ok()
            .and_then(|l| l.lease.as_ref())
            .is_some_and(|lease| now.instant < lease.validity.end_as_of(sent, drift_ppm))
    }

    /// Until when the current lease may be trusted (it may already be in the past).
    pub fn valid_until(&self, lock: LockId) -> Option<Instant> {
        Some(self.locks.get(lock).ok()?.lease.as_ref()?.validity.instant)
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
                Some(OpKind::Edit(_)) => {
                    self.finish_edit(now, owner, Err(OpError::LeaseLapsed));
                }
                _ => {}
            },
        }
        self.locks.may_be_idle(lock);
    }
}
