//! The route of one operation from the actor to its handle: a small shared slot instead of a
//! channel.
//!
//! A slot is one allocation: a queue whose first item is stored inline (most operations have
//! exactly one event, so nothing more is allocated), whether the actor has let go of it, the
//! waker of the handle's task and, for a hold, its current lease. The actor pushes and wakes; the
//! handle polls. When the actor's side ([`Sink`]) is dropped — the operation ended, or the actor
//! itself is gone because the driver stopped — the slot is closed and the handle woken: once the
//! queue is drained the handle reads the end.
//!
//! A hold's renewals are coalesced: the queue holds at most one pending renewal marker, which
//! stands for the slot's current lease; a newer renewal replaces the lease and leaves the marker
//! where it is. Every other event (`Lost`, `Acquired`, the final one) is queued in order; before
//! one of them changes the lease, a pending marker gets its own copy of the lease it stands for.
//! A hold nobody reads while it loses and wins its lock again and again stays bounded too: once
//! [`HOLD_BACKLOG`] events wait, a new acquisition drops what came after the oldest unread loss,
//! so the reader is told that the lease was lost, then where the hold stands now.

use crate::handle::Lease;
use leasedlock::lock::{Event, IntentError, LockId, OpId};
use leasedlock::FencingToken;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// What the handle of an operation reads from its slot.
#[derive(Debug)]
pub(crate) enum Item {
    /// An event of the operation.
    Event(Event),
    /// The engine refused the intent at once: the first and only item.
    Refused(IntentError),
    /// A hold renewed its lease (the latest renewal when several came before the handle read).
    Renewed(Lease),
}

/// An item as the slot keeps it: a renewal marker carries no lease while it stands for the
/// current one. The payloads are boxed: a hold nobody reads keeps a renewal marker queued for
/// good, and an unboxed entry would cost every slot the size of the largest event.
#[derive(Debug)]
enum Entry {
    Event(Box<Event>),
    Refused(Box<IntentError>),
    /// `None`: the slot's current lease.
    Renewed(Option<Box<Lease>>),
}

/// The shared state of one operation.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Set for holds: renewals are coalesced and the lease is kept.
    hold: bool,
    /// The lease this operation won is gone (the store reported it taken or deleted, it
    /// expired, or it was released): every [`Lease`] of it reads invalid.
    revoked: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The oldest queued item; `None` only when the queue is empty.
    head: Option<Entry>,
    /// The items after `head`, while there are any (boxed: most slots never have a second item,
    /// and a `VecDeque` takes 32 bytes even empty).
    #[expect(clippy::box_collection, reason = "the slot's size, see above")]
    rest: Option<Box<VecDeque<Entry>>>,
    /// The actor has let go: nothing more will be pushed.
    closed: bool,
    /// The task of the handle, while it waits on an empty queue.
    waker: Option<Waker>,
    /// The engine's id of the operation, once started.
    op: Option<OpId>,
    /// A hold's current lease.
    lease: Option<Lease>,
}

impl State {
    fn push(&mut self, item: Entry) {
        if self.head.is_none() {
            self.head = Some(item);
        } else {
            self.rest.get_or_insert_default().push_back(item);
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let item = self.head.take()?;
        if let Some(rest) = &mut self.rest {
            self.head = rest.pop_front();
            if rest.is_empty() {
                self.rest = None;
            }
        }
        Some(item)
    }

    fn back_mut(&mut self) -> Option<&mut Entry> {
        match self.rest.as_mut().and_then(|rest| rest.back_mut()) {
            Some(item) => Some(item),
            None => self.head.as_mut(),
        }
    }

    /// The items after `head`.
    fn rest(&self) -> impl Iterator<Item = &Entry> {
        self.rest.iter().flat_map(|rest| rest.iter())
    }

    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    /// Forgets what came after the oldest unread loss, when there is one: a hold's reader that
    /// has fallen far behind is told the loss and then the latest acquisition only.
    fn collapse_after_first_loss(&mut self) {
        let is_loss =
            |entry: &Entry| matches!(entry, Entry::Event(e) if matches!(**e, Event::Lost { .. }));
        if self.head.as_ref().is_some_and(is_loss) {
            self.rest = None;
        } else if let Some(rest) = &mut self.rest {
            if let Some(at) = rest.iter().position(is_loss) {
                rest.truncate(at + 1);
            }
        }
    }
}

/// Unread events of a hold beyond which a new acquisition collapses the ones since the oldest
/// unread loss.
const HOLD_BACKLOG: usize = 32;

impl Slot {
    /// A new, empty slot; `hold` for the operation of a hold.
    pub(crate) fn new(hold: bool) -> Arc<Slot> {
        Arc::new(Slot {
            hold,
            revoked: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        })
    }

    /// The lease won by this operation is gone.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether [`Slot::revoke`] was called.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// The lease this slot's `try_acquire`/`acquire` won, when its win is queued unread: the
    /// handle is gone without seeing it.
    pub(crate) fn unread_win(&self) -> Option<(LockId, FencingToken)> {
        let state = self.state();
        let mut queued = state.head.iter().chain(state.rest());
        queued.find_map(|entry| match entry {
            Entry::Event(event) => match &**event {
                Event::Acquired {
                    lock,
                    token,
                    hold: false,
                    ..
                } => Some((*lock, token.clone())),
                _ => None,
            },
            _ => None,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine's id of the operation, once the actor has started it.
    pub(crate) fn op(&self) -> Option<OpId> {
        self.state().op
    }

    /// A hold's current lease (`None` while it is lost, or once it ended).
    pub(crate) fn lease(&self) -> Option<Lease> {
        self.state().lease.clone()
    }

    /// How many items are queued, unread.
    pub(crate) fn queued(&self) -> usize {
        self.state().len()
    }

    /// The next item; `Ready(None)` once the queue is drained and the actor has let go.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut state = self.state();
        while let Some(item) = state.pop() {
            return Poll::Ready(Some(match item {
                Entry::Event(event) => Item::Event(*event),
                Entry::Refused(error) => Item::Refused(*error),
                Entry::Renewed(Some(lease)) => Item::Renewed(*lease),
                Entry::Renewed(None) => match state.lease.clone() {
                    Some(lease) => Item::Renewed(lease),
                    // Not reached: a marker gets its own lease before the lease changes.
                    None => continue,
                },
            }));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Wakes the handle's task, if it waits, once `state` is unlocked.
    fn wake(mut state: MutexGuard<'_, State>) {
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The actor's side of a slot. Dropping it closes the slot and wakes the handle.
#[derive(Debug)]
pub(crate) struct Sink(Arc<Slot>);

impl Sink {
    /// The actor's side of `slot`.
    pub(crate) fn new(slot: Arc<Slot>) -> Sink {
        Sink(slot)
    }

    /// The slot, for revoking the lease its operation won after the operation has ended.
    pub(crate) fn slot(&self) -> Weak<Slot> {
        Arc::downgrade(&self.0)
    }

    /// Until when the hold's current lease may be used (`None` for other operations, and while
    /// the hold has no lease): until [`Sink::deliver`] replaces it, the lease a new event follows.
    pub(crate) fn lease_valid_until(&self) -> Option<Instant> {
        self.0.state().lease.as_ref().map(|lease| lease.valid_until)
    }

    /// The engine started the operation as `op`.
    pub(crate) fn started(&self, op: OpId) {
        self.0.state().op = Some(op);
    }

    /// The engine refused the intent.
    pub(crate) fn refuse(&self, error: IntentError) {
        let mut state = self.0.state();
        state.push(Entry::Refused(Box::new(error)));
        Slot::wake(state);
    }

    /// An event of the operation. A hold's lease follows its events; its renewals are coalesced
    /// (see the module documentation).
    pub(crate) fn deliver(&self, event: Event) {
        let mut state = self.0.state();
        if !self.0.hold {
            state.push(Entry::Event(Box::new(event)));
            return Slot::wake(state);
        }
        match event {
            Event::Renewed {
                token, valid_until, ..
            } => {
                state.lease = Some(Lease::new(token, valid_until));
                if !matches!(state.back_mut(), Some(Entry::Renewed(None))) {
                    state.push(Entry::Renewed(None));
                }
            }
            event => {
                // The lease changes: a pending marker keeps the lease it stands for.
                let previous = state.lease.take();
                if let Some(Entry::Renewed(marker @ None)) = state.back_mut() {
                    *marker = previous.map(Box::new);
                }
                if let Event::Acquired {
                    token, valid_until, ..
                } = &event
                {
                    state.lease = Some(Lease::new(token.clone(), *valid_until));
                    if state.len() >= HOLD_BACKLOG {
                        state.collapse_after_first_loss();
                    }
                }
                state.push(Entry::Event(Box::new(event)));
            }
        }
        Slot::wake(state);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.closed = true;
        Slot::wake(state);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use leasedlock::hlc::Hlc;
    use leasedlock::lock::{LockId, LossReason, Options};
    use leasedlock::FencingToken;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::{Duration, Instant};

    /// Counts its wake-ups.
    #[derive(Default)]
    pub(crate) struct CountingWaker(pub(crate) AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ids of a real engine (their constructors are private to the core).
    pub(crate) fn ids() -> (OpId, LockId) {
        let now = crate::clock::now();
        let mut c =
            leasedlock::lock::Client::new(leasedlock::lock::Config::new("t"), now, 1).unwrap();
        let lock = c.lock_id("L").unwrap();
        let op = c.holder(now, lock, Options::default()).unwrap();
        (op, lock)
    }

    fn token(n: u64) -> FencingToken {
        FencingToken::new(Hlc::new(1_000, n, "store".to_owned()))
    }

    struct Events {
        op: OpId,
        lock: LockId,
        at: Instant,
    }

    impl Events {
        fn new() -> Events {
            let (op, lock) = ids();
            Events {
                op,
                lock,
                at: crate::clock::now().instant,
            }
        }
        fn valid_until(&self, n: u64) -> Instant {
            self.at + Duration::from_secs(n)
        }
        fn renewed(&self, n: u64) -> Event {
            Event::Renewed {
                op: self.op,
                lock: self.lock,
                token: token(n),
                valid_until: self.valid_until(n),
            }
        }
        fn acquired(&self, n: u64) -> Event {
            Event::Acquired {
                op: self.op,
                lock: self.lock,
                token: token(n),
                valid_until: self.valid_until(n),
                hold: true,
            }
        }
        fn lost(&self) -> Event {
            Event::Lost {
                op: self.op,
                lock: self.lock,
                reason: LossReason::TakenAway,
            }
        }
        fn lease(&self, n: u64) -> Lease {
            Lease::new(token(n), self.valid_until(n))
        }
    }

    /// What a slow reader reads: everything queued, then `Pending` (or `None` once closed).
    fn drain(slot: &Slot) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = slot.poll_next(&mut cx) {
            out.push(match item {
                Item::Event(Event::Acquired { token, .. }) => format!("acquired {token}"),
                Item::Event(Event::Lost { .. }) => "lost".to_owned(),
                Item::Event(other) => format!("{other:?}"),
                Item::Renewed(lease) => format!("renewed {}", lease.token),
                Item::Refused(e) => format!("refused {e}"),
            });
        }
        out
    }

    #[test]
    fn renewals_of_an_unread_hold_are_coalesced_into_one_marker() {
        let e = Events::new();
        let slot = Slot::new(true);
        let sink = Sink::new(slot.clone());
        sink.deliver(e.acquired(1));
        assert_eq!(drain(&slot), [format!("acquired {}", token(1))]);
        for n in 2..10_000 {
            sink.deliver(e.renewed(n));
            assert_eq!(
                slot.queued(),
                1,
                "one marker, whatever the number of renewals"
            );
        }
        assert_eq!(slot.lease(), Some(e.lease(9_999)));
        // The slow reader sees the latest renewal only.
        assert_eq!(drain(&slot), [format!("renewed {}", token(9_999))]);
        assert_eq!(slot.queued(), 0);
        assert_eq!(
            slot.lease(),
            Some(e.lease(9_999)),
            "reading keeps the lease"
        );
    }

    #[test]
    fn an_unread_hold_that_keeps_losing_its_lock_stays_bounded_and_tells_the_first_loss() {
        let e = Events::new();
        let slot = Slot::new(true);
        let sink = Sink::new(slot.clone());
        sink.deliver(e.acquired(1));
        sink.deliver(e.renewed(2));
        for n in 1..10_000 {
            sink.deliver(e.lost());
            sink.deliver(e.acquired(10 * n));
            sink.deliver(e.renewed(10 * n + 1));
            assert!(slot.queued() <= HOLD_BACKLOG + 2, "{}", slot.queued());
        }
        assert_eq!(slot.lease(), Some(e.lease(99_991)));
        let read = drain(&slot);
        assert_eq!(
            read[..3],
            [
                format!("acquired {}", token(1)),
                format!("renewed {}", token(2)),
                "lost".to_owned()
            ]
        );
        assert_eq!(
            read.last(),
            Some(&format!("renewed {}", token(99_991))),
            "the latest"
        );
    }

    #[test]
    fn losses_and_acquisitions_are_all_delivered_in_order_between_coalesced_renewals() {
        let e = Events::new();
        let slot = Slot::new(true);
        let sink = Sink::new(slot.clone());
        sink.deliver(e.acquired(1));
        for n in 2..5 {
            sink.deliver(e.renewed(n));
        }
        sink.deliver(e.lost());
        assert_eq!(slot.lease(), None, "a lost hold has no lease");
        sink.deliver(e.acquired(10));
        assert_eq!(slot.lease(), Some(e.lease(10)));
        for n in 11..20 {
            sink.deliver(e.renewed(n));
        }
        sink.deliver(e.lost());
        sink.deliver(e.lost());
        sink.deliver(e.acquired(30));
        sink.deliver(e.renewed(31));
        assert_eq!(
            drain(&slot),
            [
                format!("acquired {}", token(1)),
                format!("renewed {}", token(4)),
                "lost".to_owned(),
                format!("acquired {}", token(10)),
                format!("renewed {}", token(19)),
                "lost".to_owned(),
                "lost".to_owned(),
                format!("acquired {}", token(30)),
                format!("renewed {}", token(31)),
            ]
        );
        assert_eq!(slot.lease(), Some(e.lease(31)));
    }

    #[test]
    fn operations_that_are_not_holds_queue_every_event() {
        let e = Events::new();
        let slot = Slot::new(false);
        let sink = Sink::new(slot.clone());
        sink.deliver(e.renewed(1));
        sink.deliver(e.renewed(2));
        assert_eq!(slot.queued(), 2);
        assert_eq!(slot.lease(), None);
    }

    #[test]
    fn a_push_wakes_only_a_registered_waker_and_a_dropped_sink_closes_the_slot() {
        let e = Events::new();
        let slot = Slot::new(true);
        let sink = Sink::new(slot.clone());
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // Nobody waits: no wake-up.
        sink.deliver(e.acquired(1));
        sink.deliver(e.renewed(2));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(matches!(slot.poll_next(&mut cx), Poll::Ready(Some(_))));
        assert!(matches!(slot.poll_next(&mut cx), Poll::Ready(Some(_))));
        assert!(slot.poll_next(&mut cx).is_pending());
        // The handle waits: one wake-up for the next renewal, none for the ones after it.
        sink.deliver(e.renewed(3));
        sink.deliver(e.renewed(4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(
            matches!(slot.poll_next(&mut cx), Poll::Ready(Some(Item::Renewed(l))) if l == e.lease(4))
        );
        assert!(slot.poll_next(&mut cx).is_pending());
        drop(sink);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "closing wakes the handle"
        );
        assert!(matches!(slot.poll_next(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn queued_items_are_read_before_the_end() {
        let e = Events::new();
        let slot = Slot::new(false);
        let sink = Sink::new(slot.clone());
        sink.refuse(IntentError::EmptyKey);
        sink.deliver(e.lost());
        drop(sink);
        assert_eq!(
            drain(&slot),
            ["refused the key is empty".to_owned(), "lost".to_owned()]
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(slot.poll_next(&mut cx), Poll::Ready(None)));
    }
}
