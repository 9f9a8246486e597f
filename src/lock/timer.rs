//! A deadline queue with exact removal: O(log n) insert, cancel and earliest.

use std::collections::BTreeMap;
use std::time::Instant;

/// Identifies one scheduled deadline; used to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(Instant, u64);

impl TimerKey {
    pub(crate) fn at(&self) -> Instant {
        self.0
    }
}

/// Deadlines in order of time, then of scheduling.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    queue: BTreeMap<TimerKey, T>,
    seq: u64,
}

impl<T> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            queue: BTreeMap::new(),
            seq: 0,
        }
    }

    pub(crate) fn schedule(&mut self, at: Instant, what: T) -> TimerKey {
        self.seq += 1;
        let key = TimerKey(at, self.seq);
        self.queue.insert(key, what);
        key
    }

    pub(crate) fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.queue.remove(&key);
        }
    }

    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.queue.keys().next().map(TimerKey::at)
    }

    /// Removes and returns the earliest deadline that is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        let first = *self.queue.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.queue.remove(&first).map(|t| (first, t))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test is the driver
    fn pops_in_order_and_cancelled_ones_never_fire() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let a = timers.schedule(t0 + Duration::from_secs(2), "a");
        let _b = timers.schedule(t0 + Duration::from_secs(1), "b");
        let _c = timers.schedule(t0 + Duration::from_secs(1), "c");
        timers.cancel(Some(a));
        assert_eq!(timers.earliest(), Some(t0 + Duration::from_secs(1)));
        assert!(timers.pop_due(t0).is_none());
        let later = t0 + Duration::from_secs(5);
        let fired: Vec<_> = std::iter::from_fn(|| timers.pop_due(later).map(|(_, v)| v)).collect();
        assert_eq!(fired, vec!["b", "c"]);
        assert_eq!(timers.len(), 0);
    }
}
