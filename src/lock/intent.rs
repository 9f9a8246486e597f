//! Intents: what a user asks of the engine. Each checks its input synchronously (nothing is sent
//! when it fails: [`IntentError`]) and returns the id of the operation it started.

use super::access::{Access, Fence};
use super::client::{Client, Sub};
use super::holder::HolderValue;
use super::operation::{Edit, EditPhase, Keep, OpKind};
use super::{EditAction, EditOutcome, Event, IntentError, LockId, OpError, OpId, Options};
use crate::time::{later, MAX_DURATION};
use crate::{FencingToken, Now};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// An intent that starts an operation on a lock, as a value: what [`Client::start`] (and
/// [`Connection::start`](crate::connection::Connection::start)) take. Each variant is the intent
/// method of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// [`Client::try_acquire`].
    TryAcquire {
        /// The lease to ask for.
        lease: Duration,
    },
    /// [`Client::acquire`].
    Acquire {
        /// The lease to ask for.
        lease: Duration,
    },
    /// [`Client::release`].
    Release,
    /// [`Client::holder`].
    Holder,
    /// [`Client::hold`].
    Hold {
        /// The lease of each acquisition and renewal.
        lease: Duration,
        /// How often to renew.
        interval: Duration,
    },
    /// [`Client::keep`].
    Keep {
        /// The lease of the acquisition and each renewal.
        lease: Duration,
        /// How often to renew.
        interval: Duration,
        /// Wait for the lock (else one try).
        wait: bool,
    },
    /// [`Client::close_hold`] (it takes no options: the hold's own are used).
    CloseHold,
    /// [`Client::edit`].
    Edit {
        /// The key to read and write under the lock.
        key: Bytes,
        /// The lease to ask for.
        lease: Duration,
    },
    /// [`Client::access`].
    Access {
        /// The key to read or write.
        key: Bytes,
        /// What to do to it.
        access: Access,
        /// Which fencing token the write carries.
        fence: Fence,
    },
}

/// The lease as the store applies it: PX takes whole milliseconds, and the lease is trusted for
/// no longer than what the store was told.
fn whole_millis(lease: Duration) -> Duration {
    Duration::from_millis(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

impl Client {
    /// Starts the operation that `intent` names on `lock`; the same as calling the intent's
    /// method.
    pub fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError> {
        match intent {
            Intent::TryAcquire { lease } => self.try_acquire(now, lock, lease, options),
            Intent::Acquire { lease } => self.acquire(now, lock, lease, options),
            Intent::Release => self.release(now, lock, options),
            Intent::Holder => self.holder(now, lock, options),
            Intent::Hold { lease, interval } => self.hold(now, lock, lease, interval, options),
            Intent::Keep {
                lease,
                interval,
                wait,
            } => self.keep(now, lock, lease, interval, wait, options),
            Intent::CloseHold => self.close_hold(now, lock),
            Intent::Edit { key, lease } => self.edit(now, lock, key, lease, options),
            Intent::Access { key, access, fence } => {
                self.access(now, lock, key, access, fence, options)
            }
        }
    }

    /// One attempt to take the lock: [`Event::Acquired`] or [`Event::Busy`].
    pub fn try_acquire(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let lease = whole_millis(lease);
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, true)?;
        Ok(self.start_op(now, lock, holder, deadline, OpKind::TryAcquire { lease }))
    }

    /// Take the lock, waiting for it as long as needed (or until the timeout): [`Event::Acquired`].
    pub fn acquire(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let lease = whole_millis(lease);
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, false)?;
        Ok(self.start_op(now, lock, holder, deadline, OpKind::Acquire { lease }))
    }

    /// Release the lock (VDEL with the holder value): [`Event::Released`]. Ends any hold on the lock
    /// first ([`Event::HoldEnded`]); no renewal response that arrives later is used.
    pub fn release(
        &mut self,
        now: Now,
        lock: LockId,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let (holder, deadline) = self.admit(now, lock, None, &options, true)?;
        Ok(self.start_release(now, lock, holder, deadline, false))
    }

    /// Who holds the lock: [`Event::Holder`].
    pub fn holder(
        &mut self,
        now: Now,
        lock: LockId,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.locks.get(lock)?;
        let deadline = self.deadline(now, &options, true)?;
        let holder = self.holder_value(&options)?;
        Ok(self.start_op(now, lock, holder, deadline, OpKind::Holder))
    }

    /// Take the lock and keep it, renewing every `interval`: [`Event::Acquired`], then
    /// [`Event::Renewed`] per renewal; [`Event::Lost`] and a new `Acquired` when it is lost. The
    /// timeout bounds the first acquisition only. Ends with [`Client::close_hold`],
    /// [`Client::release`] or [`Client::cancel`].
    pub fn hold(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        interval: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.start_hold(now, lock, lease, interval, None, options)
    }

    /// A lease renewed until it is closed or lost: like [`Client::hold`], but the first
    /// acquisition is one try unless `wait` ([`Event::Busy`] ends it), and the first loss ends
    /// it: [`Event::Lost`], then [`Event::HoldEnded`] (the lock is released, in case the store
    /// still has it). What a leader election campaigns with.
    pub fn keep(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        interval: Duration,
        wait: bool,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.start_hold(now, lock, lease, interval, Some(Keep { wait }), options)
    }

    fn start_hold(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        interval: Duration,
        keep: Option<Keep>,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let lease = whole_millis(lease);
        let bounded = keep.is_some_and(|k| !k.wait);
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, bounded)?;
        if let Some(h) = self.locks[lock].hold {
            return Err(IntentError::LockInUse(h));
        }
        let usable = lease - self.config.margin(lease);
        if interval.is_zero() || interval >= usable {
            return Err(IntentError::BadInterval { interval, usable });
        }
        let kind = OpKind::Hold {
            lease,
            interval,
            held: false,
            keep,
        };
        Ok(self.start_op(now, lock, holder, deadline, kind))
    }

    /// Stop the hold on the lock and release it: the hold ends with [`Event::HoldEnded`], and the
    /// returned release operation with [`Event::Released`].
    pub fn close_hold(&mut self, now: Now, lock: LockId) -> Result<OpId, IntentError> {
        let hold = self.locks.get(lock)?.hold.ok_or(IntentError::NoHold)?;
        let holder = self.ops[&hold].holder.clone();
        let deadline = Some(later(now.instant, self.config.request_timeout));
        Ok(self.start_release(now, lock, holder, deadline, false))
    }

    /// The caller of the `try_acquire`/`acquire` that won `token` on the lock is gone without
    /// having seen it (its future was dropped after the win): release the lease silently, as
    /// if the caller had. `false` when the client holds no such lease (it ended already, or a
    /// hold or a newer acquisition has the lock); nothing is sent then.
    pub fn abandon(&mut self, now: Now, lock: LockId, token: &FencingToken) -> bool {
        let Ok(l) = self.locks.get(lock) else {
            return false;
        };
        let Some(lease) = &l.lease else {
            return false;
        };
        if lease.owner.is_some() || lease.token != *token {
            return false;
        }
        let holder = lease.holder.clone();
        let deadline = Some(later(now.instant, self.config.request_timeout));
        self.start_release(now, lock, holder, deadline, true);
        true
    }

    /// Read-modify-write `key` under the lock: acquire, GET, [`Event::EditRequested`], then
    /// [`Client::complete_edit`] writes with the fencing token, and the lock is released
    /// (with the edit fence, by a VDEL right behind the write, `docs/PROTOCOL.md` §5):
    /// [`Event::EditDone`] when the write is answered. Edits of one lock run one after the other.
    pub fn edit(
        &mut self,
        now: Now,
        lock: LockId,
        key: impl Into<Bytes>,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let lease = whole_millis(lease);
        let key = key.into();
        if key.is_empty() {
            return Err(IntentError::EmptyKey);
        }
        let l = self.locks.get(lock)?;
        if key == l.name {
            return Err(IntentError::KeyIsTheLock);
        }
        if let Some(other) = l.ops.iter().find(|id| {
            !matches!(
                self.ops[id].kind,
                OpKind::Edit(_) | OpKind::Holder | OpKind::Release { .. }
            )
        }) {
            return Err(IntentError::LockInUse(other));
        }
        if self.is_held(now, lock) {
            return Err(IntentError::HeldLocally);
        }
        self.check_lease(lease)?;
        let deadline = self.deadline(now, &options, false)?;
        let holder = self.holder_value(&options)?;
        let busy = self.locks[lock].edit.is_some();
        let phase = if busy {
            EditPhase::Queued
        } else {
            EditPhase::Acquiring
        };
        Ok(self.start_op(
            now,
            lock,
            holder,
            deadline,
            OpKind::Edit(Box::new(Edit { key, lease, phase })),
        ))
    }

    /// Answer an [`Event::EditRequested`].
    pub fn complete_edit(
        &mut self,
        now: Now,
        op: OpId,
        action: EditAction,
    ) -> Result<(), IntentError> {
        let o = self.ops.get(&op).ok_or(IntentError::NoSuchOperation)?;
        let lock = o.lock;
        let Some(&EditPhase::AwaitingUser { placeholder }) = o.kind.edit_phase() else {
            return Err(IntentError::NoSuchOperation);
        };
        if action == EditAction::Abort && !placeholder {
            self.finish_edit(now, op, Ok(EditOutcome::Unchanged));
        } else if cfg!(feature = "canary-delete-absent")
            && action == EditAction::Delete
            && placeholder
        {
            // `canary-delete-absent` plants a bug for the simulator: a key read absent is taken
            // as deleted already, and the fence's placeholder stays.
            self.finish_edit(now, op, Ok(EditOutcome::Deleted));
        } else if !self.is_held(now, lock) {
            self.finish_edit(now, op, Err(OpError::LeaseLapsed));
        } else {
            // An abort of an edit whose fence left a placeholder deletes it again.
            let writing = EditPhase::Writing {
                action,
                attempts: 0,
                released: None,
            };
            self.set_edit_phase(op, writing);
            self.advance(now, op);
        }
        Ok(())
    }

    /// End an operation now: [`Event::Failed`] with [`OpError::Cancelled`] (a hold ends with
    /// [`Event::HoldEnded`] and releases the lock). A waiting acquire still unregisters KEYNOTIFY.
    pub fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
        let o = self.ops.get(&op).ok_or(IntentError::NoSuchOperation)?;
        let lock = o.lock;
        match &o.kind {
            OpKind::Hold { .. } => self.end_hold(now, op, true),
            OpKind::Edit(_) | OpKind::Access(_) => self.fail(now, op, lock, OpError::Cancelled),
            _ => self.finish(
                now,
                op,
                Some(Event::Failed {
                    op,
                    lock,
                    error: OpError::Cancelled,
                }),
            ),
        }
        Ok(())
    }

    // ----- world inputs -----------------------------------------------------------------------

    // ----- checks ----------------------------------------------------------------------------

    /// The checks every acquiring or releasing intent makes: the lock is not in an edit's hands,
    /// the lease (if any) is usable, the options are valid. Returns the holder value and deadline
    /// (`bounded`: without a timeout, the request timeout bounds the operation).
    pub(super) fn admit(
        &self,
        now: Now,
        lock: LockId,
        lease: Option<Duration>,
        options: &Options,
        bounded: bool,
    ) -> Result<(HolderValue, Option<Instant>), IntentError> {
        self.check_exclusive(lock)?;
        let holder = self.holder_value(options)?;
        if let Some(lease) = lease {
            self.check_lease(lease)?;
            self.check_one_caller(now, lock, &holder)?;
        }
        let deadline = self.deadline(now, options, bounded)?;
        Ok((holder, deadline))
    }

    /// One caller per lock and holder value: the store cannot tell two callers with the same
    /// holder value apart (both would win, and one's release would end the other's lease), so
    /// an acquisition is refused while another of the same holder value runs or holds the lock.
    /// Callers that should contend take a session id each.
    fn check_one_caller(
        &self,
        now: Now,
        lock: LockId,
        holder: &HolderValue,
    ) -> Result<(), IntentError> {
        let l = self.locks.get(lock)?;
        if l.lease
            .as_ref()
            .is_some_and(|lease| lease.holder == *holder && lease.validity.holds_at(now))
        {
            return Err(IntentError::HeldLocally);
        }
        let acquiring = l.ops.iter().find(|id| {
            let op = &self.ops[id];
            op.holder == *holder
                && matches!(
                    op.kind,
                    OpKind::TryAcquire { .. } | OpKind::Acquire { .. } | OpKind::Hold { .. }
                )
        });
        match acquiring {
            Some(other) => Err(IntentError::LockInUse(other)),
            None => Ok(()),
        }
    }

    /// Acquiring, holding and releasing cannot run beside an edit of the same lock.
    pub(super) fn check_exclusive(&self, lock: LockId) -> Result<(), IntentError> {
        match self.locks.get(lock)?.edit {
            Some(edit) => Err(IntentError::LockInUse(edit)),
            None => Ok(()),
        }
    }

    pub(super) fn check_lease(&self, lease: Duration) -> Result<(), IntentError> {
        let margin = self.config.margin(lease);
        if lease > MAX_DURATION || lease < margin + Duration::from_millis(1) {
            return Err(IntentError::LeaseTooShort { lease, margin });
        }
        Ok(())
    }

    pub(super) fn deadline(
        &self,
        now: Now,
        options: &Options,
        bounded: bool,
    ) -> Result<Option<Instant>, IntentError> {
        match options.timeout {
            Some(t) if t.is_zero() => Err(IntentError::ZeroTimeout),
            Some(t) => Ok(Some(later(now.instant, t.min(MAX_DURATION)))),
            None if bounded => Ok(Some(later(now.instant, self.config.request_timeout))),
            None => Ok(None),
        }
    }

    pub(super) fn holder_value(&self, options: &Options) -> Result<HolderValue, IntentError> {
        match &options.session_id {
            // `canary-holder` plants a bug for the simulator: the session id left out.
            _ if cfg!(feature = "canary-holder") => Ok(HolderValue::default()),
            None => Ok(HolderValue::default()),
            Some(s) if s.is_empty() => Err(IntentError::InvalidSessionId),
            Some(s) => Ok(HolderValue::with_session(Bytes::from(format!(
                "{}:{}",
                self.config.client_id, s
            )))),
        }
    }

    pub(super) fn ready(&self) -> bool {
        self.connected && self.sub_response == Sub::Granted && self.sub_notify == Sub::Granted
    }

    /// The filter the broker refused on the current connection, if it refused one.
    pub(super) fn refused_subscription(&self) -> Option<String> {
        if !self.connected {
            None
        } else if self.sub_response == Sub::Refused {
            Some(self.response_topic.clone())
        } else if self.sub_notify == Sub::Refused {
            Some(self.notify_filter.clone())
        } else {
            None
        }
    }

    /// Every live operation, oldest first.
    pub(super) fn op_ids_in_order(&self) -> Vec<OpId> {
        let mut all: Vec<(u64, OpId)> = self.ops.keys().map(|id| (self.ops[&id].seq, id)).collect();
        all.sort_unstable();
        all.into_iter().map(|(_, id)| id).collect()
    }
}
