//! Storage for live operations and requests: O(1) insert, lookup and removal by a key that names
//! a slot and its generation, so that the key of an entry that is gone never finds a later one.

use std::marker::PhantomData;

/// Appends `value`, growing `vec` by an eighth (at least 4 elements) when it is full: a `Vec`
/// that doubles may leave half its memory unused, this one at most an eighth, and still grows
/// in amortized constant time.
pub(crate) fn push_tight<T>(vec: &mut Vec<T>, value: T) {
    if vec.len() == vec.capacity() {
        vec.reserve_exact((vec.len() / 8).max(4));
    }
    vec.push(value);
}

/// A key of a [`Slab`]: a slot index (low 32 bits) and the slot's generation (high 32 bits).
/// Generations start at 1 and skip 0, so a key is never 0 (keys fit in a `NonZeroU64`, and an
/// `Option` of one costs nothing).
pub(crate) trait SlabKey: Copy {
    fn from_raw(raw: u64) -> Self;
    fn raw(self) -> u64;
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values in reusable slots. Iteration follows the slots (deterministic, not insertion order).
pub(crate) struct Slab<K, T> {
    entries: Vec<Entry<T>>,
    /// Free slots, the most recently freed last (reused first: it is warm in the cache).
    free: Vec<u32>,
    len: usize,
    /// The generation that slots created after the last [`Slab::shrink_if_empty`] start with.
    base_generation: u32,
    key: PhantomData<K>,
}

impl<K, T: std::fmt::Debug> std::fmt::Debug for Slab<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().filter_map(|e| e.value.as_ref()))
            .finish()
    }
}

impl<K: SlabKey, T> Slab<K, T> {
    pub(crate) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            base_generation: 1,
            key: PhantomData,
        }
    }

    /// The key the next [`Slab::insert`] returns.
    pub(crate) fn next_key(&self) -> K {
        let raw = match self.free.last() {
            Some(&slot) => key(slot, self.entries[slot as usize].generation),
            None => key(self.entries.len() as u32, self.base_generation),
        };
        K::from_raw(raw)
    }

    pub(crate) fn insert(&mut self, value: T) -> K {
        let k = self.next_key();
        match self.free.pop() {
            Some(slot) => self.entries[slot as usize].value = Some(value),
            None => push_tight(
                &mut self.entries,
                Entry {
                    generation: self.base_generation,
                    value: Some(value),
                },
            ),
        }
        self.len += 1;
        k
    }

    fn entry(&self, k: K) -> Option<&Entry<T>> {
        let (slot, generation) = split(k.raw());
        self.entries
            .get(slot as usize)
            .filter(|e| e.generation == generation)
    }

    pub(crate) fn get(&self, k: &K) -> Option<&T> {
        self.entry(*k)?.value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut T> {
        let (slot, generation) = split(k.raw());
        self.entries
            .get_mut(slot as usize)
            .filter(|e| e.generation == generation)?
            .value
            .as_mut()
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<T> {
        let (slot, generation) = split(k.raw());
        let e = self
            .entries
            .get_mut(slot as usize)
            .filter(|e| e.generation == generation)?;
        let value = e.value.take()?;
        e.generation = next_generation(e.generation);
        self.free.push(slot);
        self.len -= 1;
        self.shrink_if_empty();
        Some(value)
    }

    /// Gives the memory of a burst back once nothing is stored. Keys handed out before stay
    /// dead: new slots start past every generation used so far.
    fn shrink_if_empty(&mut self) {
        if self.len == 0 && self.entries.len() > 64 {
            let newest = self.entries.iter().map(|e| e.generation).max();
            self.base_generation = next_generation(newest.unwrap_or(0));
            self.entries = Vec::new();
            self.free = Vec::new();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The keys in slot order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(slot, e)| K::from_raw(key(slot as u32, e.generation)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.entries.iter_mut().filter_map(|e| e.value.as_mut())
    }
}

impl<K: SlabKey, T> std::ops::Index<&K> for Slab<K, T> {
    type Output = T;

    /// Panics when the key is dead: only for keys known to be live.
    fn index(&self, k: &K) -> &T {
        self.get(k).expect("a live slab key")
    }
}

/// The generation after `g`, never 0.
fn next_generation(g: u32) -> u32 {
    g.checked_add(1).unwrap_or(1)
}

fn key(slot: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

fn split(raw: u64) -> (u32, u32) {
    (raw as u32, (raw >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct K(u64);

    impl SlabKey for K {
        fn from_raw(raw: u64) -> Self {
            K(raw)
        }
        fn raw(self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_dead_key_never_finds_a_later_value() {
        let mut s: Slab<K, &str> = Slab::new();
        let a = s.insert("a");
        assert_eq!(s.next_key(), K((1 << 32) | 1));
        let b = s.insert("b");
        assert_eq!((s.get(&a), s.get(&b), s.len()), (Some(&"a"), Some(&"b"), 2));
        assert_eq!(s.remove(&a), Some("a"));
        assert_eq!(s.remove(&a), None);
        let c = s.insert("c"); // reuses a's slot, with the next generation
        assert_ne!(c, a);
        assert_eq!((s.get(&a), s.get(&c)), (None, Some(&"c")));
        assert_eq!(s.keys().collect::<Vec<_>>(), vec![c, b]);
        assert_eq!(
            s.values_mut().map(|v| *v).collect::<Vec<_>>(),
            vec!["c", "b"]
        );
    }

    #[test]
    fn shrinks_after_a_burst_and_old_keys_stay_dead() {
        let mut s: Slab<K, u32> = Slab::new();
        let keys: Vec<K> = (0..1000).map(|i| s.insert(i)).collect();
        for k in &keys {
            s.remove(k);
        }
        assert_eq!(s.len(), 0);
        assert_eq!(s.entries.capacity(), 0);
        let fresh = s.insert(7);
        assert!(keys.iter().all(|k| s.get(k).is_none()));
        assert_eq!(s[&fresh], 7);
    }
}
