//! The holder changes of one [`Observer`](crate::Observer): a bounded queue that the actor
//! pushes to and the observer reads.
//!
//! An observer that does not read must not make the driver's memory grow: the queue keeps at
//! most [`BACKLOG`] changes, and a new one pushes the oldest out. What the observer reads last
//! is therefore always the latest change, and the lock's state it ends on is the true one; the
//! changes it missed are counted ([`Stats::events_dropped`](crate::Stats::events_dropped)). An
//! error ends the stream and is never pushed out.

use crate::handle::Change;
use leasedlock::lock::OpError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// The most changes kept unread for one observer.
pub(crate) const BACKLOG: usize = 64;

/// What an observer reads: a change, or why observing failed.
pub(crate) type Item = Result<Change, OpError>;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    /// The actor has let go: nothing more will be pushed.
    closed: bool,
    /// The observer's task, while it waits on an empty queue.
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Shared(Mutex<State>);

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new queue: the actor's side and the observer's.
pub(crate) fn changes() -> (ChangeSink, ChangeSource) {
    let shared = Arc::new(Shared::default());
    (ChangeSink(shared.clone()), ChangeSource(shared))
}

/// The actor's side. Dropping it ends the observer's stream once it is read.
#[derive(Debug)]
pub(crate) struct ChangeSink(Arc<Shared>);

impl ChangeSink {
    /// Queues `item` and wakes the observer; `false` when the oldest unread change was pushed
    /// out to make room.
    pub(crate) fn push(&self, item: Item) -> bool {
        let mut state = self.0.state();
        let room = state.queue.len() < BACKLOG;
        if !room {
            state.queue.pop_front();
        }
        state.queue.push_back(item);
        wake(state);
        room
    }
}

impl Drop for ChangeSink {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.closed = true;
        wake(state);
    }
}

/// Wakes the observer's task, if it waits, once `state` is unlocked.
fn wake(mut state: MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The observer's side.
#[derive(Debug)]
pub(crate) struct ChangeSource(Arc<Shared>);

impl ChangeSource {
    /// The oldest unread change; `Ready(None)` once the queue is drained and the actor has let
    /// go.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut state = self.0.state();
        if let Some(item) = state.queue.pop_front() {
            return Poll::Ready(Some(item));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock::lock::Holder;

    fn read_all(source: &ChangeSource) -> Vec<Item> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = source.poll_next(&mut cx) {
            out.push(item);
        }
        out
    }

    fn held(n: usize) -> Change {
        Change::Held(Holder::from_value(format!("c{n}")))
    }

    #[test]
    fn an_unread_observer_keeps_the_latest_changes_and_counts_the_rest() {
        let (sink, source) = changes();
        let pushed = 3 * BACKLOG;
        let kept = (0..pushed).filter(|n| sink.push(Ok(held(*n)))).count();
        assert_eq!(
            kept, BACKLOG,
            "the first BACKLOG fit, every later one pushes one out"
        );
        sink.push(Ok(Change::Free));
        let read = read_all(&source);
        assert_eq!(read.len(), BACKLOG);
        assert_eq!(read.first(), Some(&Ok(held(pushed - BACKLOG + 1))));
        assert_eq!(
            read.last(),
            Some(&Ok(Change::Free)),
            "the last is the latest"
        );
        // Drained and still observed: pending; once the actor lets go: the end.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(source.poll_next(&mut cx).is_pending());
        drop(sink);
        assert_eq!(source.poll_next(&mut cx), Poll::Ready(None));
    }
}
