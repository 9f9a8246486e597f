//! Operations: what an intent starts, the states it goes through, and how it ends.
//!
//! Every operation ends with exactly one final event ([`Event::is_final`]). The states, with the
//! request each one has in flight (an operation has at most one):
//!
//! ```text
//!   try_acquire / acquire / hold / edit            release / close_hold          holder
//!            │                                          │                          │
//!            ▼         SET NEX PX                       ▼  VDEL                    ▼  GET
//!      ┌─ Acquiring ──────────────┐               Releasing ──▶ Released       Reading ──▶ Holder
//!      │     ▲   │ -1 (busy)      │ +OK                (final)                     (final)
//!      │     │   ▼                ▼
//!      │  Waiting ◀── lost ── Held ── try_acquire/acquire: Acquired (final)
//!      │  (DELETE, fallback      │ hold: Acquired, then every interval:
//!      │   re-check, reconnect)  ▼
//!      │                     Renewing ── SET +OK ──▶ Held (Renewed)
//!      │                         │ refused / validity end / taken away
//!      │                         └──▶ Lost ──▶ Acquiring (the hold goes on)
//!      │
//!      └─ edit: Queued ─▶ Acquiring ─▶ Reading (GET key) ─▶ AwaitingUser ─▶ Writing (fenced
//!         SET/DEL) ─▶ EditDone (final); the lock is released silently whatever the outcome
//!         (with the edit fence, by a VDEL right behind the write)
//! ```
//!
//! `try_acquire` ends `Busy` at the first refusal; `acquire`, a hold and an edit wait instead.
//! A release (and every end of a hold or an edit that held the lock) raises the lock's release
//! barrier first: no SET of the lock leaves until its VDEL is answered or given up, and a SET sent
//! before it can never give a lease (`Lock::epoch`).

use super::access::{Access, Fence};
use super::client::{Client, Timer};
use super::holder::HolderValue;
use super::lease::Validity;
use super::request::{Owner, RequestId, RequestKind};
use super::timer::TimerKey;
use super::{EditAction, EditOutcome, Event, LockId, OpError, Output};
use crate::hlc::FencingToken;
use crate::store::{Command, ResponseError, SetCondition, SetOptions};
use crate::time::later;
use crate::Now;
use bytes::Bytes;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// One operation started by an intent; every operation ends with exactly one final event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub(crate) NonZeroU64);

impl OpId {
    /// A small number for tables a driver keeps per operation: the operations alive at one
    /// time have distinct indexes, each below the most operations alive at once so far. The
    /// index of an ended operation is given to a later one (whose id differs).
    pub fn index(self) -> usize {
        // The low half of the id is its slot in the engine's table of operations.
        (self.0.get() & u64::from(u32::MAX)) as usize
    }
}

/// The longest wait between two retries of a failed attempt.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How soon a hold tries again after its clock refused to send.
const CLOCK_RETRY: Duration = Duration::from_secs(1);

/// Shortest fallback re-check of a waiting acquire.
pub(super) const MIN_FALLBACK: Duration = Duration::from_millis(10);

/// What an edit's fence writes in place of an absent key: the store keeps a fence only with a
/// key. An edit that reads it sees an absent key (`None`), and an edit that aborts deletes it
/// again; one that fails after raising its fence may leave it behind, where readers other than
/// edits see these bytes (`docs/PROTOCOL.md` §5).
pub const ABSENT_PLACEHOLDER: &[u8] = b"\0leasedlock:absent\0";

/// Where an edit is (see the diagram above).
#[derive(Debug)]
pub(super) enum EditPhase {
    /// Behind another edit of the lock.
    Queued,
    /// Taking the lock.
    Acquiring,
    /// GET of the key.
    Reading,
    /// Writing the value read (or a placeholder for an absent key) back with the fencing token,
    /// on the condition that the key still holds it (NEX), so that no write of an earlier token
    /// can land after the user has seen the value
    /// ([`Config::raise_edit_fence`](super::Config::raise_edit_fence)); refused, the edit reads
    /// the key again.
    Fencing { current: Option<Bytes> },
    /// `EditRequested` is out: waiting for `complete_edit`. `placeholder`: the key was absent
    /// and the fence left [`ABSENT_PLACEHOLDER`] in its place, which an abort deletes.
    AwaitingUser { placeholder: bool },
    /// The fenced write of the user's action (an `Abort` here deletes the placeholder);
    /// `attempts`: how many times it was sent; `released`: the lease the lock was released
    /// with, right behind the write (with the edit fence), which the write still carries.
    Writing {
        action: EditAction,
        attempts: u32,
        released: Option<Released>,
    },
}

/// A lease given up by the VDEL right behind an edit's write: the write, which leaves before
/// the VDEL, still goes under it until the lease's end ([`Client::write_token`]).
#[derive(Debug)]
pub(super) struct Released {
    pub(super) token: FencingToken,
    pub(super) validity: Validity,
}

/// What an operation is, with the state that only that kind has.
#[derive(Debug)]
pub(super) enum OpKind {
    TryAcquire {
        lease: Duration,
    },
    Acquire {
        lease: Duration,
    },
    /// `believed_held`: this client held the lock under the holder value when the release
    /// started; `sent`: how many times its VDEL went out (an earlier one may have deleted it).
    Release {
        silent: bool,
        believed_held: bool,
        sent: u32,
    },
    Holder,
    /// `keep`: a [`Client::keep`] (one try unless `wait`, and it ends at its first loss)
    /// rather than a [`Client::hold`] (which waits, and wins the lock again after a loss).
    Hold {
        lease: Duration,
        interval: Duration,
        held: bool,
        keep: Option<Keep>,
    },
    Edit(Box<Edit>),
    Access(Box<StoreAccess>),
}

/// An edit's own state, boxed in [`OpKind::Edit`] (as is a store access's): inline, it would
/// make every operation, holds included, as large as the largest edit.
#[derive(Debug)]
pub(super) struct Edit {
    pub(super) key: Bytes,
    pub(super) lease: Duration,
    pub(super) phase: EditPhase,
}

/// A store access's own state; `sent`: the request went out (a write is never repeated).
#[derive(Debug)]
pub(super) struct StoreAccess {
    pub(super) key: Bytes,
    pub(super) access: Access,
    pub(super) fence: Fence,
    pub(super) sent: bool,
}

impl OpKind {
    /// Where an edit is; `None` for the other kinds.
    pub(super) fn edit_phase(&self) -> Option<&EditPhase> {
        match self {
            OpKind::Edit(edit) => Some(&edit.phase),
            _ => None,
        }
    }

    /// [`OpKind::edit_phase`], to change it.
    pub(super) fn edit_phase_mut(&mut self) -> Option<&mut EditPhase> {
        match self {
            OpKind::Edit(edit) => Some(&mut edit.phase),
            _ => None,
        }
    }
}

/// Where a lock keeps a new operation besides its set of operations.
enum Slot {
    /// The lock's one hold.
    Hold,
    /// The lock's running edit.
    Edit,
    /// The queue of edits waiting for the running one.
    EditQueue,
}

/// How a [`Client::keep`] differs from a hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keep {
    /// The first acquisition waits for the lock (else one try: `Busy`).
    pub(super) wait: bool,
}

/// One live operation.
#[derive(Debug)]
pub(super) struct Op {
    /// Order of creation.
    pub(super) seq: u64,
    pub(super) lock: LockId,
    pub(super) holder: HolderValue,
    pub(super) deadline: Option<Instant>,
    pub(super) deadline_timer: Option<TimerKey>,
    /// The one request this operation has in flight.
    pub(super) req: Option<RequestId>,
    /// Retry, fallback re-check or renewal.
    pub(super) retry_timer: Option<TimerKey>,
    /// The lock was busy at one of this operation's attempts.
    pub(super) saw_busy: bool,
    /// The current attempt was made because of a DELETE (a refusal then means a lost race).
    pub(super) after_delete: bool,
    /// A DELETE of the lock arrived while the current attempt was in flight.
    pub(super) freed_meanwhile: bool,
    /// Attempts in a row that failed and are retried: each retry waits twice as long.
    pub(super) failures: u32,
    pub(super) kind: OpKind,
}

impl Op {
    /// The lease of an operation that acquires, while it is acquiring.
    pub(super) fn acquiring_lease(&self) -> Option<Duration> {
        match &self.kind {
            OpKind::TryAcquire { lease } | OpKind::Acquire { lease } => Some(*lease),
            OpKind::Hold {
                lease, held: false, ..
            } => Some(*lease),
            OpKind::Edit(edit) if matches!(edit.phase, EditPhase::Acquiring) => Some(edit.lease),
            _ => None,
        }
    }
}

/// Whether a response error says the store did not process the request: a 4xx protocol error.
/// Anything else (a 5xx, a status or payload that cannot be read) leaves it unknown.
fn refused_unprocessed(error: &ResponseError) -> bool {
    // `canary-5xx` plants a bug for the simulator: a 5xx taken as refused unprocessed too.
    let end = if cfg!(feature = "canary-5xx") {
        600
    } else {
        500
    };
    matches!(error, ResponseError::Protocol(p) if (400..end).contains(&p.status))
}

/// What `error` means for a write that was sent `attempts` times: a write sent and not answered
/// definitely (no answer, a 5xx, a reply that cannot be read or that a write cannot have) may
/// have been applied, and so may an earlier attempt of a write whose repetition was refused.
fn after_write(error: OpError, attempts: u32) -> OpError {
    match error {
        // `canary-quota` plants a bug for the simulator: a store's error reply (its quota) taken
        // as a definite failure, though an earlier attempt may have been applied.
        OpError::Service(_) if cfg!(feature = "canary-quota") => error,
        OpError::Timeout
        | OpError::Cancelled
        | OpError::LeaseLapsed
        | OpError::Disconnected
        | OpError::SubscriptionRefused(_)
        | OpError::UnexpectedReply(_)
            if attempts >= 1 =>
        {
            OpError::Indeterminate
        }
        OpError::Protocol(e) if attempts >= 1 && !refused_unprocessed(&e) => OpError::Indeterminate,
        _ if attempts >= 2 => OpError::Indeterminate,
        error => error,
    }
}

impl Client {
    pub(super) fn start_op(
        &mut self,
        now: Now,
        lock: LockId,
        holder: HolderValue,
        deadline: Option<Instant>,
        kind: OpKind,
    ) -> OpId {
        self.next_seq += 1;
        let id = self.ops.next_key();
        let watches = matches!(
            kind,
            OpKind::Acquire { .. } | OpKind::Hold { .. } | OpKind::Edit(_)
        );
        let slot = match &kind {
            OpKind::Hold { .. } => Some(Slot::Hold),
            OpKind::Edit(edit) if matches!(edit.phase, EditPhase::Queued) => Some(Slot::EditQueue),
            OpKind::Edit(_) => Some(Slot::Edit),
            _ => None,
        };
        let deadline_timer = deadline.map(|d| self.timers.schedule(d, Timer::OpDeadline(id)));
        self.ops.insert(Op {
            seq: self.next_seq,
            lock,
            holder,
            deadline,
            deadline_timer,
            req: None,
            retry_timer: None,
            saw_busy: false,
            after_delete: false,
            freed_meanwhile: false,
            failures: 0,
            kind,
        });
        let l = &mut self.locks[lock];
        l.ops.insert(id);
        // The lock knows the operation before its first step, which may already end it (and
        // empty its slot again).
        match slot {
            Some(Slot::Hold) => l.hold = Some(id),
            Some(Slot::Edit) => l.edit = Some(id),
            Some(Slot::EditQueue) => self.edit_queues.entry(lock).or_default().push_back(id),
            None => {}
        }
        let l = &mut self.locks[lock];
        if watches {
            l.watchers.insert(id);
            self.ensure_notify(now, lock);
        }
        self.advance(now, id);
        id
    }

    pub(super) fn start_release(
        &mut self,
        now: Now,
        lock: LockId,
        holder: HolderValue,
        deadline: Option<Instant>,
        silent: bool,
    ) -> OpId {
        // A user's release ends the hold of its holder value, and only that one: a release under
        // another session id leaves it alone (the store keeps it too). The engine's own releases
        // (`silent`: a hold's or an edit's end, undoing an abandoned SET) end no hold: one that
        // undoes the SET of a timed-out acquire must not end a hold waiting beside it.
        if let (Some(hold), false) = (self.locks[lock].hold, silent) {
            if self.ops[&hold].holder == holder {
                // This VDEL follows the hold's SET in flight (one topic, in order), so it undoes
                // a win of that SET too: the hold ends without a second release of its own.
                let req = self.ops.get_mut(&hold).and_then(|op| op.req.take());
                if let Some(p) = req.and_then(|r| self.pending.remove(&r)) {
                    self.timers.cancel(p.timer);
                }
                self.end_hold(now, hold, false);
            }
        }
        let l = &mut self.locks[lock];
        let believed_held = match l.lease.take_if(|lease| lease.holder == holder) {
            Some(lease) => {
                self.timers.cancel(Some(lease.timer));
                true
            }
            None => false,
        };
        l.releasing += 1;
        l.epoch += 1;
        let herd = l.in_herd(now.instant);
        if l.contended || herd {
            // A waiter woken by this VDEL's DELETE has its SET at the store a round trip and a
            // half after the VDEL left; this client's next SET, sent a round trip later (at the
            // earliest when the write or the VDEL is answered), would tie with it. Holding back
            // one more measured round trip (at most the safety margin, so that a stalled
            // answer cannot make it long) lets the woken waiters go first at any latency. In a
            // herd, the waiters that hold their SET back (see `Lock::next_in_turn`) go first
            // too, should nobody be next in turn; so does a herd this client took the lock
            // from without a wait.
            let rt = self.capped_round_trip();
            let base = if herd {
                self.held_back(lock) + rt * 2
            } else {
                self.config.release_holdback + rt
            };
            let delay = base + self.jitter();
            self.locks[lock].set_reacquire_after(later(now.instant, delay));
        }
        let kind = OpKind::Release {
            silent,
            believed_held,
            sent: 0,
        };
        self.start_op(now, lock, holder, deadline, kind)
    }

    /// Ends a hold: stops renewing, forgets the lease, and (when asked) releases it silently.
    pub(super) fn end_hold(&mut self, now: Now, hold: OpId, release: bool) {
        let Some(op) = self.ops.get(&hold) else {
            return;
        };
        let (lock, holder) = (op.lock, op.holder.clone());
        self.finish(now, hold, Some(Event::HoldEnded { op: hold, lock }));
        if release {
            let deadline = Some(later(now.instant, self.config.request_timeout));
            self.start_release(now, lock, holder, deadline, true);
        }
    }

    /// Ends the operation with `error` (an edit through [`Client::finish_edit`], which may turn
    /// it into `Indeterminate`; a silent release with no event).
    pub(super) fn fail(&mut self, now: Now, id: OpId, lock: LockId, error: OpError) {
        match self.ops.get(&id).map(|o| &o.kind) {
            Some(OpKind::Edit(_)) => self.finish_edit(now, id, Err(error)),
            Some(OpKind::Access(_)) => {
                let error = after_write(error, u32::from(self.access_write_sent(id)));
                let event = Event::Failed {
                    op: id,
                    lock,
                    error,
                };
                self.finish(now, id, Some(event));
            }
            Some(OpKind::Release { silent: true, .. }) => self.finish(now, id, None),
            Some(_) => self.finish(
                now,
                id,
                Some(Event::Failed {
                    op: id,
                    lock,
                    error,
                }),
            ),
            None => {}
        }
    }

    /// Ends an edit with its outcome, releasing the lock if the edit held it, and starts the next
    /// queued edit of the lock.
    pub(super) fn finish_edit(
        &mut self,
        now: Now,
        id: OpId,
        outcome: Result<EditOutcome, OpError>,
    ) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        let lock = op.lock;
        let attempts = match &op.kind {
            OpKind::Edit(edit) => match edit.phase {
                EditPhase::Writing { attempts, .. } => attempts,
                _ => 0,
            },
            _ => 0,
        };
        let outcome = outcome.map_err(|e| after_write(e, attempts));
        let event = match outcome {
            Ok(outcome) => Event::EditDone {
                op: id,
                lock,
                outcome,
            },
            Err(error) => Event::Failed {
                op: id,
                lock,
                error,
            },
        };
        // Free the lock before anything else goes out.
        self.release_if_owned(now, id);
        self.finish(now, id, Some(event));
        self.next_edit(now, lock);
    }

    pub(super) fn next_edit(&mut self, now: Now, lock: LockId) {
        if self.locks[lock].edit.is_some() {
            return;
        }
        while let Some(next) = self.pop_queued_edit(lock) {
            if let Some(phase) = self
                .ops
                .get_mut(&next)
                .and_then(|o| o.kind.edit_phase_mut())
            {
                *phase = EditPhase::Acquiring;
                self.locks[lock].edit = Some(next);
                self.advance(now, next);
                return;
            }
        }
    }

    /// The oldest edit waiting for the lock's current edit to end.
    pub(super) fn pop_queued_edit(&mut self, lock: LockId) -> Option<OpId> {
        let queue = self.edit_queues.get_mut(&lock)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.edit_queues.remove(&lock);
        }
        next
    }

    /// Removes an operation and everything it owns; emits its final event.
    pub(super) fn finish(&mut self, now: Now, id: OpId, event: Option<Event>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        self.timers.cancel(op.deadline_timer);
        self.timers.cancel(op.retry_timer);
        // An acquiring SET still in flight may yet take the lock for us: release it after.
        let mut undo_set = false;
        // A VDEL still in flight keeps the release barrier up until it is answered or lost.
        let mut vdel_in_flight = false;
        if let Some(req_id) = op.req {
            if let Some(p) = self.pending.get_mut(&req_id) {
                if p.kind == RequestKind::VDel {
                    p.owner = Owner::Lock(op.lock);
                    vdel_in_flight = true;
                } else if let Some(p) = self.pending.remove(&req_id) {
                    self.timers.cancel(p.timer);
                    undo_set = matches!(p.kind, RequestKind::Set { .. })
                        && !matches!(op.kind, OpKind::Hold { held: true, .. });
                }
            }
        }
        let lock = op.lock;
        let l = &mut self.locks[lock];
        l.ops.remove(&id);
        let watched = l.watchers.remove(&id);
        if l.hold == Some(id) {
            l.hold = None;
        }
        if l.edit == Some(id) {
            l.edit = None;
        }
        if let Some(queue) = self.edit_queues.get_mut(&lock) {
            queue.retain(|q| *q != id);
            if queue.is_empty() {
                self.edit_queues.remove(&lock);
            }
        }
        let l = &mut self.locks[lock];
        if l.lease
            .as_ref()
            .is_some_and(|lease| lease.owner == Some(id))
        {
            if let Some(lease) = l.lease.take() {
                self.timers.cancel(Some(lease.timer));
            }
        }
        let released = matches!(op.kind, OpKind::Release { .. }) && !vdel_in_flight;
        if let Some(event) = event {
            self.emit(Output::Event(event));
        }
        if watched {
            self.maybe_stop_notify(now, lock);
        }
        if undo_set && self.locks[lock].lease.is_none() {
            let deadline = Some(later(now.instant, self.config.request_timeout));
            self.start_release(now, lock, op.holder, deadline, true);
        }
        if released {
            self.release_settled(now, lock);
        }
        self.locks.may_be_idle(lock);
    }

    /// A release's VDEL was answered or given up: once no release is in progress, the lock's
    /// waiting operations go on.
    pub(super) fn release_settled(&mut self, now: Now, lock: LockId) {
        let l = &mut self.locks[lock];
        l.releasing = l.releasing.saturating_sub(1);
        if l.releasing == 0 {
            let waiting: Vec<OpId> = l.ops.iter().collect();
            for w in waiting {
                self.advance(now, w);
            }
        }
        self.locks.may_be_idle(lock);
    }

    pub(super) fn on_deadline(&mut self, now: Now, id: OpId) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        let error = if self.connected {
            OpError::Timeout
        } else {
            OpError::Disconnected
        };
        // A hold's timeout bounds its first acquisition: it ends the hold like any failure.
        let lock = op.lock;
        self.fail(now, id, lock, error);
    }

    // ----- internals: sending ------------------------------------------------------------------

    /// Does whatever the operation needs next, if it can now.
    pub(super) fn advance(&mut self, now: Now, id: OpId) {
        if !self.ready() {
            // A subscription refused on this connection will not be granted before the next
            // one: the operation fails now instead of waiting for nothing.
            if let Some(filter) = self.refused_subscription() {
                if let Some(lock) = self.ops.get(&id).map(|op| op.lock) {
                    self.fail(now, id, lock, OpError::SubscriptionRefused(filter));
                }
            }
            return;
        }
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        if op.req.is_some() || op.retry_timer.is_some() {
            return;
        }
        if op.deadline.is_some_and(|d| d <= now.instant) {
            // Its deadline timer is due in this very call (another timer of the same instant,
            // such as a VDEL's timeout lifting the release barrier, came first): a request sent
            // now would be given up at once, after it had been handed out to be sent.
            let timer = self
                .ops
                .get_mut(&id)
                .and_then(|op| op.deadline_timer.take());
            self.timers.cancel(timer);
            self.on_deadline(now, id);
            return;
        }
        let lock = op.lock;
        let held = self.is_held(now, lock);
        let l = &self.locks[lock];
        // The lock's name and the holder value go into the command by reference count: each is
        // cloned once, only by the arm that needs it.
        let set = |lease: Duration| Command::Set {
            key: l.name.clone(),
            value: op.holder.bytes(&self.holder).clone(),
            options: SetOptions {
                condition: SetCondition::NotExistsOrEqual,
                expiry: NonZeroU64::new(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)),
            },
        };
        let (command, kind, fencing) = match (&op.kind, op.kind.edit_phase()) {
            (OpKind::Release { .. }, _) => (
                Command::VDel {
                    key: l.name.clone(),
                    value: op.holder.bytes(&self.holder).clone(),
                },
                RequestKind::VDel,
                None,
            ),
            (OpKind::Holder, _) => (
                Command::Get {
                    key: l.name.clone(),
                },
                RequestKind::Get,
                None,
            ),
            (
                OpKind::Hold {
                    lease, held: true, ..
                },
                _,
            ) => (set(*lease), RequestKind::Set { epoch: l.epoch }, None),
            (_, Some(EditPhase::Queued | EditPhase::AwaitingUser { .. })) => return,
            (OpKind::Access(a), _) => {
                match self.access_request(now, lock, &op.holder, &a.key, &a.access, &a.fence) {
                    Ok((command, token)) => (command, RequestKind::Access, token),
                    Err(error) => {
                        self.fail(now, id, lock, error);
                        return;
                    }
                }
            }
            (OpKind::Edit(edit), Some(EditPhase::Fencing { current })) => {
                if !held {
                    self.finish_edit(now, id, Err(OpError::LeaseLapsed));
                    return;
                }
                let value = current
                    .clone()
                    .unwrap_or(Bytes::from_static(ABSENT_PLACEHOLDER));
                // NEX: only while the key still holds what was read. A copy of this request
                // that reaches the store late (after a timeout and a re-send, or from the MQTT
                // session) can then never undo the user's write, which carries the same token;
                // and a write of a previous holder that landed after the read is seen again.
                let command = Command::Set {
                    key: edit.key.clone(),
                    value,
                    options: SetOptions {
                        condition: SetCondition::NotExistsOrEqual,
                        expiry: None,
                    },
                };
                let token = l.lease.as_ref().map(|lease| lease.token.clone());
                (command, RequestKind::Fence, token)
            }
            (OpKind::Edit(edit), Some(EditPhase::Reading)) => (
                Command::Get {
                    key: edit.key.clone(),
                },
                RequestKind::Get,
                None,
            ),
            (OpKind::Edit(edit), Some(EditPhase::Writing { action, .. })) => {
                let key = &edit.key;
                if !held {
                    self.finish_edit(now, id, Err(OpError::LeaseLapsed));
                    return;
                }
                let command = match action {
                    EditAction::Set(v) => Command::Set {
                        key: key.clone(),
                        value: v.clone(),
                        options: SetOptions::default(),
                    },
                    EditAction::Delete | EditAction::Abort => Command::Del { key: key.clone() },
                };
                let token = l.lease.as_ref().map(|lease| lease.token.clone());
                (command, RequestKind::Write, token)
            }
            _ => {
                let Some(lease) = op.acquiring_lease() else {
                    return;
                };
                if l.releasing > 0 {
                    return; // after the release: see `Lock::releasing`
                }
                if let (Some(at), false) = (
                    l.reacquire_after().filter(|at| now.instant < *at),
                    matches!(op.kind, OpKind::TryAcquire { .. }),
                ) {
                    self.retry_at(id, at);
                    return;
                }
                (set(lease), RequestKind::Set { epoch: l.epoch }, None)
            }
        };
        let mut deadline = op.deadline;
        if let (Some(token), Some(lease)) = (&fencing, &l.lease) {
            // A write fenced with our lease's token is given up when the lease ends: it must not
            // leave after that (the connection drops it unsent), and a reply that comes later
            // cannot tell whether it landed under the lease.
            if *token == lease.token {
                let end = lease
                    .validity
                    .end_as_of(now, self.config.clock_rate_drift_ppm);
                if end <= now.instant {
                    // Already over (a check of the lease by one clock only would let it pass).
                    self.fail(now, id, lock, OpError::LeaseLapsed);
                    return;
                }
                deadline = Some(deadline.map_or(end, |d| d.min(end)));
            }
        }
        if let (OpKind::Hold { held: true, .. }, Some(lease)) = (&op.kind, &l.lease) {
            // A renewal gives up at half the validity left, so that a retry still fits when its
            // reply is lost (the request timeout alone could outlast the lease); never sooner
            // than the shortest re-check, so that the lease's end, not a burst of retries, comes
            // last.
            let left = lease
                .validity
                .instant
                .saturating_duration_since(now.instant);
            let half = later(now.instant, (left / 2).max(MIN_FALLBACK));
            deadline = Some(deadline.map_or(half, |d| d.min(half)));
        }
        match self.send(now, Owner::Op(id), kind, command, fencing, deadline) {
            Ok(req_id) => {
                let mut release_behind = false;
                // The lease this edit took, which it may release right behind its write.
                let own_lease = self.locks[lock]
                    .lease
                    .as_ref()
                    .filter(|l| l.owner == Some(id) && self.config.raise_edit_fence);
                if let Some(op) = self.ops.get_mut(&id) {
                    op.req = Some(req_id);
                    match &mut op.kind {
                        OpKind::Edit(edit) => {
                            if let EditPhase::Writing {
                                attempts, released, ..
                            } = &mut edit.phase
                            {
                                *attempts += 1;
                                if let Some(l) = own_lease {
                                    *released = Some(Released {
                                        token: l.token.clone(),
                                        validity: l.validity,
                                    });
                                    release_behind = true;
                                }
                            }
                        }
                        OpKind::Access(a) => a.sent = true,
                        OpKind::Release { sent, .. } => *sent += 1,
                        _ => {}
                    }
                }
                if release_behind {
                    // A fenced edit releases the lock right behind its write, not after the
                    // write's answer: the store handles one client's requests in order (one
                    // topic, one `$partition`), so the VDEL frees the lock once the write is
                    // done, a round trip sooner. The lease goes with it, so the write is never
                    // repeated: its loss is `Indeterminate`. Only behind the edit fence: a
                    // write that still landed after the VDEL (a transport that re-sent it out
                    // of order) finds the next holder's fence, which refuses it, or lands
                    // before that fence, which then sees the change and reads the key again.
                    self.release_if_owned(now, id);
                }
            }
            // A clock that refuses to send (the wall clock stepped far back) does not end a hold:
            // its lease runs out and is reported lost, and it goes on trying until the clock
            // lets it send again.
            Err(OpError::Clock(_)) if matches!(self.ops[&id].kind, OpKind::Hold { .. }) => {
                self.retry_after(now, id, CLOCK_RETRY);
            }
            Err(error) => self.fail(now, id, lock, error),
        }
    }

    /// Releases the lock silently if the operation owns its lease (an edit that took it).
    fn release_if_owned(&mut self, now: Now, id: OpId) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        let (lock, holder) = (op.lock, op.holder.clone());
        let owned = self.locks[lock]
            .lease
            .as_ref()
            .is_some_and(|l| l.owner == Some(id));
        if owned {
            let deadline = Some(later(now.instant, self.config.request_timeout));
            self.start_release(now, lock, holder, deadline, true);
        }
    }

    /// How long a waiter of a herd that is not next in turn holds its SET back after a DELETE:
    /// long enough for the SET of the one that is to be told (two measured round trips, each at
    /// most the safety margin) and the release hold-back more, and at least twice the handoffs
    /// this client has been told of (see `Lock::handoff`; at most the safety margin).
    pub(super) fn held_back(&self, lock: LockId) -> Duration {
        let base = self.config.release_holdback + self.capped_round_trip() * 2;
        let handoff = self.locks[lock].handoff().unwrap_or_default() * 2;
        base.max(handoff.min(self.config.safety_margin))
    }

    /// The smoothed round trip, at most the safety margin (a stalled answer cannot make a
    /// hold-back long).
    fn capped_round_trip(&self) -> Duration {
        self.round_trip.get().min(self.config.safety_margin)
    }

    pub(super) fn jitter(&mut self) -> Duration {
        let lo = u64::try_from(self.config.retry_jitter_min.as_micros()).unwrap_or(u64::MAX);
        let hi = u64::try_from(self.config.retry_jitter_max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.between(lo, hi))
    }

    /// The delay before retrying an attempt of `id` that failed: `base`, doubled for every
    /// failure in a row before it (at most [`MAX_BACKOFF`]), plus the seeded jitter.
    pub(super) fn backoff(&mut self, id: OpId, base: Duration) -> Duration {
        let failures = self.ops.get_mut(&id).map_or(0, |op| {
            op.failures = op.failures.saturating_add(1);
            op.failures - 1
        });
        let delay = base.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF);
        delay + self.jitter()
    }

    pub(super) fn retry_after(&mut self, now: Now, id: OpId, delay: Duration) {
        let at = later(now.instant, delay);
        self.retry_at(id, at);
    }

    pub(super) fn retry_at(&mut self, id: OpId, at: Instant) {
        let key = self.timers.schedule(at, Timer::Retry(id));
        if let Some(op) = self.ops.get_mut(&id) {
            let old = op.retry_timer.replace(key);
            self.timers.cancel(old);
        } else {
            self.timers.cancel(Some(key));
        }
    }
}
