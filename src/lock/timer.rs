//! A deadline queue with exact removal: an indexed binary heap. O(log n) insert, cancel and
//! pop, O(1) earliest; no allocation per deadline once the queue has grown to its working size.
//! A deadline takes 48 bytes (its entry and its place in the heap): every hold has two.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use super::slab::{Slab, SlabKey};

/// Identifies one scheduled deadline; used to cancel it. A key whose deadline has fired or been
/// cancelled never cancels a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(NonZeroU64);

impl SlabKey for TimerKey {
    fn from_raw(raw: u64) -> Self {
        // Slab keys are never 0; MAX names no slot that can exist.
        TimerKey(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
    fn raw(self) -> u64 {
        self.0.get()
    }
}

/// A scheduled deadline: its payload and where it sits in the heap.
#[derive(Debug)]
struct Entry<T> {
    what: T,
    /// The deadline, in nanoseconds after the queue's origin (8 bytes, where an `Instant` takes
    /// 16; 584 years of range).
    at: u64,
    /// Order of scheduling: equal deadlines fire in the order they were set (wrapping after
    /// 2^32 deadlines, which only reorders deadlines due at the same nanosecond).
    seq: u32,
    /// Index in `heap`.
    pos: u32,
}

/// Deadlines in order of time, then of scheduling.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    /// No deadline is earlier: deadlines are counted from it. One before it (a caller whose
    /// clock went back before the queue was made) counts as due at the origin.
    origin: Instant,
    entries: Slab<TimerKey, Entry<T>>,
    /// A binary min-heap of keys, ordered by (`at`, `seq`) of their entries.
    heap: Vec<TimerKey>,
    seq: u32,
}

impl<T> Timers<T> {
    /// An empty queue for deadlines from `origin` on.
    pub(crate) fn new(origin: Instant) -> Self {
        Timers {
            origin,
            entries: Slab::new(),
            heap: Vec::new(),
            seq: 0,
        }
    }

    /// `at` as nanoseconds after the origin (saturating both ways).
    fn offset(&self, at: Instant) -> u64 {
        let after = at.saturating_duration_since(self.origin);
        u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn schedule(&mut self, at: Instant, what: T) -> TimerKey {
        self.seq = self.seq.wrapping_add(1);
        let pos = self.heap.len() as u32; // fewer deadlines than slab slots, which are u32
        let key = self.entries.insert(Entry {
            what,
            at: self.offset(at),
            seq: self.seq,
            pos,
        });
        self.heap.push(key);
        self.sift_up(pos as usize);
        key
    }

    pub(crate) fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.remove(key);
        }
    }

    pub(crate) fn earliest(&self) -> Option<Instant> {
        let first = self.heap.first()?;
        let after = Duration::from_nanos(self.entries[first].at);
        Some(crate::time::later(self.origin, after))
    }

    /// Removes and returns the earliest deadline that is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        let first = *self.heap.first()?;
        if self.entries[&first].at > self.offset(now) {
            return None;
        }
        self.remove(first).map(|what| (first, what))
    }

    fn remove(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.remove(&key)?;
        let (hole, last) = (entry.pos as usize, self.heap.len() - 1);
        self.heap.swap(hole, last);
        self.heap.pop();
        if hole < self.heap.len() {
            self.set_pos(hole);
            // The entry moved into the hole may belong above or below it.
            let pos = self.sift_up(hole);
            self.sift_down(pos);
        }
        if self.heap.is_empty() && self.heap.capacity() > 1024 {
            self.heap = Vec::new(); // a burst is over: give its memory back
        }
        Some(entry.what)
    }

    fn order(&self, pos: usize) -> (u64, u32) {
        let e = &self.entries[&self.heap[pos]];
        (e.at, e.seq)
    }

    fn set_pos(&mut self, pos: usize) {
        let key = self.heap[pos];
        if let Some(e) = self.entries.get_mut(&key) {
            e.pos = pos as u32;
        }
    }

    /// Moves the key at `pos` up while it is earlier than its parent; returns where it ends.
    fn sift_up(&mut self, mut pos: usize) -> usize {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.order(pos) >= self.order(parent) {
                break;
            }
            self.heap.swap(pos, parent);
            self.set_pos(pos);
            pos = parent;
        }
        self.set_pos(pos);
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (left, right) = (2 * pos + 1, 2 * pos + 2);
            let mut smallest = pos;
            if left < self.heap.len() && self.order(left) < self.order(smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.order(right) < self.order(smallest) {
                smallest = right;
            }
            if smallest == pos {
                break;
            }
            self.heap.swap(pos, smallest);
            self.set_pos(pos);
            pos = smallest;
        }
        self.set_pos(pos);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::rng::SplitMix64;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test is the driver
    fn pops_in_order_and_cancelled_ones_never_fire() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let a = timers.schedule(t0 + Duration::from_secs(2), "a");
        let _b = timers.schedule(t0 + Duration::from_secs(1), "b");
        let _c = timers.schedule(t0 + Duration::from_secs(1), "c");
        timers.cancel(Some(a));
        timers.cancel(Some(a)); // a dead key cancels nothing
        assert_eq!(timers.earliest(), Some(t0 + Duration::from_secs(1)));
        assert!(timers.pop_due(t0).is_none());
        let later = t0 + Duration::from_secs(5);
        let fired: Vec<_> = std::iter::from_fn(|| timers.pop_due(later).map(|(_, v)| v)).collect();
        assert_eq!(fired, vec!["b", "c"]);
        assert_eq!(timers.len(), 0);
    }

    /// A deadline before the origin (a clock that went back) is due at once; one past
    /// `u64::MAX` nanoseconds after it stays in the queue, the latest of all.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test is the driver
    fn deadlines_outside_the_range_are_clamped_to_it() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut timers = Timers::new(t0);
        let _far = timers.schedule(t0 + Duration::from_secs(600 * 365 * 24 * 3600), "far");
        let _past = timers.schedule(t0 - Duration::from_secs(1), "past");
        assert_eq!(timers.earliest(), Some(t0));
        assert_eq!(timers.pop_due(t0).map(|(_, v)| v), Some("past"));
        assert!(timers
            .earliest()
            .is_some_and(|at| at > t0 + Duration::from_secs(500 * 365 * 24 * 3600)));
        assert!(timers
            .pop_due(t0 + Duration::from_secs(400 * 365 * 24 * 3600))
            .is_none());
    }

    /// Random schedules and cancels against a B-tree model: the same deadlines fire, in the same
    /// order, and cancelled ones never do.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test is the driver
    fn agrees_with_an_ordered_map() {
        let t0 = Instant::now();
        let mut rng = SplitMix64::new(7);
        let mut timers = Timers::new(t0);
        let mut model: BTreeMap<(Instant, u64), u64> = BTreeMap::new();
        let mut live: Vec<(TimerKey, (Instant, u64))> = Vec::new();
        let mut now = t0;
        for step in 0..20_000u64 {
            match rng.next_u64() % 4 {
                0 | 1 => {
                    let at = now + Duration::from_millis(rng.next_u64() % 50);
                    let key = timers.schedule(at, step);
                    model.insert((at, step), step);
                    live.push((key, (at, step)));
                }
                2 if !live.is_empty() => {
                    let i = (rng.next_u64() % live.len() as u64) as usize;
                    let (key, id) = live.swap_remove(i);
                    timers.cancel(Some(key));
                    model.remove(&id);
                }
                _ => {
                    now += Duration::from_millis(rng.next_u64() % 5);
                    while let Some((key, what)) = timers.pop_due(now) {
                        let (&id, &expected) = model.iter().next().expect("the model has it");
                        assert!(id.0 <= now);
                        assert_eq!(what, expected);
                        model.remove(&id);
                        live.retain(|(k, _)| *k != key);
                    }
                    assert!(model.keys().next().is_none_or(|(at, _)| *at > now));
                }
            }
            assert_eq!(timers.earliest(), model.keys().next().map(|(at, _)| *at));
            assert_eq!(timers.len(), model.len());
        }
    }
}
