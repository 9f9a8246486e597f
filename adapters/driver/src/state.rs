//! The connection state as a watch: the actor publishes every change, each
//! [`ConnectionWatch`] reads the current state or waits for the next one.

use futures_core::Stream;
use leasedlock::mqtt::{ConnectReason, DisconnectCause};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Where the driver's connection to the broker stands, from [`ConnectionWatch`].
///
/// ```
/// use leasedlock_driver::{ConnectionState, Disconnection};
///
/// fn healthy(state: &ConnectionState) -> bool {
///     match state {
///         ConnectionState::Connected => true,
///         ConnectionState::Disconnected(Disconnection::Refused(reason)) => {
///             eprintln!("check the credentials: {reason:?}");
///             false
///         }
///         _ => false,
///     }
/// }
/// assert!(!healthy(&ConnectionState::Connecting));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening the transport or waiting for the broker's CONNACK; also the state before the
    /// driver's first poll.
    Connecting,
    /// The broker accepted the connection: operations are sent.
    Connected,
    /// There is no connection, for this reason; the driver tries again after its backoff.
    Disconnected(Disconnection),
}

/// Why the driver has no connection: how the last one ended, or why the last attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Disconnection {
    /// The MQTT connection ended: the broker sent DISCONNECT, keep-alive or connect timeout,
    /// the transport closed, …
    #[error("the connection ended: {0:?}")]
    Ended(DisconnectCause),
    /// The broker refused the connection (CONNACK reason code).
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReason),
    /// The broker gave the session to another connection with the same client id (DISCONNECT
    /// 0x8E, session taken over). Two clients share a client id: give each its own (see
    /// [`Settings::with_client_id_suffix`](crate::Settings::with_client_id_suffix)). The driver
    /// reconnects only after the takeover backoff, which grows with every takeover in a row
    /// (see [`Settings::takeover_backoff_max`](crate::Settings::takeover_backoff_max)), so the
    /// two never take the session from each other in a tight loop.
    #[error("another connection with the same client id took the session over")]
    TakenOver,
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot reach the broker ({kind:?}): {message}")]
    Transport {
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// Its text (for TLS, rustls' reason).
        message: String,
    },
}

/// How many changes a watch can fall behind before it skips the oldest.
const HISTORY: usize = 16;

struct Inner {
    /// The latest changes, the current state last, each with its number.
    history: VecDeque<(u64, ConnectionState)>,
    /// Tasks waiting for a change.
    wakers: Vec<Waker>,
    /// The driver is gone: no more changes.
    closed: bool,
}

/// What the actor and the watches share.
pub(crate) struct Shared(Mutex<Inner>);

impl Default for Shared {
    fn default() -> Shared {
        Shared(Mutex::new(Inner {
            history: VecDeque::from([(0, ConnectionState::Connecting)]),
            wakers: Vec::new(),
            closed: false,
        }))
    }
}

fn with<T>(shared: &Shared, f: impl FnOnce(&mut Inner) -> T) -> T {
    f(&mut shared.0.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The actor's side: publishes changes; dropping it ends every watch's stream.
pub(crate) struct Publisher(Arc<Shared>);

impl Publisher {
    pub(crate) fn new(shared: Arc<Shared>) -> Publisher {
        Publisher(shared)
    }

    /// Publishes `state` unless it is the current one already (a `Disconnected` state is
    /// published every time: each is another failed attempt); wakes the waiting watches.
    pub(crate) fn set(&self, state: ConnectionState) {
        let wakers = with(&self.0, |inner| {
            let (seq, now) = current(inner);
            if *now == state && !matches!(state, ConnectionState::Disconnected(_)) {
                return Vec::new();
            }
            let seq = seq + 1;
            if inner.history.len() == HISTORY {
                inner.history.pop_front();
            }
            inner.history.push_back((seq, state));
            std::mem::take(&mut inner.wakers)
        });
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let wakers = with(&self.0, |inner| {
            inner.closed = true;
            std::mem::take(&mut inner.wakers)
        });
        wakers.into_iter().for_each(Waker::wake);
    }
}

fn current(inner: &Inner) -> &(u64, ConnectionState) {
    inner.history.back().expect("the history is never empty")
}

/// The connection state of a driver, from [`Client::connection_state`](crate::Client::connection_state):
/// read the current state with [`ConnectionWatch::current`], or use it as a [`Stream`] that
/// yields the current state first, then every change, and ends when the driver stops.
///
/// A watch that falls more than 16 changes behind skips the oldest ones; a watch costs the
/// driver nothing while nobody polls it.
///
/// ```no_run
/// use leasedlock_driver::{Client, ConnectionState};
///
/// async fn log_connection(client: &Client) {
///     let mut watch = client.connection_state();
///     println!("now: {:?}", watch.current());
///     while let Some(state) = watch.next().await {
///         match state {
///             ConnectionState::Disconnected(why) => eprintln!("disconnected: {why}"),
///             other => println!("{other:?}"),
///         }
///     }
/// }
/// ```
pub struct ConnectionWatch {
    shared: Arc<Shared>,
    /// The number of the next change to yield.
    next: u64,
}

impl ConnectionWatch {
    /// A watch whose stream starts with the current state.
    pub(crate) fn new(shared: Arc<Shared>) -> ConnectionWatch {
        let next = with(&shared, |inner| current(inner).0);
        ConnectionWatch { shared, next }
    }

    /// The current state.
    pub fn current(&self) -> ConnectionState {
        with(&self.shared, |inner| current(inner).1.clone())
    }

    /// The next state not yet yielded; `None` once the driver has stopped.
    pub async fn next(&mut self) -> Option<ConnectionState> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for ConnectionWatch {
    type Item = ConnectionState;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionState>> {
        let next = self.next;
        let found = with(&self.shared, |inner| {
            if let Some((seq, state)) = inner.history.iter().find(|(seq, _)| *seq >= next) {
                return Poll::Ready(Some((*seq, state.clone())));
            }
            if inner.closed {
                return Poll::Ready(None);
            }
            if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                inner.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        });
        found.map(|found| {
            found.map(|(seq, state)| {
                self.next = seq + 1;
                state
            })
        })
    }
}

impl std::fmt::Debug for ConnectionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionWatch")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::tests::CountingWaker;
    use std::sync::atomic::Ordering;

    fn poll(watch: &mut ConnectionWatch, cx: &mut Context<'_>) -> Poll<Option<ConnectionState>> {
        Pin::new(watch).poll_next(cx)
    }

    #[test]
    fn a_watch_yields_the_current_state_then_each_change_and_ends_with_the_driver() {
        let shared = Arc::new(Shared::default());
        let publisher = Publisher::new(shared.clone());
        let mut watch = ConnectionWatch::new(shared);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let lost =
            ConnectionState::Disconnected(Disconnection::Ended(DisconnectCause::TransportClosed));
        assert_eq!(
            poll(&mut watch, &mut cx),
            Poll::Ready(Some(ConnectionState::Connecting))
        );
        assert_eq!(poll(&mut watch, &mut cx), Poll::Pending);
        publisher.set(ConnectionState::Connected);
        publisher.set(ConnectionState::Connected); // no change: not published
        publisher.set(lost.clone());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken once");
        assert_eq!(watch.current(), lost);
        assert_eq!(
            poll(&mut watch, &mut cx),
            Poll::Ready(Some(ConnectionState::Connected))
        );
        assert_eq!(poll(&mut watch, &mut cx), Poll::Ready(Some(lost)));
        assert_eq!(poll(&mut watch, &mut cx), Poll::Pending);
        drop(publisher);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "woken by the end");
        assert_eq!(poll(&mut watch, &mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_watch_far_behind_skips_the_oldest_changes() {
        let shared = Arc::new(Shared::default());
        let publisher = Publisher::new(shared.clone());
        let mut watch = ConnectionWatch::new(shared);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..HISTORY {
            publisher.set(ConnectionState::Connected);
            publisher.set(ConnectionState::Connecting);
        }
        let mut seen = Vec::new();
        while let Poll::Ready(Some(state)) = poll(&mut watch, &mut cx) {
            seen.push(state);
        }
        assert_eq!(seen.len(), HISTORY, "bounded");
        assert_eq!(seen.last(), Some(&ConnectionState::Connecting));
    }
}
