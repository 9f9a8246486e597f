//! The invariants checked after every step (S1–S4, S6; S5 is the absence of panics; S7 as each
//! request is written), and what they keep track of: every operation of every client, the tokens
//! announced, the writes accepted.

use leasedlock::bytes::Bytes;
use leasedlock::emulator::RequestRecord;
use leasedlock::lock::{EditOutcome, Event, LockId, OpError, ABSENT_PLACEHOLDER};
use leasedlock::{store, FencingToken, Message};

use super::trace::describe;
use super::world::{Check, SimClient, World, COUNTER_KEYS, LOCK_NAMES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    TryAcquire,
    Acquire,
    Release,
    Holder,
    Hold,
    /// A hold that may end busy at its one try and ends at its first loss (`Intent::Keep`).
    Keep,
    Edit,
}

#[derive(Debug)]
pub(crate) struct Track {
    pub kind: OpKind,
    pub lock: usize,
    pub ended: bool,
    /// An edit whose write the user asked for (it may be on the wire), and which.
    pub writing: Option<Write>,
    /// A keep that reported its loss: it must end, never win the lock again.
    pub lost: bool,
}

/// The write an edit's user asked for: `Set(n + 1)`, or `Delete` (an `Abort` of an edit that read
/// the key absent deletes the fence's placeholder: it is counted as a delete that may happen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Set,
    Delete,
}

/// What the edits reported of one kind of write to one counter (S4).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    /// Reported done (`Written`, `Deleted`).
    pub ok: u64,
    /// Reported `Indeterminate`, lost in a crash while in flight, or an abort's delete of its
    /// placeholder (which `Unchanged` does not promise).
    pub indeterminate: u64,
    /// Carried out by the store (a copy of an earlier write not counted).
    pub applied: u64,
}

/// What the invariants remember, per lock.
pub(crate) struct Invariants {
    last_token: Vec<Option<FencingToken>>,
    max_write_token: Vec<Option<FencingToken>>,
    /// The newest token of an edit that has shown a user the counter's value (S6).
    max_seen_token: Vec<Option<FencingToken>>,
    pub sets: Vec<Tally>,
    pub deletes: Vec<Tally>,
    /// The `Set`s the store carried out since it last carried out a `Delete` of the counter: what
    /// the counter must hold, every edit adding one to the value it read.
    since_delete: Vec<u64>,
    /// Every write the store carried out on each counter, with its token: a copy of one (a
    /// duplicated request, a re-sent attempt, a publish the MQTT session held back and
    /// delivered later, after other writes) counts once, wherever it lands. One edit's writes
    /// share its lease's token and differ from each other, and no two edits share a token, so a
    /// write equal to an earlier one is always a copy of it.
    writes: Vec<Vec<(store::Command, Option<FencingToken>)>>,
    /// The newest token of a fence a delete of the counter removed (the store keeps a fence
    /// only with its key): a write with that token or an older one that lands on the deleted key
    /// is a stale holder's, or a late copy of the deleting edit's own fence, which the protocol
    /// no longer refuses (PROTOCOL.md §5). So is any write that lands there once its writer no
    /// longer holds the lock at the store, newer token or not (a held fence of a later holder
    /// that lands after an older holder's held delete).
    removed_fence: Vec<Option<FencingToken>>,
    pub acquisitions: u64,
}

impl Invariants {
    pub(crate) fn new() -> Invariants {
        Invariants {
            last_token: vec![None; LOCK_NAMES.len()],
            max_write_token: vec![None; LOCK_NAMES.len()],
            max_seen_token: vec![None; LOCK_NAMES.len()],
            sets: vec![Tally::default(); LOCK_NAMES.len()],
            deletes: vec![Tally::default(); LOCK_NAMES.len()],
            since_delete: vec![0; LOCK_NAMES.len()],
            writes: vec![Vec::new(); LOCK_NAMES.len()],
            removed_fence: vec![None; LOCK_NAMES.len()],
            acquisitions: 0,
        }
    }
}

impl Invariants {
    pub(crate) fn tally(&mut self, li: usize, write: Write) -> &mut Tally {
        match write {
            Write::Set => &mut self.sets[li],
            Write::Delete => &mut self.deletes[li],
        }
    }
}

/// A DEL the store carried out: the key is absent after it (deleting an absent key changes
/// nothing but is done all the same).
fn deleted(r: &RequestRecord) -> bool {
    matches!(r.command, Some(store::Command::Del { .. }))
        && matches!(r.reply, Some(store::StoreReply::Integer(n)) if n >= 0)
}

/// What a counter's bytes stand for: a number, or 0 for an edit's fence on an absent counter.
fn counter_value(v: &Bytes) -> Result<u64, String> {
    if v == ABSENT_PLACEHOLDER {
        return Ok(0);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("S4: the counter holds {v:?}"))
}

/// An edit's fence: the value it read written back with its token, only if it is still there.
fn is_fence(options: &store::SetOptions) -> bool {
    options.condition == store::SetCondition::NotExistsOrEqual
}

impl World<'_> {
    pub(super) fn on_event(&mut self, c: usize, e: Event) -> Check {
        let line = format!(
            "{} event {}",
            self.clients[c].id,
            self.describe_event(c, &e)
        );
        self.log(line);
        let lock_index = |lock: &LockId, client: &SimClient| {
            client.locks.iter().position(|l| l == lock).unwrap_or(0)
        };
        match &e {
            Event::Acquired { lock, token, .. } | Event::Renewed { lock, token, .. } => {
                let li = lock_index(lock, &self.clients[c]);
                if matches!(e, Event::Acquired { .. }) {
                    self.inv.acquisitions += 1;
                }
                if let Some(last) = &self.inv.last_token[li] {
                    if token < last {
                        return Err(format!(
                            "S2: {} was given token {token} for {} after token {last}",
                            self.clients[c].id, LOCK_NAMES[li]
                        ));
                    }
                }
                self.inv.last_token[li] = Some(token.clone());
            }
            Event::EditRequested { op, lock, current } => {
                // S6: from now on the value this user sees must stay until its edit writes.
                // What the store did before is taken into account first (a delete then removed
                // an older edit's claim, not this one's).
                self.check_store_records()?;
                let li = lock_index(lock, &self.clients[c]);
                let now = self.client_now(c);
                let token = self.clients[c].link.engine().token(now, *lock).cloned();
                let seen = &mut self.inv.max_seen_token[li];
                if token.as_ref() > seen.as_ref() {
                    *seen = token;
                }
                let current = current.clone();
                if self.healing {
                    self.clients[c].awaiting_edits.push((*op, current));
                    let k = self.clients[c].awaiting_edits.len() - 1;
                    // Completing may emit more events: finish checking this one first.
                    self.check_op_event(c, &e)?;
                    return self.complete_edit(c, k);
                }
                self.clients[c].awaiting_edits.push((*op, current));
            }
            Event::EditDone {
                lock, outcome, op, ..
            } => {
                let li = lock_index(lock, &self.clients[c]);
                let write = self.clients[c].ops.get(op).and_then(|t| t.writing);
                match (outcome, write) {
                    (EditOutcome::Written, _) => self.inv.sets[li].ok += 1,
                    (EditOutcome::Deleted, _) => self.inv.deletes[li].ok += 1,
                    // An abort: the delete of its placeholder, if there was one, is not promised.
                    (_, Some(write)) => self.inv.tally(li, write).indeterminate += 1,
                    _ => {}
                }
            }
            Event::Failed {
                lock,
                error: OpError::Indeterminate,
                op,
            } => {
                let li = lock_index(lock, &self.clients[c]);
                if let Some(write) = self.clients[c].ops.get(op).and_then(|t| t.writing) {
                    self.inv.tally(li, write).indeterminate += 1;
                }
            }
            _ => {}
        }
        self.check_op_event(c, &e)
    }

    /// S3: the event belongs to a live operation of a kind that can have it; final events end it.
    pub(super) fn check_op_event(&mut self, c: usize, e: &Event) -> Check {
        let Some(op) = e.op() else {
            return Ok(());
        };
        let id = self.clients[c].id.clone();
        let Some(t) = self.clients[c].ops.get_mut(&op) else {
            return Err(format!(
                "S3: {id} got an event for unknown operation {op:?}: {e:?}"
            ));
        };
        if t.ended {
            return Err(format!(
                "S3: {id} got an event after the end of {op:?} ({:?})",
                t.kind
            ));
        }
        use OpKind::*;
        let final_event = match (t.kind, e) {
            (TryAcquire, Event::Acquired { .. } | Event::Busy { .. }) => true,
            (Acquire, Event::Acquired { .. }) => true,
            (Release, Event::Released { .. }) => true,
            (Holder, Event::Holder { .. }) => true,
            (Hold, Event::Acquired { .. } | Event::Renewed { .. } | Event::Lost { .. }) => false,
            (Hold, Event::HoldEnded { .. }) => true,
            (Keep, Event::Acquired { .. }) if t.lost => {
                return Err(format!(
                    "S3: {id}'s keep {op:?} won the lock again after its loss"
                ))
            }
            (Keep, Event::Lost { .. }) => {
                t.lost = true;
                false
            }
            (Keep, Event::Acquired { .. } | Event::Renewed { .. }) => false,
            (Keep, Event::Busy { .. } | Event::HoldEnded { .. }) => true,
            (Edit, Event::EditRequested { .. }) => false,
            (Edit, Event::EditDone { .. }) => true,
            (_, Event::Failed { .. }) => true,
            (kind, e) => {
                return Err(format!(
                    "S3: {id} got an event a {kind:?} cannot have for {op:?}: {e:?}"
                ))
            }
        };
        if final_event {
            t.ended = true;
            t.writing = None;
            let li = t.lock;
            let awaiting = &mut self.clients[c].awaiting_edits;
            awaiting.retain(|(o, _)| *o != op);
            // What the handoff watch saw was this operation's; the engine may go on with
            // another (a queued edit, behind the undo of this one's SET).
            self.handoff_reset(c, li);
        }
        Ok(())
    }

    /// S7: a fenced write to a counter (an edit's fence or its write) leaves client `c` only
    /// while the client holds the lock with that token, or, for an edit's write, while the lease
    /// it was released with right behind it still holds (checked as its bytes are written).
    pub(super) fn check_fenced_write_leaves(&self, c: usize, msg: &Message) -> Check {
        let request = store::parse_request(msg);
        let (Ok(command), Ok(Some(ft))) = (&request.command, &request.fencing_token) else {
            return Ok(());
        };
        let Some(li) = COUNTER_KEYS
            .iter()
            .position(|k| k.as_bytes() == &command.key()[..])
        else {
            return Ok(());
        };
        let client = &self.clients[c];
        let now = self.client_now(c);
        let held = client.link.engine().write_token(now, client.locks[li]);
        if held != Some(ft) {
            return Err(format!(
                "S7: {} writes {} while it holds {} with token {held:?}",
                client.id,
                describe(msg),
                LOCK_NAMES[li]
            ));
        }
        Ok(())
    }

    /// S7 (byte mode): every request client `c` writes, first sent or re-sent (DUP, on a resumed
    /// session), leaves only while its engine still waits for its answer: a request the engine
    /// gave up (its operation ended, it timed out, or it was in flight when the connection
    /// ended) must never reach the store, where a late copy could only do harm (checked as its
    /// bytes are written).
    pub(super) fn check_request_awaited(&self, c: usize, dup: bool, msg: &Message) -> Check {
        let client = &self.clients[c];
        let awaited = msg
            .correlation_data
            .as_ref()
            .is_some_and(|cd| client.link.engine().awaits(cd));
        if !awaited {
            let how = if dup { "re-sends (DUP)" } else { "writes" };
            return Err(format!(
                "S7: {} {how} {}, which its engine gave up",
                client.id,
                describe(msg)
            ));
        }
        Ok(())
    }

    /// S4 and S6 for one write to counter `li` the store applied: it carries a fencing token, not
    /// below the key's nor the last one accepted, nor below that of an edit that showed its user
    /// the value.
    fn check_fenced_write(&mut self, li: usize, r: &RequestRecord) -> Check {
        let Some(ft) = &r.fencing_token else {
            return Err(format!(
                "S4: the store accepted a write to {} without a fencing token",
                COUNTER_KEYS[li]
            ));
        };
        for floor in [&r.stored_token, &self.inv.max_write_token[li]]
            .into_iter()
            .flatten()
        {
            if ft < floor {
                return Err(format!(
                    "S4: the store accepted a write to {} with token {ft} below {floor}",
                    COUNTER_KEYS[li]
                ));
            }
        }
        if let Some(seen) = self.inv.max_seen_token[li].as_ref().filter(|s| ft < *s) {
            return Err(format!(
                "S6: the store accepted a write to {} with token {ft} after an edit with \
                 token {seen} showed its user the value",
                COUNTER_KEYS[li]
            ));
        }
        self.inv.max_write_token[li] = Some(ft.clone());
        Ok(())
    }

    /// S4's and S6's bookkeeping of one write to counter `li` the store carried out.
    fn record_counter_write(
        &mut self,
        li: usize,
        r: &RequestRecord,
        command: &store::Command,
    ) -> Check {
        // The writer no longer holds the lock at the store: the lock key is gone, or another
        // SET made it newer than the token (an edit does not renew).
        let lock_version = self.store.version(LOCK_NAMES[li].as_bytes());
        let writer_gone = r
            .fencing_token
            .as_ref()
            .is_some_and(|ft| lock_version != Some(ft.as_hlc()));
        let inv = &mut self.inv;
        let stale_on_deleted_key = r.stored_token.is_none()
            && r.fencing_token.is_some()
            && (writer_gone || r.fencing_token.as_ref() <= inv.removed_fence[li].as_ref());
        if r.applied {
            self.check_fenced_write(li, r)?;
        }
        let inv = &mut self.inv;
        let write = (command.clone(), r.fencing_token.clone());
        let copy = inv.writes[li].contains(&write);
        if !copy {
            inv.writes[li].push(write);
        }
        match command {
            store::Command::Set { value, options, .. } => {
                if stale_on_deleted_key {
                    // The documented hole: the counter now holds what the late write says.
                    inv.since_delete[li] = counter_value(value)?;
                } else if !is_fence(options) && !copy {
                    inv.since_delete[li] += 1;
                }
                if !is_fence(options) && !copy {
                    inv.sets[li].applied += 1;
                }
            }
            store::Command::Del { .. } => {
                // A copy counts once, but leaves the key absent all the same.
                if !copy {
                    inv.deletes[li].applied += 1;
                }
                inv.since_delete[li] = 0;
                if r.applied {
                    let removed = inv.max_write_token[li].take().max(r.fencing_token.clone());
                    if removed > inv.removed_fence[li] {
                        inv.removed_fence[li] = removed;
                    }
                    // What an edit showed its user is gone with the key.
                    inv.max_seen_token[li] = None;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// S4 and S6 for the writes to the counters the store carried out since the last look.
    fn check_store_records(&mut self) -> Check {
        for r in self.store.take_records() {
            let Some(command) = r.command.as_ref().filter(|_| r.applied || deleted(&r)) else {
                continue;
            };
            let key = command.key();
            let Some(li) = COUNTER_KEYS.iter().position(|k| k.as_bytes() == &key[..]) else {
                continue;
            };
            self.record_counter_write(li, &r, command)?;
        }
        Ok(())
    }

    /// The invariants that hold at every instant: S1, S4 and L3.
    /// L4: a client that has read a refused SUBACK on its connection has no operation left
    /// open: the subscription will not be granted on that connection, so nothing it waits for
    /// can come (an operation started later fails at once too).
    fn check_refusals(&self) -> Check {
        for client in &self.clients {
            let refused = client.refused.is_some_and(|(epoch, at)| {
                client.connected && epoch == client.epoch && client.link.bytes_read() >= at
            });
            if !refused {
                continue;
            }
            if let Some((op, t)) = client.ops.iter().find(|(_, t)| !t.ended) {
                return Err(format!(
                    "L4: operation {op:?} ({:?} on {}) of {} is still open after the broker refused its subscription",
                    t.kind, LOCK_NAMES[t.lock], client.id
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check(&mut self) -> Check {
        for (li, name) in LOCK_NAMES.iter().enumerate().take(self.cfg.n_locks) {
            let free = self.store.get(name.as_bytes()).is_none();
            self.note_lock_at_store(li, free);
        }
        self.check_handoff()?;
        self.check_refusals()?;
        // S1: at most one holder per lock at this real instant.
        for (li, name) in LOCK_NAMES.iter().enumerate().take(self.cfg.n_locks) {
            let mut holder: Option<usize> = None;
            for c in 0..self.clients.len() {
                let now = self.client_now(c);
                let client = &self.clients[c];
                if client.link.engine().is_held(now, client.locks[li]) {
                    if let Some(other) = holder {
                        return Err(format!(
                            "S1: {} and {} both hold {name} at t = {:.3} ms",
                            self.clients[other].id,
                            client.id,
                            self.t_ns as f64 / 1e6
                        ));
                    }
                    holder = Some(c);
                }
            }
        }
        self.check_store_records()?;
        for (li, key) in COUNTER_KEYS.iter().enumerate().take(self.cfg.n_locks) {
            let counter = self
                .store
                .get(key.as_bytes())
                .map_or(Ok(0), counter_value)?;
            let expected = self.inv.since_delete[li];
            if counter != expected {
                return Err(format!(
                    "S4: {key} = {counter}, but the store carried out {expected} sets since it last \
                     deleted it: an edit's write was lost"
                ));
            }
            for (write, tally) in [
                (Write::Set, self.inv.sets[li]),
                (Write::Delete, self.inv.deletes[li]),
            ] {
                let in_flight = self
                    .clients
                    .iter()
                    .flat_map(|c| c.ops.values())
                    .filter(|t| t.lock == li && t.writing == Some(write) && !t.ended)
                    .count() as u64;
                let upper = tally.ok + tally.indeterminate + in_flight;
                if tally.applied < tally.ok || tally.applied > upper {
                    return Err(format!(
                        "S4: the store carried out {} {write:?}s of {key}, but {} edits reported \
                         them done, {} indeterminate, {in_flight} in flight",
                        tally.applied, tally.ok, tally.indeterminate
                    ));
                }
            }
        }
        Ok(())
    }
}
