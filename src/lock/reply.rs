//! What comes back: responses to pending requests, read into the state of their operation or
//! lock, and requests that will never be answered.

use super::client::{Client, Timer};
use super::lease::{Lease, Validity};
use super::notify::Notify;
use super::operation::{EditPhase, Keep, OpKind, ABSENT_PLACEHOLDER, MIN_FALLBACK};
use super::request::{Owner, Pending, RequestKind, RequestLost};
use super::{EditAction, EditOutcome, Event, Holder, LockId, LossReason, OpError, OpId, Output};
use crate::hlc::FencingToken;
use crate::store::{ResponseBody, ResponseError, StoreReply};
use crate::time::later;
use crate::{Message, Now};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// How long a lost race, or a SET held back in vain, keeps this client in a herd (see
/// `Lock::in_herd`).
pub(super) const HERD_MEMORY: Duration = Duration::from_secs(1);

impl Client {
    pub(super) fn request_lost(&mut self, now: Now, p: Pending, why: RequestLost) {
        match p.owner {
            Owner::Lock(lock) if p.kind == RequestKind::VDel => self.release_settled(now, lock),
            Owner::Lock(lock) => {
                // A KEYNOTIFY STOP may be lost after its idle lock was freed.
                let Ok(l) = self.locks.get_mut(lock) else {
                    return;
                };
                if p.kind == RequestKind::KeyNotify && matches!(l.notify, Notify::Pending(_)) {
                    l.notify = Notify::Off;
                    if why == RequestLost::Timeout {
                        self.ensure_notify(now, lock);
                    }
                    self.locks.may_be_idle(lock);
                }
            }
            // A store access's write is never repeated: its outcome is unknown (a read is
            // repeated, below).
            Owner::Op(id) if self.access_write_sent(id) => {
                let lock = self.ops[&id].lock;
                self.fail(now, id, lock, OpError::Indeterminate);
            }
            Owner::Op(id) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    return;
                };
                op.req = None;
                let lock = op.lock;
                if let Some(EditPhase::Writing { attempts: 1.., .. }) = op.kind.edit_phase() {
                    // Repeat the fenced write while the lease lasts; after that, the outcome is
                    // unknown. The lease lasts for the write until the send-by instant it was
                    // given: a later reading may leave a few moments, too few to be worth a
                    // copy that may land all the same.
                    if !self.is_held(now, lock) || !self.holds_for_writes_sent(now, lock, p.sent) {
                        self.finish_edit(now, id, Err(OpError::Indeterminate));
                        return;
                    }
                }
                self.stats.retries += 1;
                self.advance(now, id);
            }
        }
    }

    pub(super) fn on_response_message(&mut self, now: Now, message: &Message) {
        let (correlation_data, outcome) = self.responses.parse_message(message);
        self.handle_response(now, correlation_data.unwrap_or_default(), outcome);
    }

    /// The response to a request, read by [`ResponseParser`](crate::store::ResponseParser) (or
    /// [`store::parse_response`](crate::store::parse_response)): its correlation data and what it
    /// says. A response without correlation data (`&[]` with
    /// [`ResponseError::MissingCorrelationData`]) is counted as malformed; one that matches no
    /// pending request (late, duplicate, another client's) is counted and ignored. Timers due by
    /// `now` fire first, as for [`Client::handle_message`].
    pub fn handle_response(
        &mut self,
        now: Now,
        correlation_data: &[u8],
        outcome: Result<ResponseBody, ResponseError>,
    ) {
        self.handle_timeout(now);
        if correlation_data.is_empty() && outcome == Err(ResponseError::MissingCorrelationData) {
            self.stats.malformed_messages += 1;
            return;
        }
        let Some(req_id) = self.pending.id_of(correlation_data) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let Some(p) = self.pending.remove(&req_id) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.timers.cancel(p.timer);
        self.round_trip.sample(p.sent.instant, now.instant);
        // Feed the clock with the version; a refusal never loses an applied change.
        let mut clock_error = None;
        if let Ok(ResponseBody {
            version: Some(v), ..
        }) = &outcome
        {
            if let Err(e) = self.clock.receive(v, now.wall_ms) {
                self.stats.clock_errors += 1;
                clock_error = Some(e);
            }
        }
        match p.owner {
            Owner::Lock(lock) if p.kind == RequestKind::VDel => self.release_settled(now, lock),
            Owner::Lock(lock) => self.on_notify_reply(lock, req_id, p.kind, outcome),
            Owner::Op(id) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    self.stats.unmatched_responses += 1;
                    return;
                };
                op.req = None;
                let lock = op.lock;
                let body = match outcome {
                    Ok(body) => body,
                    Err(e) => {
                        self.on_failed_reply(now, id, lock, p.kind, OpError::Protocol(e));
                        return;
                    }
                };
                if let StoreReply::Error(e) = &body.reply {
                    let error = OpError::Service(e.clone());
                    self.on_failed_reply(now, id, lock, p.kind, error);
                    return;
                }
                if let Some(op) = self.ops.get_mut(&id) {
                    op.failures = 0;
                }
                let applied = matches!(
                    (&body.reply, p.kind),
                    (
                        StoreReply::Ok,
                        RequestKind::Set { .. }
                            | RequestKind::Fence
                            | RequestKind::Write
                            | RequestKind::Access
                    ) | (
                        StoreReply::Integer(1..),
                        RequestKind::VDel | RequestKind::Write | RequestKind::Access
                    )
                );
                if let (Some(e), false) = (clock_error, applied) {
                    self.on_failed_reply(now, id, lock, p.kind, OpError::Clock(e));
                    return;
                }
                match p.kind {
                    RequestKind::Set { epoch } => self.on_set_reply(now, id, &p, epoch, body),
                    RequestKind::Get => self.on_get_reply(now, id, body.reply),
                    RequestKind::Fence => self.on_fence_reply(now, id, body.reply),
                    RequestKind::Write => self.on_write_reply(now, id, body.reply),
                    RequestKind::Access => self.on_access_reply(now, id, body.reply),
                    RequestKind::VDel => {
                        let OpKind::Release {
                            silent,
                            believed_held,
                            sent,
                        } = self.ops[&id].kind
                        else {
                            return;
                        };
                        let was_held = match body.reply {
                            // `:0` after a VDEL sent before (and maybe applied) says nothing
                            // of the lock as it was: then what the client believed stands.
                            StoreReply::Integer(n) => n > 0 || (sent > 1 && believed_held),
                            other => {
                                let error = OpError::UnexpectedReply(other);
                                self.fail(now, id, lock, error);
                                return;
                            }
                        };
                        let event = (!silent).then_some(Event::Released {
                            op: id,
                            lock,
                            was_held,
                        });
                        self.finish(now, id, event);
                    }
                    RequestKind::KeyNotify | RequestKind::KeyNotifyStop => {}
                }
            }
        }
    }

    /// A request of an operation got an error reply.
    pub(super) fn on_failed_reply(
        &mut self,
        now: Now,
        id: OpId,
        lock: LockId,
        kind: RequestKind,
        error: OpError,
    ) {
        let renewal = matches!(
            self.ops.get(&id).map(|o| &o.kind),
            Some(OpKind::Hold { held: true, .. })
        );
        if renewal && kind != RequestKind::Write {
            // Try again, backing off (but never past half the validity left, so that one more
            // try still fits); if nothing succeeds, the lease end reports the loss.
            let left = self.locks[lock].lease.as_ref().map_or(Duration::ZERO, |l| {
                l.validity.instant.saturating_duration_since(now.instant)
            });
            let delay = self
                .backoff(id, MIN_FALLBACK)
                .min((left / 2).max(MIN_FALLBACK));
            self.retry_after(now, id, delay);
            return;
        }
        self.fail(now, id, lock, error);
    }

    pub(super) fn on_set_reply(
        &mut self,
        now: Now,
        id: OpId,
        p: &Pending,
        epoch: u64,
        body: ResponseBody,
    ) {
        // Whether this attempt followed a DELETE: refused, it lost a race to another waiter.
        let (lost_race, freed_meanwhile) = self.ops.get_mut(&id).map_or((false, false), |op| {
            (
                std::mem::take(&mut op.after_delete),
                std::mem::take(&mut op.freed_meanwhile),
            )
        });
        let op = &self.ops[&id];
        let lock = op.lock;
        let (lease, renewal) = match &op.kind {
            OpKind::Hold {
                lease, held: true, ..
            } => (*lease, true),
            _ => match op.acquiring_lease() {
                Some(lease) => (lease, false),
                None => return,
            },
        };
        match body.reply {
            StoreReply::Ok => {
                let Some(version) = body.version else {
                    let error = OpError::MissingVersion;
                    self.fail(now, id, lock, error);
                    return;
                };
                #[cfg(not(feature = "canary"))]
                let trusted = lease - self.config.margin(lease);
                #[cfg(feature = "canary")] // planted bug for the simulator: no safety margin
                let trusted = lease;
                // `canary-stall` plants a bug for the simulator: validity from the reply's arrival.
                let start = if cfg!(feature = "canary-stall") {
                    now
                } else {
                    p.sent
                };
                let valid_until = Validity::from(start, trusted);
                let undone = self.locks[lock].epoch != epoch;
                if undone || !valid_until.holds_at(now) {
                    // Released since, or the reply came too late to be trusted.
                    match &self.ops[&id].kind {
                        OpKind::TryAcquire { .. } => {
                            let holder = self.ops[&id].holder.clone();
                            self.fail(now, id, lock, OpError::LeaseLapsed);
                            // The store did give it the lock: free it rather than leave it
                            // held until its lease runs out there.
                            if !undone && self.locks[lock].lease.is_none() {
                                let deadline =
                                    Some(later(now.instant, self.config.request_timeout));
                                self.start_release(now, lock, holder, deadline, true);
                            }
                        }
                        _ => self.advance(now, id),
                    }
                    return;
                }
                self.won(
                    now,
                    id,
                    FencingToken::new(version),
                    p.sent.instant,
                    valid_until,
                );
            }
            StoreReply::Integer(-1) => {
                if renewal {
                    self.lease_lost(now, lock, LossReason::RenewalRefused);
                    return;
                }
                if let Some(op) = self.ops.get_mut(&id) {
                    op.saw_busy = true;
                }
                let l = &mut self.locks[lock];
                l.contended = true;
                if lost_race {
                    l.set_herd_until(later(now.instant, HERD_MEMORY));
                    l.beaten();
                }
                let one_try = matches!(
                    self.ops[&id].kind,
                    OpKind::TryAcquire { .. }
                        | OpKind::Hold {
                            keep: Some(Keep { wait: false }),
                            ..
                        }
                );
                if one_try {
                    self.finish(now, id, Some(Event::Busy { op: id, lock }));
                } else if freed_meanwhile && cfg!(not(feature = "canary-handoff")) {
                    // (`canary-handoff` plants a bug for the simulator: `freed_meanwhile` ignored.)
                    // The lock was freed after the store refused this SET: try again now.
                    self.advance(now, id);
                } else {
                    // Wait for the DELETE; re-check anyway once the holder's lease could be over.
                    // (`canary-forget` plants a bug for the simulator: with its KEYNOTIFY
                    // registration confirmed, the waiter trusts the DELETE to come, and its
                    // re-check is put off for a thousand leases.)
                    let trusting = cfg!(feature = "canary-forget")
                        && matches!(self.locks[lock].notify, Notify::On);
                    let fallback = lease.max(MIN_FALLBACK) * if trusting { 1000 } else { 1 };
                    self.retry_after(now, id, fallback);
                }
            }
            other => {
                let error = OpError::UnexpectedReply(other);
                self.fail(now, id, lock, error);
            }
        }
    }

    pub(super) fn won(
        &mut self,
        now: Now,
        id: OpId,
        token: FencingToken,
        sent: Instant,
        valid_until: Validity,
    ) {
        let op = &self.ops[&id];
        let lock = op.lock;
        let owner = match op.kind {
            OpKind::Hold { .. } | OpKind::Edit(_) => Some(id),
            _ => None,
        };
        let holder = op.holder.clone();
        let l = &mut self.locks[lock];
        if !matches!(op.kind, OpKind::Hold { held: true, .. }) {
            l.contended = op.saw_busy;
            if op.saw_busy {
                l.took_over();
            }
        }
        // A lease under another holder value (another session id) is over: the store gave the
        // lock to this one.
        if self.locks[lock]
            .lease
            .as_ref()
            .is_some_and(|old| old.holder != holder)
        {
            self.lease_lost(now, lock, LossReason::TakenAway);
        }
        let l = &mut self.locks[lock];
        // Several SETs of one holder may succeed: the newest token and the latest end stand.
        let (token, validity, owner) = match l.lease.take() {
            Some(old) => {
                self.timers.cancel(Some(old.timer));
                (
                    token.max(old.token),
                    valid_until.latest(old.validity),
                    owner.or(old.owner),
                )
            }
            None => (token, valid_until, owner),
        };
        let valid_until = validity.instant;
        let timer = self.timers.schedule(valid_until, Timer::LeaseEnd(lock));
        l.lease = Some(Lease {
            holder,
            token: token.clone(),
            validity,
            timer,
            owner,
        });
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        match &mut op.kind {
            OpKind::Hold { interval, held, .. } => {
                let renewal = *held;
                *held = true;
                let next = later(sent, *interval);
                let event = if renewal {
                    Event::Renewed {
                        op: id,
                        lock,
                        token,
                        valid_until,
                    }
                } else {
                    // The timeout bounded the first acquisition only.
                    op.deadline = None;
                    let t = op.deadline_timer.take();
                    self.timers.cancel(t);
                    Event::Acquired {
                        op: id,
                        lock,
                        token,
                        valid_until,
                        hold: true,
                    }
                };
                self.emit(Output::Event(event));
                self.retry_at(id, next);
            }
            OpKind::Edit(edit) => {
                edit.phase = EditPhase::Reading;
                self.advance(now, id);
            }
            _ => {
                let event = Event::Acquired {
                    op: id,
                    lock,
                    token,
                    valid_until,
                    hold: false,
                };
                self.finish(now, id, Some(event));
            }
        }
    }

    pub(super) fn on_get_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let op = &self.ops[&id];
        let lock = op.lock;
        let value = match reply {
            // A value of its own: the reply's bytes share a block with other responses, and the
            // user may keep this for long.
            StoreReply::Value(v)
                if matches!(op.kind, OpKind::Edit(_)) && v == ABSENT_PLACEHOLDER =>
            {
                None
            }
            StoreReply::Value(v) => Some(Bytes::copy_from_slice(&v)),
            StoreReply::NotFound => None,
            other => {
                let error = OpError::UnexpectedReply(other);
                self.fail(now, id, lock, error);
                return;
            }
        };
        match &op.kind {
            OpKind::Holder => self.finish(
                now,
                id,
                Some(Event::Holder {
                    op: id,
                    lock,
                    holder: value.map(Holder::from_value),
                }),
            ),
            OpKind::Edit(_) => {
                if !self.is_held(now, lock) {
                    self.finish_edit(now, id, Err(OpError::LeaseLapsed));
                    return;
                }
                if self.config.raise_edit_fence {
                    self.set_edit_phase(id, EditPhase::Fencing { current: value });
                    self.advance(now, id);
                } else {
                    self.request_edit(id, lock, value, false);
                }
            }
            _ => {}
        }
    }

    /// The fence is up: the user may see the value.
    pub(super) fn on_fence_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let lock = self.ops[&id].lock;
        let phase = self
            .ops
            .get_mut(&id)
            .and_then(|op| op.kind.edit_phase_mut());
        let Some(EditPhase::Fencing { current }) = phase else {
            return;
        };
        let current = current.take();
        match reply {
            StoreReply::Ok if self.is_held(now, lock) => {
                let placeholder = current.is_none();
                self.request_edit(id, lock, current, placeholder);
            }
            StoreReply::Ok => self.finish_edit(now, id, Err(OpError::LeaseLapsed)),
            // The key no longer holds what was read (a previous holder's delayed write landed in
            // between): read it again, and fence what is there now.
            StoreReply::Integer(-1) => {
                self.set_edit_phase(id, EditPhase::Reading);
                self.advance(now, id);
            }
            other => self.fail(now, id, lock, OpError::UnexpectedReply(other)),
        }
    }

    /// Hands the value to the user: [`Event::EditRequested`].
    fn request_edit(&mut self, id: OpId, lock: LockId, current: Option<Bytes>, placeholder: bool) {
        self.set_edit_phase(id, EditPhase::AwaitingUser { placeholder });
        self.emit(Output::Event(Event::EditRequested {
            op: id,
            lock,
            current,
        }));
    }

    pub(super) fn set_edit_phase(&mut self, id: OpId, next: EditPhase) {
        if let Some(phase) = self
            .ops
            .get_mut(&id)
            .and_then(|op| op.kind.edit_phase_mut())
        {
            *phase = next;
        }
    }

    pub(super) fn on_write_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let outcome = match (self.ops[&id].kind.edit_phase(), reply) {
            (
                Some(EditPhase::Writing {
                    action: EditAction::Set(_),
                    ..
                }),
                StoreReply::Ok,
            ) => Ok(EditOutcome::Written),
            (
                Some(EditPhase::Writing {
                    action: EditAction::Abort,
                    ..
                }),
                StoreReply::Integer(n),
            ) if n >= 0 => Ok(EditOutcome::Unchanged),
            (_, StoreReply::Integer(n)) if n >= 0 => Ok(EditOutcome::Deleted),
            (_, other) => Err(OpError::UnexpectedReply(other)),
        };
        self.finish_edit(now, id, outcome);
    }
}
