//! The commands from the handles to the driver: a shared queue instead of a channel.
//!
//! Handles push under a mutex; the driver takes the whole queue at once by swapping it with an
//! empty one of its own, so that both buffers are reused and a command costs no allocation once
//! they have grown. The driver is woken only when it waits. The queue counts its [`Sender`]s:
//! once the last one is dropped the driver reads the end; once the driver's [`Receiver`] is
//! dropped every send fails and the commands still queued are dropped (which closes their
//! operations' slots).

use crate::actor::Command;
use crate::handle::Error;
use crate::state::{ConnectionWatch, Publisher, Shared};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct Mailbox {
    state: Mutex<State>,
    /// Live [`Sender`]s.
    senders: AtomicUsize,
    /// The next ticket handed out by [`Sender::ticket`].
    tickets: AtomicU64,
    /// The connection state, published by the actor.
    connection: Arc<Shared>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Command>,
    /// The driver's task, while it waits on an empty queue.
    waker: Option<Waker>,
    /// The driver is gone.
    closed: bool,
}

impl Mailbox {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Wakes the driver's task, if it waits, once `state` is unlocked.
fn wake(mut state: MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// A new queue: its first sender and its receiver.
pub(crate) fn mailbox() -> (Sender, Receiver) {
    let mailbox = Arc::new(Mailbox {
        state: Mutex::new(State::default()),
        senders: AtomicUsize::new(1),
        tickets: AtomicU64::new(0),
        connection: Arc::default(),
    });
    (Sender(mailbox.clone()), Receiver(mailbox))
}

/// The handles' side; every clone keeps the driver running.
pub(crate) struct Sender(Arc<Mailbox>);

impl Sender {
    /// Queues `command`; [`Error::Closed`] when the driver is gone (the command is dropped).
    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        let mut state = self.0.state();
        if state.closed {
            drop(state);
            drop(command);
            return Err(Error::Closed);
        }
        state.queue.push_back(command);
        wake(state);
        Ok(())
    }

    /// A watch of the connection state the driver publishes.
    pub(crate) fn connection_state(&self) -> ConnectionWatch {
        ConnectionWatch::new(self.0.connection.clone())
    }

    /// A number never handed out before by this queue.
    pub(crate) fn ticket(&self) -> u64 {
        self.0.tickets.fetch_add(1, Ordering::Relaxed)
    }
}

impl Clone for Sender {
    fn clone(&self) -> Sender {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: the driver reads the end (it checks the count under the lock).
            wake(self.0.state());
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("senders", &self.0.senders.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The driver's side.
pub(crate) struct Receiver(Arc<Mailbox>);

impl Receiver {
    /// Moves every queued command into `batch` (which must be empty): `Ready(true)` when there
    /// were some, `Ready(false)` once the queue is empty and every sender is gone.
    pub(crate) fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Command>,
    ) -> Poll<bool> {
        debug_assert!(batch.is_empty());
        let mut state = self.0.state();
        if !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, batch);
            return Poll::Ready(true);
        }
        if self.0.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(false);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Where the actor publishes the connection state (take it once: dropping it ends the
    /// watches).
    pub(crate) fn publisher(&self) -> Publisher {
        Publisher::new(self.0.connection.clone())
    }

    /// The oldest queued command (tests).
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<Command> {
        self.0.state().queue.pop_front()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        // Dropped unlocked: the commands' slots close and wake their handles.
        drop(queued);
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::tests::CountingWaker;

    fn watch() -> Command {
        Command::WatchConnection(futures_channel::oneshot::channel().0)
    }

    #[test]
    fn the_driver_is_woken_once_per_wait_and_takes_the_whole_queue() {
        let (tx, mut rx) = mailbox();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Pending);
        for _ in 0..3 {
            tx.send(watch()).unwrap();
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Ready(true));
        assert_eq!(batch.len(), 3);
        batch.clear();
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Pending);
    }

    #[test]
    fn the_end_comes_after_the_last_sender_and_the_queued_commands() {
        let (tx, mut rx) = mailbox();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        let tx2 = tx.clone();
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Pending);
        drop(tx);
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Pending);
        tx2.send(watch()).unwrap();
        drop(tx2);
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Ready(true));
        batch.clear();
        assert_eq!(rx.poll_drain(&mut cx, &mut batch), Poll::Ready(false));
    }

    #[test]
    fn sends_fail_once_the_driver_is_gone() {
        let (tx, rx) = mailbox();
        drop(rx);
        assert!(tx.send(watch()).is_err());
    }
}
