//! Notification registrations: KEYNOTIFY of a lock while anything needs it (a waiter, a hold, an
//! edit, an observer), and what the notifications it brings change.

use super::client::Client;
use super::operation::MIN_FALLBACK;
use super::registry::Change;
use super::reply::HERD_MEMORY;
use super::request::{Owner, RequestId, RequestKind};
use super::Holder;
use super::{Event, IntentError, LockId, LossReason, OpError, OpId, Output};
use crate::store::{self, Command, NotificationOp, ResponseBody, ResponseError, StoreReply};
use crate::time::later;
use crate::Now;
use std::time::Duration;

/// Where the lock's KEYNOTIFY registration stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notify {
    /// Not registered.
    Off,
    /// KEYNOTIFY sent, not answered yet.
    Pending(RequestId),
    /// Registered.
    On,
}

impl Client {
    /// Report holder changes of the lock as [`Event::HolderChanged`].
    pub fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        let l = self.locks.get_mut(lock)?;
        if l.observed {
            return Err(IntentError::AlreadyObserving);
        }
        l.observed = true;
        self.ensure_notify(now, lock);
        Ok(())
    }

    /// Stop reporting holder changes of the lock.
    pub fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        let l = self.locks.get_mut(lock)?;
        if !l.observed {
            return Err(IntentError::NotObserving);
        }
        l.observed = false;
        self.maybe_stop_notify(now, lock);
        self.locks.may_be_idle(lock);
        Ok(())
    }

    pub(super) fn ensure_notify(&mut self, now: Now, lock: LockId) {
        let l = &self.locks[lock];
        if !self.ready() || l.notify != Notify::Off || l.notify_refs() == 0 {
            return;
        }
        let key = l.name.clone();
        if let Ok(req_id) = self.send(
            now,
            Owner::Lock(lock),
            RequestKind::KeyNotify,
            Command::KeyNotify { key },
            None,
            None,
        ) {
            self.locks[lock].notify = Notify::Pending(req_id);
        }
    }

    pub(super) fn maybe_stop_notify(&mut self, now: Now, lock: LockId) {
        let l = &mut self.locks[lock];
        if l.notify_refs() > 0 || l.notify == Notify::Off {
            return;
        }
        l.notify = Notify::Off;
        let key = l.name.clone();
        if self.ready() {
            let _ = self.send(
                now,
                Owner::Lock(lock),
                RequestKind::KeyNotifyStop,
                Command::KeyNotifyStop { key },
                None,
                None,
            );
        }
    }

    pub(super) fn on_notify_reply(
        &mut self,
        lock: LockId,
        req_id: RequestId,
        kind: RequestKind,
        outcome: Result<ResponseBody, ResponseError>,
    ) {
        // A KEYNOTIFY STOP may be answered after its idle lock was freed.
        let Ok(l) = self.locks.get_mut(lock) else {
            return;
        };
        if kind != RequestKind::KeyNotify || l.notify != Notify::Pending(req_id) {
            return;
        }
        let error = match outcome {
            Ok(ResponseBody {
                reply: StoreReply::Ok,
                ..
            }) => {
                l.notify = Notify::On;
                return;
            }
            Ok(ResponseBody {
                reply: StoreReply::Error(e),
                ..
            }) => OpError::Service(e),
            Ok(other) => OpError::UnexpectedReply(other.reply),
            Err(e) => OpError::Protocol(e),
        };
        // Waiters still make progress through their fallback re-checks; observers are told.
        l.notify = Notify::Off;
        if l.observed {
            l.observed = false;
            self.emit(Output::Event(Event::ObserveFailed { lock, error }));
        }
        self.locks.may_be_idle(lock);
    }

    pub(super) fn on_notification(&mut self, now: Now, n: store::Notification) {
        self.stats.notifications += 1;
        if let Some(v) = &n.version {
            if self.clock.receive(v, now.wall_ms).is_err() {
                self.stats.clock_errors += 1; // never drop the notification for it
            }
        }
        let Some(lock) = self.locks.find(&n.key) else {
            return;
        };
        let holder = match &n.op {
            NotificationOp::Set(v) => Some(v.clone()),
            NotificationOp::Delete => None,
        };
        if let Some(taker) = &holder {
            self.stand_down(now, lock, taker);
        }
        let change = holder.as_deref().map_or(Change::Freed, Change::Taken);
        self.locks[lock].note_change(now.instant, change, &self.holder);
        let l = &self.locks[lock];
        if l.observed {
            self.out.push_back(Output::Event(Event::HolderChanged {
                lock,
                holder: holder.clone().map(Holder::from_value),
            }));
        }
        // A change newer than our lease that leaves the lock to someone else: the lease is gone.
        if let Some(lease) = &l.lease {
            let newer = n.version.as_ref().is_none_or(|v| v > lease.token.as_hlc());
            if newer && holder.as_ref() != Some(lease.holder.bytes(&self.holder)) {
                self.lease_lost(now, lock, LossReason::TakenAway);
            }
        }
        if holder.is_none() {
            // The lock is free: waiters retry at once, or, while this client is part of a herd
            // and not next in turn (see `Lock::next_in_turn`), after the held-back delay.
            let held_back = self.held_back(lock);
            let l = &mut self.locks[lock];
            let herd = l.in_herd(now.instant);
            let at_once = !herd || l.next_in_turn();
            l.set_racing(at_once);
            let delay = if at_once { Duration::ZERO } else { held_back };
            // A waiter whose SET is in flight may be refused for the holder that has just gone
            // (the DELETE overtook the reply): it tries again at the refusal.
            let in_flight: Vec<OpId> = l
                .watchers
                .iter()
                .filter(|id| {
                    let op = &self.ops[id];
                    op.req.is_some() && op.acquiring_lease().is_some()
                })
                .collect();
            for id in in_flight {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.freed_meanwhile = true;
                }
            }
            let l = &self.locks[lock];
            let waiting: Vec<OpId> = l
                .watchers
                .iter()
                .filter(|id| {
                    let op = &self.ops[id];
                    op.req.is_none() && op.retry_timer.is_some() && op.acquiring_lease().is_some()
                })
                .collect();
            for id in waiting {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.after_delete = true;
                }
                if delay.is_zero() {
                    // No timer round trip: a driver's timer may only fire on its next tick.
                    if let Some(op) = self.ops.get_mut(&id) {
                        let t = op.retry_timer.take();
                        self.timers.cancel(t);
                    }
                    self.advance(now, id);
                } else {
                    self.retry_after(now, id, delay);
                }
            }
        }
    }

    /// The lock was taken by `taker`: a waiter whose SET is still held back (after the DELETE,
    /// see `Lock::next_in_turn`, or after this client's release, see `Lock::reacquire_after`)
    /// does not send it, to be refused, and waits for the next DELETE as after a refusal.
    fn stand_down(&mut self, now: Now, lock: LockId, taker: &[u8]) {
        let l = &self.locks[lock];
        let reacquiring = l.reacquire_after().is_some_and(|at| now.instant < at);
        let held: Vec<(OpId, Duration)> = l
            .watchers
            .iter()
            .filter_map(|id| {
                let op = &self.ops[&id];
                let waiting = op.req.is_none() && op.retry_timer.is_some();
                let other = op.holder.bytes(&self.holder) != taker;
                let held = other && waiting && (op.after_delete || reacquiring);
                Some((id, op.acquiring_lease().filter(|_| held)?))
            })
            .collect();
        if held.is_empty() {
            return;
        }
        // A SET held back in vain: another client waits for the lock too, a herd.
        self.locks[lock].set_herd_until(later(now.instant, HERD_MEMORY));
        for (id, lease) in held {
            if let Some(op) = self.ops.get_mut(&id) {
                op.after_delete = false;
                op.saw_busy = true;
            }
            self.retry_after(now, id, lease.max(MIN_FALLBACK));
        }
    }
}
