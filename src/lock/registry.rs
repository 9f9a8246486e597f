//! The lock table: every lock the client knows, by id and by name. A lock that nothing needs any
//! more (no operation, lease, hold, observer, notification registration or release in flight)
//! is idle, and its slot is freed when a new name needs one: the table shrinks back to the locks
//! in use, and a stale id is told apart from the slot's next lock by its generation.

use super::lease::Lease;
use super::notify::Notify;
use super::slab::{Slab, SlabKey};
use super::{IntentError, OpId};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A named lock of one [`Client`](super::Client) (no I/O to create). An id stays valid while
/// its lock is in use (an operation, a lease, a hold or an observer), and after that until the
/// client names a new lock; [`Client::lock_id`](super::Client::lock_id) always gives the current
/// one, and a stale id is refused with [`IntentError::UnknownLock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockId(pub(crate) NonZeroU64);

impl SlabKey for LockId {
    fn from_raw(raw: u64) -> Self {
        LockId(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
    fn raw(self) -> u64 {
        self.0.get()
    }
}

/// FNV-1a of a lock name: deterministic, for [`LockTable::by_name`].
fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A few operation ids in the order they were added (their order of creation). A lock rarely
/// has more than one operation: one is kept inline, more in a boxed vector (16 bytes in all,
/// where an inline vector would make it 24: every lock has two sets).
#[derive(Debug, Default)]
pub(super) enum IdSet {
    #[default]
    Empty,
    One(OpId),
    #[expect(clippy::box_collection, reason = "the set's size, see above")]
    Many(Box<Vec<OpId>>),
}

impl IdSet {
    pub(super) fn as_slice(&self) -> &[OpId] {
        match self {
            IdSet::Empty => &[],
            IdSet::One(id) => std::slice::from_ref(id),
            IdSet::Many(ids) => ids,
        }
    }

    pub(super) fn insert(&mut self, id: OpId) {
        match self {
            IdSet::Empty => *self = IdSet::One(id),
            IdSet::One(first) if *first != id => *self = IdSet::Many(Box::new(vec![*first, id])),
            IdSet::Many(ids) if !ids.contains(&id) => ids.push(id),
            _ => {}
        }
    }

    /// Whether `id` was there.
    pub(super) fn remove(&mut self, id: &OpId) -> bool {
        match self {
            IdSet::One(first) if first == id => {
                *self = IdSet::Empty;
                true
            }
            IdSet::Many(ids) => match ids.iter().position(|x| x == id) {
                Some(at) => {
                    ids.remove(at);
                    if ids.len() <= 1 {
                        *self = ids.first().map_or(IdSet::Empty, |&only| IdSet::One(only));
                    }
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = OpId> + '_ {
        self.as_slice().iter().copied()
    }

    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// What the engine knows of one lock.
#[derive(Debug)]
pub(super) struct Lock {
    pub(super) name: Bytes,
    pub(super) lease: Option<Lease>,
    pub(super) hold: Option<OpId>,
    /// The edit that currently works on the lock, and those waiting behind it.
    pub(super) edit: Option<OpId>,
    /// Operations on this lock (all kinds).
    pub(super) ops: IdSet,
    /// Operations that need KEYNOTIFY on this lock.
    pub(super) watchers: IdSet,
    pub(super) observed: bool,
    pub(super) notify: Notify,
    /// Releases in progress: while any is, no SET is sent for the lock (a VDEL retried later
    /// must never delete a lease won after it).
    pub(super) releasing: u32,
    /// Bumped by every release: a SET sent before it cannot give a lease (the VDEL follows it).
    pub(super) epoch: u64,
    /// Whether our last acquisition of the lock had to wait for another holder.
    pub(super) contended: bool,
    /// The fairness hints, once the lock has been contended (boxed: most locks never are).
    fairness: Option<Box<Fairness>>,
    /// On the table's list of locks that may be idle.
    listed: bool,
}

/// Hints that spread this client's retries of a contended lock, and its place in the herd that
/// contends for it (see `Lock::next_in_turn`).
#[derive(Debug, Default)]
struct Fairness {
    /// After releasing a contended lock, this client's next waiting acquisition holds back until
    /// then, so that the waiters woken by the DELETE get a fair chance (the release's own next SET
    /// would otherwise always arrive first, right behind the VDEL).
    reacquire_after: Option<Instant>,
    /// Until then this client is part of a herd: one of its SETs right after a DELETE was
    /// refused, or a SET it held back was made needless by another client's. A waiter that is
    /// not retries at once after a DELETE (the handoff then costs no timer at all).
    herd_until: Option<Instant>,
    /// The holder (a hash of its value) whose turn comes right before this client's: the one
    /// it took the lock from last, or the one that beat it to the lock since.
    after: Option<u64>,
    /// The holder another client last took the lock as, told by a notification.
    last_holder: Option<u64>,
    /// A DELETE was told since `last_holder` took the lock.
    freed: bool,
    /// When the DELETE that left the lock free was told, until a SET is told.
    freed_at: Option<Instant>,
    /// How long the lock stays free from a DELETE to the next SET, as this client is told of
    /// them in a herd, smoothed (see `Lock::handoff`).
    handoff: Option<Duration>,
    /// This client's waiters sent their SET at once after the last DELETE.
    racing: bool,
    /// A SET of this client's sent right after a DELETE was refused before the winner was told:
    /// the next holder told is the one to follow.
    beaten: bool,
    /// The first other holder told since this client took its place (won, or followed a
    /// winner) or was last told that the holder it follows took the lock: told again before
    /// either, a whole round went by without that holder.
    first: Option<u64>,
}

/// How the lock changed, as a notification tells it.
pub(super) enum Change<'a> {
    /// Taken by this holder value.
    Taken(&'a [u8]),
    /// Freed.
    Freed,
}

impl Lock {
    /// Until when this client's next waiting acquisition holds back (see `Fairness`).
    pub(super) fn reacquire_after(&self) -> Option<Instant> {
        self.fairness.as_ref()?.reacquire_after
    }

    pub(super) fn set_reacquire_after(&mut self, at: Instant) {
        self.fairness.get_or_insert_default().reacquire_after = Some(at);
    }

    /// Whether this client is part of a herd at `now` (see `Fairness`).
    pub(super) fn in_herd(&self, now: Instant) -> bool {
        self.fairness
            .as_ref()
            .and_then(|f| f.herd_until)
            .is_some_and(|until| now < until)
    }

    pub(super) fn set_herd_until(&mut self, until: Instant) {
        self.fairness.get_or_insert_default().herd_until = Some(until);
    }

    /// Whether this client's waiters send their SET at once after the DELETE that has just been
    /// told, in a herd (see [`Lock::in_herd`]).
    ///
    /// A herd takes turns in a ring: each client follows one holder, the one it last took the
    /// lock from, and sends its SET right after that holder's DELETE; the others hold theirs
    /// back and drop them when told that the lock was taken. So a handoff costs one SET, not
    /// one per waiter, and each client gets one turn a round. A client that follows nobody yet
    /// (it has not raced in this herd) sends at once. A client beaten to the lock by a SET sent
    /// at the same DELETE follows the winner: newcomers and clients that followed the same
    /// holder queue up one behind the other, and the ring forms within one round. When the
    /// holder a client follows has left, nobody sends at once: the held-back SETs go out, the
    /// winner takes the free place, and the losers keep theirs. A client told that one holder
    /// took the lock twice, and the holder it follows not in between, follows nobody again:
    /// that holder no longer takes the lock (it left, or waits behind this client).
    pub(super) fn next_in_turn(&self) -> bool {
        self.fairness
            .as_ref()
            .is_none_or(|f| f.after.is_none() || f.after == f.last_holder)
    }

    /// Whether this client's waiters sent their SET at once after the DELETE just told.
    pub(super) fn set_racing(&mut self, racing: bool) {
        if let Some(f) = self.fairness.as_mut() {
            f.racing = racing;
        }
    }

    /// How long a handoff of this lock takes in a herd, as this client is told of it: from a
    /// DELETE to the next SET, smoothed (a longer one moves it halfway, a shorter one an eighth
    /// of the way). The more waiters a broker tells of each change, the later each is told, and
    /// a SET held back for less than this goes out before its sender can learn that it is
    /// needless (see `Client::held_back`). It errs on the long side: a SET sent too early is a
    /// refused request per waiter at every handoff, one held too long only costs time when
    /// nobody is next in turn.
    pub(super) fn handoff(&self) -> Option<Duration> {
        self.fairness.as_ref()?.handoff
    }

    /// A notification told at `now` that the lock changed (`own` is this client's holder value).
    pub(super) fn note_change(&mut self, now: Instant, change: Change<'_>, own: &[u8]) {
        let herd = self.in_herd(now);
        let Some(f) = self.fairness.as_mut() else {
            return;
        };
        if let (Change::Taken(_), Some(freed_at)) = (&change, f.freed_at.take()) {
            let took = now.saturating_duration_since(freed_at);
            if herd {
                f.handoff = Some(match f.handoff {
                    Some(h) if took < h => h - (h - took) / 8,
                    Some(h) => h + (took - h) / 2,
                    None => took,
                });
            }
        }
        match change {
            Change::Freed => {
                f.freed = true;
                f.freed_at.get_or_insert(now);
            }
            Change::Taken(holder) if holder != own => {
                let hash = name_hash(holder);
                if std::mem::take(&mut f.beaten) || f.after == Some(hash) {
                    f.after = Some(hash);
                    f.first = None;
                } else if f.first.is_none() {
                    f.first = Some(hash);
                } else if f.first == Some(hash) && f.after.is_some() {
                    // A round without the holder this client follows: it left, or waits behind
                    // this client. Send at once again until a place is found.
                    f.after = None;
                    f.first = None;
                }
                f.last_holder = Some(hash);
                f.freed = false;
                // Another client took the lock since this one released it: no hold-back is
                // needed any more (see `Client::stand_down`).
                f.reacquire_after = None;
            }
            Change::Taken(_) => {}
        }
    }

    /// A SET of this client's sent right after a DELETE was refused: another client won the
    /// race, which this one follows from now on.
    pub(super) fn beaten(&mut self) {
        let f = self.fairness.get_or_insert_default();
        if !std::mem::take(&mut f.racing) {
            return; // its SET was held back: its place stays
        }
        if f.freed {
            f.beaten = true; // the winner is not told yet
        } else {
            f.after = f.last_holder;
            f.first = None;
        }
    }

    /// This client took the lock after a wait: it follows the holder it took it from.
    pub(super) fn took_over(&mut self) {
        if let Some(f) = self.fairness.as_mut() {
            f.after = f.last_holder.take();
            f.beaten = false;
            f.racing = false;
            f.first = None;
        }
    }

    pub(super) fn notify_refs(&self) -> usize {
        self.watchers.len() + usize::from(self.observed)
    }

    /// Nothing needs the lock: its slot may go (the fairness hints go with it: they only spread
    /// retries).
    fn is_idle(&self) -> bool {
        self.ops.len() == 0
            && self.lease.is_none()
            && self.hold.is_none()
            && self.edit.is_none()
            && !self.observed
            && self.notify == Notify::Off
            && self.releasing == 0
    }
}

/// Every lock of the client; found by id or by name.
#[derive(Debug)]
pub(super) struct LockTable {
    locks: Slab<LockId, Lock>,
    /// Every lock by a hash of its name (the name itself is kept once, in the lock; names with
    /// the same hash are told apart by comparing them).
    by_name: BTreeSet<(u64, LockId)>,
    /// Locks that became idle since the last new name (some may be in use again).
    maybe_idle: Vec<LockId>,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable {
            locks: Slab::new(),
            by_name: BTreeSet::new(),
            maybe_idle: Vec::new(),
        }
    }
}

impl LockTable {
    /// The id of the lock called `name`, making an entry for it when it is new (after freeing
    /// the slots of idle locks).
    pub(super) fn id(&mut self, name: &[u8]) -> Result<LockId, IntentError> {
        if name.is_empty() {
            return Err(IntentError::EmptyKey);
        }
        if let Some(id) = self.find(name) {
            return Ok(id);
        }
        self.free_idle();
        let id = self.locks.insert(Lock {
            name: Bytes::copy_from_slice(name),
            lease: None,
            hold: None,
            edit: None,
            ops: IdSet::default(),
            watchers: IdSet::default(),
            observed: false,
            notify: Notify::Off,
            releasing: 0,
            epoch: 0,
            contended: false,
            fairness: None,
            listed: false,
        });
        self.by_name.insert((name_hash(name), id));
        Ok(id)
    }

    /// Notes that `lock` may have become idle (it is freed when a new name comes, if it still is).
    pub(super) fn may_be_idle(&mut self, lock: LockId) {
        if let Some(l) = self.locks.get_mut(&lock) {
            if !l.listed && l.is_idle() {
                l.listed = true;
                self.maybe_idle.push(lock);
            }
        }
    }

    fn free_idle(&mut self) {
        for id in std::mem::take(&mut self.maybe_idle) {
            let Some(l) = self.locks.get_mut(&id) else {
                continue;
            };
            l.listed = false;
            if l.is_idle() {
                let hash = name_hash(&l.name);
                self.by_name.remove(&(hash, id));
                self.locks.remove(&id);
            }
        }
    }

    /// The lock called `name`, if there is one.
    pub(super) fn find(&self, name: &[u8]) -> Option<LockId> {
        let hash = name_hash(name);
        let (lo, hi) = (LockId(NonZeroU64::MIN), LockId(NonZeroU64::MAX));
        self.by_name
            .range((hash, lo)..=(hash, hi))
            .map(|&(_, id)| id)
            .find(|id| self[*id].name.as_ref() == name)
    }

    pub(super) fn get(&self, lock: LockId) -> Result<&Lock, IntentError> {
        self.locks.get(&lock).ok_or(IntentError::UnknownLock)
    }

    pub(super) fn get_mut(&mut self, lock: LockId) -> Result<&mut Lock, IntentError> {
        self.locks.get_mut(&lock).ok_or(IntentError::UnknownLock)
    }

    /// How many locks the table has.
    pub(super) fn len(&self) -> usize {
        self.locks.len()
    }

    /// Every lock id, in slot order.
    pub(super) fn ids(&self) -> impl Iterator<Item = LockId> + '_ {
        self.locks.keys()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Lock> {
        self.locks.values_mut()
    }
}

/// Only ids of live locks are used to index it (stale ids go through [`LockTable::get`]).
impl std::ops::Index<LockId> for LockTable {
    type Output = Lock;
    fn index(&self, lock: LockId) -> &Lock {
        &self.locks[&lock]
    }
}

impl std::ops::IndexMut<LockId> for LockTable {
    fn index_mut(&mut self, lock: LockId) -> &mut Lock {
        self.locks.get_mut(&lock).expect("a live lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_always_finds_its_own_lock() {
        let mut table = LockTable::default();
        let names: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("lock-{i}").into_bytes())
            .chain([b"a".to_vec(), b"b".to_vec(), b"ab".to_vec(), b"ba".to_vec()])
            .collect();
        let ids: Vec<LockId> = names.iter().map(|n| table.id(n).unwrap()).collect();
        let distinct: BTreeSet<LockId> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), names.len());
        for (name, id) in names.iter().zip(&ids) {
            assert_eq!(table.id(name).unwrap(), *id);
            assert_eq!(table.find(name), Some(*id));
            assert_eq!(&table[*id].name[..], &name[..]);
        }
        assert_eq!(table.find(b"lock-3000"), None);
        assert_eq!(table.id(b""), Err(IntentError::EmptyKey));
    }

    #[test]
    fn an_idle_lock_gives_its_slot_to_the_next_new_name_and_its_id_goes_stale() {
        let mut table = LockTable::default();
        let busy = table.id(b"busy").unwrap();
        table[busy].observed = true;
        let idle = table.id(b"idle").unwrap();
        table.may_be_idle(busy);
        table.may_be_idle(idle);
        assert_eq!(table.len(), 2, "nothing freed before a new name");
        assert_eq!(table.id(b"idle").unwrap(), idle, "an old name keeps its id");
        let next = table.id(b"next").unwrap();
        assert_eq!(table.len(), 2, "the idle lock's slot went to the new name");
        assert_eq!(table.find(b"idle"), None);
        assert_eq!(
            table.get(idle).err(),
            Some(IntentError::UnknownLock),
            "stale"
        );
        assert_eq!(table.find(b"busy"), Some(busy), "in use: kept");
        assert_eq!(&table[next].name[..], b"next");
        assert_ne!(table.id(b"idle").unwrap(), idle, "named again: a new id");
    }
}
