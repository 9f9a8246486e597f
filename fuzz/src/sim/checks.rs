//! The invariants checked after every step (S1–S4, S6; S5 is the absence of panics; S7 as each
//! request is written), and what they keep track of: every operation of every client, the tokens
//! announced, the writes accepted.

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
    /// An edit whose write the user asked for (it may be on the wire).
    pub writing: bool,
    /// A keep that reported its loss: it must end, never win the lock again.
    pub lost: bool,
}

/// What the invariants remember, per lock.
pub(crate) struct Invariants {
    last_token: Vec<Option<FencingToken>>,
    max_write_token: Vec<Option<FencingToken>>,
    /// The newest token of an edit that has shown a user the counter's value (S6).
    max_seen_token: Vec<Option<FencingToken>>,
    pub edits_ok: Vec<u64>,
    pub edits_indeterminate: Vec<u64>,
    pub acquisitions: u64,
}

impl Invariants {
    pub(crate) fn new() -> Invariants {
        Invariants {
            last_token: vec![None; LOCK_NAMES.len()],
            max_write_token: vec![None; LOCK_NAMES.len()],
            max_seen_token: vec![None; LOCK_NAMES.len()],
            edits_ok: vec![0; LOCK_NAMES.len()],
            edits_indeterminate: vec![0; LOCK_NAMES.len()],
            acquisitions: 0,
        }
    }
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
                lock,
                outcome: EditOutcome::Written,
                ..
            } => {
                let li = lock_index(lock, &self.clients[c]);
                self.inv.edits_ok[li] += 1;
            }
            Event::Failed {
                lock,
                error: OpError::Indeterminate,
                op,
            } => {
                let li = lock_index(lock, &self.clients[c]);
                if self.clients[c]
                    .ops
                    .get(op)
                    .is_some_and(|t| t.kind == OpKind::Edit)
                {
                    self.inv.edits_indeterminate[li] += 1;
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
            t.writing = false;
            let awaiting = &mut self.clients[c].awaiting_edits;
            awaiting.retain(|(o, _)| *o != op);
        }
        Ok(())
    }

    /// S7: a fenced write to a counter (an edit's fence or its write) leaves client `c` only
    /// while the client holds the lock with that token (checked as its bytes are written).
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
        let held = client.link.engine().token(now, client.locks[li]);
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

    /// S7 (byte mode): a request client `c` re-sends (DUP, on a resumed session) leaves only while
    /// its engine still waits for its answer: the engine gives up every request in flight when
    /// its connection ends, and a copy reaching the store then could only do harm (checked as its
    /// bytes are written).
    pub(super) fn check_resend_awaited(&self, c: usize, msg: &Message) -> Check {
        let client = &self.clients[c];
        let awaited = msg
            .correlation_data
            .as_ref()
            .is_some_and(|cd| client.link.engine().awaits(cd));
        if !awaited {
            return Err(format!(
                "S7: {} re-sends (DUP) {}, which its engine gave up",
                client.id,
                describe(msg)
            ));
        }
        Ok(())
    }

    /// The invariants that hold at every instant: S1, S4 and L3.
    pub(super) fn check(&mut self) -> Check {
        self.check_handoff()?;
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
        // S4: fenced writes to the counters, as the store accepted them.
        for r in self.store.take_records() {
            let Some(command) = r.command.as_ref().filter(|_| r.applied) else {
                continue;
            };
            let key = command.key();
            let Some(li) = COUNTER_KEYS.iter().position(|k| k.as_bytes() == &key[..]) else {
                continue;
            };
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
        }
        for (li, key) in COUNTER_KEYS.iter().enumerate().take(self.cfg.n_locks) {
            let counter = match self.store.get(key.as_bytes()) {
                None => 0,
                Some(v) if v == ABSENT_PLACEHOLDER => 0, // an edit's fence on an absent counter
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("S4: the counter holds {v:?}"))?,
            };
            let ok = self.inv.edits_ok[li];
            let writing: u64 = self
                .clients
                .iter()
                .flat_map(|c| c.ops.values())
                .filter(|t| t.lock == li && t.writing && !t.ended)
                .count() as u64;
            let upper = ok + self.inv.edits_indeterminate[li] + writing;
            if counter < ok || counter > upper {
                return Err(format!(
                    "S4: {key} = {counter}, but {ok} edits reported written, {} indeterminate, {writing} in flight",
                    self.inv.edits_indeterminate[li]
                ));
            }
        }
        Ok(())
    }
}
