//! The actor's table of live operations: a value per engine operation, in a vector indexed by
//! [`OpId::index`]. The engine keeps those indexes dense (an ended operation's index goes to a
//! later one), so the table costs a slot per operation alive at once, with no tree nodes: it is
//! the one table every hold has an entry in.

use leasedlock::lock::OpId;

/// Values by operation id.
pub(crate) struct OpTable<T> {
    /// At `op.index()`: an operation and its value.
    slots: Vec<Option<(OpId, T)>>,
    /// Operations whose index was given to a later one while they still had a value: one that
    /// ended in the engine, whose final event waits to be routed, when an intent in the same
    /// call starts the next (a hold's close ends the hold and starts the release). Rare, short.
    displaced: Vec<(OpId, T)>,
    len: usize,
}

impl<T> Default for OpTable<T> {
    fn default() -> Self {
        OpTable {
            slots: Vec::new(),
            displaced: Vec::new(),
            len: 0,
        }
    }
}

impl<T> OpTable<T> {
    /// Keeps `value` for `op` (which has no value yet).
    pub(crate) fn insert(&mut self, op: OpId, value: T) {
        let at = op.index();
        if at >= self.slots.len() {
            // Grow by an eighth at least, not by doubling: at a hundred thousand holds, a
            // doubled table would leave megabytes unused.
            let want = (at + 1).max(self.slots.len() + self.slots.len() / 8);
            self.slots.reserve_exact(want - self.slots.len());
            self.slots.resize_with(want, || None);
        }
        if let Some(earlier) = self.slots[at].replace((op, value)) {
            self.displaced.push(earlier);
        }
        self.len += 1;
    }

    /// The value of `op`.
    pub(crate) fn get_mut(&mut self, op: &OpId) -> Option<&mut T> {
        match self.slots.get_mut(op.index()) {
            Some(Some((id, value))) if id == op => Some(value),
            _ => self
                .displaced
                .iter_mut()
                .find_map(|(id, value)| (id == op).then_some(value)),
        }
    }

    /// Whether `op` has a value.
    pub(crate) fn contains_key(&self, op: &OpId) -> bool {
        matches!(self.slots.get(op.index()), Some(Some((id, _))) if id == op)
            || self.displaced.iter().any(|(id, _)| id == op)
    }

    /// Takes the value of `op` out; the memory of a burst goes back once the table is empty.
    pub(crate) fn remove(&mut self, op: &OpId) -> Option<T> {
        let value = match self.slots.get_mut(op.index()) {
            Some(slot) if slot.as_ref().is_some_and(|(id, _)| id == op) => slot.take()?.1,
            _ => {
                let at = self.displaced.iter().position(|(id, _)| id == op)?;
                self.displaced.swap_remove(at).1
            }
        };
        self.len -= 1;
        if self.len == 0 {
            self.slots = Vec::new();
            self.displaced = Vec::new();
        }
        Some(value)
    }

    /// How many operations have a value.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no operation has a value.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock::lock::{Client, Config, Options};

    #[test]
    fn a_value_is_found_by_its_operation_only_and_the_table_empties() {
        let now = crate::clock::now();
        let mut engine = Client::new(Config::new("t"), now, 1).unwrap();
        let lock = engine.lock_id("L").unwrap();
        let first = engine.holder(now, lock, Options::default()).unwrap();
        let second = engine.holder(now, lock, Options::default()).unwrap();
        let mut table = OpTable::default();
        table.insert(first, "first");
        table.insert(second, "second");
        assert_eq!(table.len(), 2);
        assert_eq!(table.get_mut(&second), Some(&mut "second"));
        // The engine ends `first` and gives its index to `third` before the actor has taken
        // `first` out (its final event not yet routed): both are found, each by its own id.
        engine.cancel(now, first).unwrap();
        let third = engine.holder(now, lock, Options::default()).unwrap();
        assert_eq!(third.index(), first.index());
        assert_eq!(table.get_mut(&third), None);
        table.insert(third, "third");
        assert_eq!(table.len(), 3);
        assert_eq!(table.get_mut(&first), Some(&mut "first"));
        assert_eq!(table.get_mut(&third), Some(&mut "third"));
        assert_eq!(table.remove(&first), Some("first"));
        assert!(!table.contains_key(&first));
        assert_eq!(table.remove(&first), None);
        assert!(table.contains_key(&third));
        assert_eq!(table.remove(&second), Some("second"));
        assert_eq!(table.remove(&third), Some("third"));
        assert!(table.is_empty());
        assert_eq!(
            table.slots.capacity(),
            0,
            "an empty table gives its memory back"
        );
    }
}
