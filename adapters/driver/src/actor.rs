//! The state around a [`Connection`]: commands from handles in, events routed out to the handle
//! that started each operation.

use crate::handle::{Change, Error};
use crate::settings::{Backoff, Settings};
use crate::slot::{Sink, Slot};
use futures_channel::{mpsc, oneshot};
use leasedlock::bytes::Bytes;
use leasedlock::connection::{Connection, Event as ConnEvent};
use leasedlock::lock::{
    ConfigError, EditAction, Event, Intent, IntentError, LockId, OpError, OpId, Options,
};
use leasedlock::mqtt::AuthError;
use leasedlock::Now;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names an observer from the handle side.
pub(crate) type Ticket = u64;

/// Where holder changes of an observed lock go.
pub(crate) type ObserveSink = mpsc::UnboundedSender<Result<Change, OpError>>;

/// A lock name on its way from a handle to the actor: carried inline when short (no
/// allocation: the engine keeps its own copy of every name it knows), boxed otherwise.
#[derive(Clone)]
pub(crate) enum Name {
    Inline { len: u8, bytes: [u8; Name::INLINE] },
    Boxed(Box<[u8]>),
}

impl Name {
    /// The longest name carried inline (the enum is then 40 bytes).
    const INLINE: usize = 38;

    pub(crate) fn new(name: &[u8]) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= Name::INLINE => {
                let mut bytes = [0; Name::INLINE];
                bytes[..name.len()].copy_from_slice(name);
                Name::Inline { len, bytes }
            }
            _ => Name::Boxed(name.into()),
        }
    }
}

impl std::ops::Deref for Name {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Boxed(name) => name,
        }
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.escape_ascii())
    }
}

/// A message from a handle to the actor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start an operation; its events go to `sink`.
    Start {
        name: Name,
        intent: Intent,
        options: Options,
        sink: Sink,
    },
    /// Answer the edit's `EditRequested`.
    CompleteEdit { op: OpId, action: EditAction },
    /// The handle of the operation of this slot is gone before the operation ended.
    Cancel { slot: Arc<Slot> },
    /// Report holder changes of a lock to `sink`.
    Observe {
        ticket: Ticket,
        name: Name,
        sink: ObserveSink,
        ack: oneshot::Sender<Result<(), IntentError>>,
    },
    /// The observer is gone.
    Unobserve { ticket: Ticket },
    /// Report when the broker accepts a connection, or why an attempt failed.
    WatchConnection(oneshot::Sender<Result<(), Error>>),
}

/// The actor: owns the [`Connection`], the routes of live operations (the actor's side of each
/// operation's [`Slot`], by the engine's id) and the observers.
///
/// A runtime adapter feeds it commands, bytes, timeouts and transport changes, writes what
/// [`Actor::poll_transmit`] returns and sleeps until [`Actor::poll_timeout`]. Every event of the
/// connection is routed as soon as it is produced.
pub(crate) struct Actor {
    conn: Connection,
    ops: BTreeMap<OpId, Sink>,
    observers: BTreeMap<LockId, Vec<(Ticket, ObserveSink)>>,
    backoff: Backoff,
    session_ended: bool,
    connected: bool,
    /// Handles waiting for the outcome of a connection attempt.
    watchers: Vec<oneshot::Sender<Result<(), Error>>>,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("operations", &self.ops.len())
            .field("observed_locks", &self.observers.len())
            .field("connected", &self.connected)
            .finish()
    }
}

impl Actor {
    /// An actor for these settings, not connected.
    pub(crate) fn new(settings: &Settings, now: Now) -> Result<Actor, ConfigError> {
        let conn = Connection::new(
            settings.lock.clone(),
            settings.mqtt.clone(),
            now,
            settings.seed,
        )?;
        Ok(Actor {
            conn,
            ops: BTreeMap::new(),
            observers: BTreeMap::new(),
            backoff: Backoff::new(
                settings.reconnect_min,
                settings.reconnect_max,
                settings.seed.rotate_left(17),
            ),
            session_ended: false,
            connected: false,
            watchers: Vec::new(),
        })
    }

    /// Whether the broker has accepted the current connection.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// A new transport is up: send CONNECT.
    pub(crate) fn connect(&mut self, now: Now) {
        self.session_ended = false;
        self.conn.connect(now);
        self.route();
    }

    /// Bytes read from the transport.
    pub(crate) fn handle_bytes(&mut self, now: Now, bytes: &[u8]) {
        self.conn.handle_bytes(now, bytes);
        self.route();
    }

    /// A deadline may have passed.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        self.conn.handle_timeout(now);
        self.route();
    }

    /// The transport broke or was closed by us.
    pub(crate) fn transport_closed(&mut self, now: Now) {
        self.conn.handle_transport_closed(now);
        self.route();
        self.session_ended = false;
    }

    /// The transport could not be opened (TCP or TLS).
    pub(crate) fn connect_failed(&mut self, error: &std::io::Error) {
        self.notify_watchers(Err(Error::Transport {
            kind: error.kind(),
            message: error.to_string(),
        }));
    }

    /// New authentication data (a rotated token): see
    /// [`Connection::reauthenticate`](leasedlock::connection::Connection::reauthenticate).
    pub(crate) fn reauthenticate(&mut self, now: Now, data: Bytes) -> Result<bool, AuthError> {
        let result = self.conn.reauthenticate(now, data);
        self.route();
        result
    }

    fn notify_watchers(&mut self, outcome: Result<(), Error>) {
        for watcher in self.watchers.drain(..) {
            let _ = watcher.send(outcome.clone());
        }
    }

    /// Send DISCONNECT.
    pub(crate) fn disconnect(&mut self, now: Now) {
        self.conn.disconnect(now);
        self.route();
    }

    /// Whether the MQTT session ended the connection by itself (keep-alive timeout, refused
    /// CONNACK, DISCONNECT from the broker): the transport should be closed and a new one opened.
    pub(crate) fn session_ended(&self) -> bool {
        self.session_ended
    }

    /// The delay before the next connection attempt.
    pub(crate) fn next_backoff(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    /// Bytes to write to the transport, in order.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.conn.poll_transmit();
        self.route();
        bytes
    }

    /// When [`Actor::handle_timeout`] should be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// A command from a handle.
    pub(crate) fn handle_command(&mut self, now: Now, command: Command) {
        match command {
            Command::Start {
                name,
                intent,
                options,
                sink,
            } => self.start(now, name, intent, options, sink),
            Command::CompleteEdit { op, action } => {
                // The edit may have ended meanwhile (timeout): its final event is on its way.
                if self.ops.contains_key(&op) {
                    let _ = self.conn.complete_edit(now, op, action);
                }
            }
            Command::Cancel { slot } => {
                // Commands arrive in order: the operation's start came before, and its id is in
                // the slot unless the engine refused it.
                if let Some(op) = slot.op().filter(|op| self.ops.contains_key(op)) {
                    let _ = self.conn.cancel(now, op);
                }
            }
            Command::Observe {
                ticket,
                name,
                sink,
                ack,
            } => {
                let result = self.observe(now, ticket, &name, sink);
                let _ = ack.send(result);
            }
            Command::Unobserve { ticket } => self.unobserve(now, ticket),
            Command::WatchConnection(watcher) => {
                if self.connected {
                    let _ = watcher.send(Ok(()));
                } else {
                    self.watchers.push(watcher);
                }
            }
        }
        self.route();
    }

    fn start(&mut self, now: Now, name: Name, intent: Intent, options: Options, sink: Sink) {
        let lock = match self.conn.lock_id(&*name) {
            Ok(lock) => lock,
            Err(e) => return sink.refuse(e),
        };
        let started = self.conn.start(now, lock, intent, options);
        match started {
            Ok(op) => {
                sink.started(op);
                self.ops.insert(op, sink);
            }
            Err(e) => sink.refuse(e),
        }
    }

    fn observe(
        &mut self,
        now: Now,
        ticket: Ticket,
        name: &[u8],
        sink: ObserveSink,
    ) -> Result<(), IntentError> {
        let lock = self.conn.lock_id(name)?;
        let subscribers = self.observers.entry(lock).or_default();
        if subscribers.is_empty() {
            if let Err(e) = self.conn.observe(now, lock) {
                self.observers.remove(&lock);
                return Err(e);
            }
        }
        self.observers.entry(lock).or_default().push((ticket, sink));
        Ok(())
    }

    fn unobserve(&mut self, now: Now, ticket: Ticket) {
        let Some(lock) = self
            .observers
            .iter()
            .find(|(_, subs)| subs.iter().any(|(t, _)| *t == ticket))
            .map(|(lock, _)| *lock)
        else {
            return;
        };
        let subscribers = self.observers.entry(lock).or_default();
        subscribers.retain(|(t, _)| *t != ticket);
        if subscribers.is_empty() {
            self.observers.remove(&lock);
            let _ = self.conn.unobserve(now, lock);
        }
    }

    /// Hands every event of the connection to whoever waits for it.
    fn route(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ConnEvent::Lock(event) => self.route_lock(event),
                ConnEvent::Connected { .. } => {
                    self.connected = true;
                    self.backoff.reset();
                    self.notify_watchers(Ok(()));
                }
                ConnEvent::ConnectFailed(reason) => {
                    self.connected = false;
                    self.session_ended = true;
                    self.notify_watchers(Err(Error::Refused(reason)));
                }
                ConnEvent::Disconnected(cause) => {
                    if !self.connected {
                        self.notify_watchers(Err(Error::NotAccepted(cause)));
                    }
                    self.connected = false;
                    self.session_ended = true;
                }
                // The engine times the request out and reports it on its operation.
                ConnEvent::PublishRefused(_) => {}
                // K8S-SAT needs no challenge round; a broker that sends one is not answered and
                // its connect times out.
                ConnEvent::AuthenticationChallenge { .. } | ConnEvent::Reauthenticated => {}
            }
        }
    }

    fn route_lock(&mut self, event: Event) {
        match &event {
            Event::HolderChanged { lock, holder } => {
                if let Some(subs) = self.observers.get(lock) {
                    for (_, sink) in subs {
                        let _ = sink.unbounded_send(Ok(Change::from(holder.clone())));
                    }
                }
                return;
            }
            Event::ObserveFailed { lock, error } => {
                // The engine stopped observing: tell every observer, whose streams then end.
                if let Some(subs) = self.observers.remove(lock) {
                    for (_, sink) in subs {
                        let _ = sink.unbounded_send(Err(error.clone()));
                    }
                }
                return;
            }
            // A lease of try_acquire/acquire ran out: its holder checks `Lease::valid_until`.
            Event::Expired { .. } => return,
            _ => {}
        }
        let Some(op) = event.op() else { return };
        let Some(sink) = self.ops.get(&op) else {
            return;
        };
        let last = event.is_final();
        sink.deliver(event);
        if last {
            // Dropping the sink closes the slot.
            self.ops.remove(&op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now;
    use crate::handle::{Client, Error};
    use crate::mailbox::{mailbox, Receiver};
    use crate::slot::tests::CountingWaker;
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    /// An actor that never connects, and a client whose commands it is fed by hand.
    fn actor() -> (Actor, Client, Receiver) {
        let actor = Actor::new(&Settings::new("127.0.0.1", 1, "actor-test"), now()).unwrap();
        let (tx, rx) = mailbox();
        (actor, Client::new(tx), rx)
    }

    fn feed(actor: &mut Actor, rx: &mut Receiver) -> usize {
        let mut n = 0;
        while let Some(command) = rx.try_recv() {
            actor.handle_command(now(), command);
            n += 1;
        }
        n
    }

    #[test]
    fn short_names_are_inline_and_long_ones_boxed() {
        assert_eq!(std::mem::size_of::<Name>(), 40);
        for len in [1, 15, Name::INLINE, Name::INLINE + 1, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let name = Name::new(&bytes);
            assert_eq!(&*name, &bytes[..]);
            assert_eq!(matches!(name, Name::Inline { .. }), len <= Name::INLINE);
        }
        assert_eq!(format!("{:?}", Name::new(b"a\"b\xff")), r#"b"a\"b\xff""#);
    }

    #[test]
    fn a_handle_dropped_mid_operation_cancels_it_in_the_engine() {
        let (mut actor, client, mut rx) = actor();
        let lease = Duration::from_secs(5);
        let mut fut = Box::pin(client.acquire("L", lease, Options::default()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(feed(&mut actor, &mut rx), 1);
        assert_eq!(actor.ops.len(), 1);
        assert_eq!(actor.conn.engine().operations_in_progress(), 1);
        drop(fut);
        assert_eq!(feed(&mut actor, &mut rx), 1, "the cancel");
        assert_eq!(actor.conn.engine().operations_in_progress(), 0);
        assert!(
            actor.ops.is_empty(),
            "the cancelled operation's route is gone"
        );
    }

    #[test]
    fn a_stopped_actor_closes_pending_operations_and_wakes_them() {
        let (mut actor, client, mut rx) = actor();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let lease = Duration::from_secs(5);
        let mut waiting = Box::pin(client.acquire("L", lease, Options::default()));
        let mut holding = Box::pin(client.hold("H", lease, lease / 2, Options::default()));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(holding.as_mut().poll(&mut cx).is_pending());
        assert_eq!(feed(&mut actor, &mut rx), 2);
        assert_eq!(actor.ops.len(), 2);
        drop(actor);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "both handles were woken"
        );
        assert_eq!(
            waiting.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Closed))
        );
        assert!(matches!(
            holding.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Closed))
        ));
    }
}
