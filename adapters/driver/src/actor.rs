//! The state around the engine and what carries its messages (a [`Connection`] or a [`Bridge`]
//! to a [`Transport`]): commands from handles in, events routed out to the handle that started
//! each operation.

use crate::changes::ChangeSink;
use crate::engine::Engine;
use crate::handle::{Change, Error};
use crate::reconnect::{Ending, Reconnect};
use crate::routes::OpTable;
use crate::settings::Settings;
use crate::slot::{Sink, Slot};
use crate::state::{ConnectionState, Disconnection, Publisher};
use crate::stats::{Kind, Outcome, Stats};
use crate::transport::{Bridge, Transport, TransportEvent};
use futures_channel::oneshot;
use leasedlock::bytes::Bytes;
use leasedlock::connection::{Connection, Event as ConnEvent};
use leasedlock::lock::{
    self, ConfigError, EditAction, Event, Intent, IntentError, LockId, OpError, OpId, Options,
};
use leasedlock::mqtt::{AuthError, DisconnectCause, DisconnectReason};
use leasedlock::Now;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::{debug, info, trace, warn};

/// Names an observer from the handle side.
pub(crate) type Ticket = u64;

/// Where holder changes of an observed lock go.
pub(crate) type ObserveSink = ChangeSink;

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

/// A lock name in traces: its bytes, non-ASCII escaped. Formatted only when a trace is recorded.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

/// The name of `lock` as the engine knows it.
fn name_of<C: Engine>(conn: &C, lock: LockId) -> Shown<'_> {
    Shown(conn.engine().lock_name(lock).map_or(&[], |name| &name[..]))
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
    /// Report the metrics.
    Stats(oneshot::Sender<Stats>),
}

/// What the actor keeps of a live operation.
struct Route {
    /// Where its events go.
    sink: Sink,
    kind: Kind,
    /// When it started: its wait for the lock counts from then.
    started: Instant,
    /// Its outcome has been counted.
    counted: bool,
    /// It has had the lock (its wait is counted).
    had_lock: bool,
    /// The operation's span (its kind and lock name), kept only when tracing records it: a
    /// disabled span still takes 40 bytes, in every route.
    span: Option<Box<tracing::Span>>,
}

impl Route {
    /// The operation's span (a disabled one when tracing does not record it).
    fn span(&self) -> &tracing::Span {
        static DISABLED: std::sync::OnceLock<tracing::Span> = std::sync::OnceLock::new();
        self.span
            .as_deref()
            .unwrap_or_else(|| DISABLED.get_or_init(tracing::Span::none))
    }
}

/// The actor: owns the engine and what carries its messages (`C`: the driver's own
/// [`Connection`], or a [`Bridge`] to the application's MQTT client), the routes of live
/// operations (the actor's side of each operation's [`Slot`], by the engine's id) and the
/// observers.
///
/// A driver feeds it commands, bytes (or transport reports), timeouts and transport changes,
/// writes what [`Actor::poll_transmit`] returns and sleeps until [`Actor::poll_timeout`]. Every
/// event of the connection is routed as soon as it is produced.
pub(crate) struct Actor<C = Connection> {
    conn: C,
    ops: OpTable<Route>,
    observers: BTreeMap<LockId, Vec<(Ticket, ObserveSink)>>,
    /// Per lock, the slot of the `try_acquire`/`acquire` whose lease the engine holds: revoked
    /// when the lease is gone before its time.
    won: BTreeMap<LockId, Weak<Slot>>,
    /// When the driver connects again; `None` over a transport, whose client reconnects itself.
    reconnect: Option<Reconnect>,
    session_ended: bool,
    connected: bool,
    /// Handles waiting for the outcome of a connection attempt.
    watchers: Vec<oneshot::Sender<Result<(), Error>>>,
    /// The connection state the watches see.
    state: Publisher,
    /// While there is no connection: why the last one ended (or the first attempt failed), and
    /// the count of failed attempts then. A reconnect is traced with both.
    outage: Option<(Disconnection, u64)>,
    /// The metrics the actor counts (the engine counts the rest).
    stats: Stats,
    /// The engine's counters at the last look: their increases are traced.
    seen: lock::Stats,
    /// The latest instant the driver gave: events are timed by it.
    now: Instant,
}

impl<C> std::fmt::Debug for Actor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("operations", &self.ops.len())
            .field("observed_locks", &self.observers.len())
            .field("connected", &self.connected)
            .finish()
    }
}

impl<C: Engine> Actor<C> {
    /// An actor over `conn`, not connected.
    fn with(conn: C, reconnect: Option<Reconnect>, now: Now, state: Publisher) -> Actor<C> {
        Actor {
            conn,
            ops: OpTable::default(),
            observers: BTreeMap::new(),
            won: BTreeMap::new(),
            reconnect,
            session_ended: false,
            connected: false,
            watchers: Vec::new(),
            state,
            outage: None,
            stats: Stats::default(),
            seen: lock::Stats::default(),
            now: now.instant,
        }
    }
}

impl Actor<Connection> {
    /// An actor for these settings, not connected.
    pub(crate) fn new(
        settings: &Settings,
        now: Now,
        state: Publisher,
    ) -> Result<Actor, ConfigError> {
        let conn = Connection::new(
            settings.lock.clone(),
            settings.mqtt.clone(),
            now,
            settings.seed,
        )?;
        let reconnect = Reconnect::new(
            settings.reconnect_min,
            settings.reconnect_max,
            settings.takeover_backoff_max,
            settings.stable_connection,
            settings.seed,
        );
        Ok(Actor::with(conn, Some(reconnect), now, state))
    }

    /// The delay before the next connection attempt: after a session takeover, the takeover
    /// backoff's; otherwise the reconnect backoff's.
    pub(crate) fn next_backoff(&mut self) -> Duration {
        self.reconnect
            .as_mut()
            .map_or(Duration::ZERO, Reconnect::next_delay)
    }

    /// A connection attempt starts: the transport is being opened.
    pub(crate) fn connecting(&mut self) {
        debug!("connecting to the broker");
        self.state.set(ConnectionState::Connecting);
    }

    /// A new transport is up: send CONNECT.
    pub(crate) fn connect(&mut self, now: Now) {
        self.now = now.instant;
        debug!("transport open, sending CONNECT");
        self.session_ended = false;
        self.conn.connect(now);
        self.route();
    }

    /// Bytes read from the transport.
    pub(crate) fn handle_bytes(&mut self, now: Now, bytes: &[u8]) {
        self.now = now.instant;
        self.conn.handle_bytes(now, bytes);
        self.route();
    }

    /// The transport broke or was closed by us.
    pub(crate) fn transport_closed(&mut self, now: Now) {
        self.now = now.instant;
        self.conn.handle_transport_closed(now);
        self.route();
        self.session_ended = false;
    }

    /// New authentication data (a rotated token): see
    /// [`Connection::reauthenticate`](leasedlock::connection::Connection::reauthenticate).
    pub(crate) fn reauthenticate(&mut self, now: Now, data: Bytes) -> Result<bool, AuthError> {
        self.now = now.instant;
        let result = self.conn.reauthenticate(now, data);
        match &result {
            Ok(true) => debug!("re-authenticating with a new token"),
            Ok(false) => debug!("a new token, kept for the next CONNECT"),
            Err(error) => debug!(%error, "a new token, not sent yet"),
        }
        self.route();
        result
    }

    /// Send DISCONNECT.
    pub(crate) fn disconnect(&mut self, now: Now) {
        self.now = now.instant;
        info!("every handle is gone: disconnecting");
        self.conn.disconnect(now);
        self.route();
    }

    /// Whether the MQTT session ended the connection by itself (keep-alive timeout, refused
    /// CONNACK, DISCONNECT from the broker): the transport should be closed and a new one opened.
    pub(crate) fn session_ended(&self) -> bool {
        self.session_ended
    }

    /// Bytes to write to the transport, in order.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.conn.poll_transmit();
        self.route();
        bytes
    }
}

impl<T: Transport> Actor<Bridge<T>> {
    /// An actor over the application's MQTT client, not connected (until the transport reports
    /// a connection).
    pub(crate) fn attached(engine: lock::Client, transport: T, now: Now, state: Publisher) -> Self {
        Actor::with(Bridge::new(engine, transport), None, now, state)
    }

    /// Handles what the transport reports until it has nothing more; `None` once it is gone for
    /// good, else whether anything moved.
    pub(crate) fn poll_transport(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        let mut moved = false;
        loop {
            match self.conn.transport.poll_event(cx) {
                Poll::Ready(Some(event)) => {
                    self.handle_link(crate::clock::now(), event);
                    moved = true;
                }
                Poll::Ready(None) => return None,
                Poll::Pending => return Some(moved),
            }
        }
    }

    /// Ready once the transport has every publish handed to it.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.transport.poll_flush(cx)
    }

    /// A report of the transport. A transport error while not connected is a failed attempt.
    fn handle_link(&mut self, now: Now, event: TransportEvent) {
        self.now = now.instant;
        match event {
            TransportEvent::Disconnected(Disconnection::Transport { kind, message })
                if !self.connected =>
            {
                self.connect_failed(&std::io::Error::new(kind, message));
            }
            event => self.conn.handle(now, event),
        }
        self.route();
    }
}

impl<C: Engine> Actor<C> {
    /// Whether the broker has accepted the current connection.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// A deadline may have passed.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        self.now = now.instant;
        self.conn.handle_timeout(now);
        self.route();
    }

    /// The transport could not be opened (TCP or TLS).
    pub(crate) fn connect_failed(&mut self, error: &std::io::Error) {
        warn!(%error, "cannot reach the broker");
        self.stats.connect_failures += 1;
        let (kind, message) = (error.kind(), error.to_string());
        self.no_connection(Disconnection::Transport {
            kind,
            message: message.clone(),
        });
        self.notify_watchers(Err(Error::Transport { kind, message }));
    }

    /// There is no connection any more, or the attempt failed: tell the watches why.
    fn no_connection(&mut self, cause: Disconnection) {
        self.state.set(ConnectionState::Disconnected(cause.clone()));
        let failures = self.stats.connect_failures;
        self.outage.get_or_insert((cause, failures));
    }

    fn notify_watchers(&mut self, outcome: Result<(), Error>) {
        for watcher in self.watchers.drain(..) {
            let _ = watcher.send(outcome.clone());
        }
    }

    /// When [`Actor::handle_timeout`] should be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// A command from a handle.
    pub(crate) fn handle_command(&mut self, now: Now, command: Command) {
        self.now = now.instant;
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
                    let _ = self.conn.intent(now, |c| c.complete_edit(now, op, action));
                } else {
                    debug!(?op, "the answer came after the edit ended: dropped");
                }
            }
            Command::Cancel { slot } => {
                // Commands arrive in order: the operation's start came before, and its id is in
                // the slot unless the engine refused it.
                match slot.op().filter(|op| self.ops.contains_key(op)) {
                    Some(op) => {
                        let _ = self.conn.intent(now, |c| c.cancel(now, op));
                    }
                    // The operation ended; a win nobody read is released, as if its caller had.
                    None => {
                        if let Some((lock, token)) = slot.unread_win() {
                            debug!(lock = %name_of(&self.conn, lock), "the caller that won the lock is gone: releasing it");
                            self.won.remove(&lock);
                            let _ = self.conn.intent(now, |c| c.abandon(now, lock, &token));
                        }
                    }
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
            Command::Stats(reply) => {
                let _ = reply.send(self.stats.with_engine(self.conn.engine()));
            }
        }
        self.route();
    }

    fn start(&mut self, now: Now, name: Name, intent: Intent, options: Options, sink: Sink) {
        let kind = Kind::of(&intent);
        let span = tracing::debug_span!("lock_op", op = kind.name(), lock = %Shown(&name));
        let started = self
            .conn
            .intent(now, |c| c.lock_id(&*name))
            .and_then(|lock| {
                self.conn
                    .intent(now, |c| c.start(now, lock, intent, options))
            });
        match started {
            Ok(op) => {
                debug!(parent: &span, lock = %Shown(&name), "{} started", kind.name());
                self.stats.started(kind);
                sink.started(op);
                let route = Route {
                    sink,
                    kind,
                    started: now.instant,
                    counted: false,
                    had_lock: false,
                    span: (!span.is_disabled()).then(|| Box::new(span)),
                };
                self.ops.insert(op, route);
            }
            Err(error) => {
                debug!(parent: &span, lock = %Shown(&name), %error, "{} refused", kind.name());
                self.stats.refused(kind);
                sink.refuse(error);
            }
        }
    }

    fn observe(
        &mut self,
        now: Now,
        ticket: Ticket,
        name: &[u8],
        sink: ObserveSink,
    ) -> Result<(), IntentError> {
        let lock = self.conn.intent(now, |c| c.lock_id(name))?;
        let subscribers = self.observers.entry(lock).or_default();
        if subscribers.is_empty() {
            if let Err(e) = self.conn.intent(now, |c| c.observe(now, lock)) {
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
            let _ = self.conn.intent(now, |c| c.unobserve(now, lock));
        }
    }

    /// Hands every event of the connection to whoever waits for it.
    fn route(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ConnEvent::Lock(event) => self.route_lock(event),
                ConnEvent::Connected { session_present } => {
                    self.connected = true;
                    self.stats.connections += 1;
                    if self.stats.connections > 1 {
                        self.stats.reconnects += 1;
                    }
                    match self.outage.take() {
                        Some((cause, failures)) if self.stats.connections > 1 => {
                            let failed_attempts = self.stats.connect_failures - failures;
                            info!(%cause, failed_attempts, session_present, "reconnected to the broker");
                        }
                        _ => info!(session_present, "connected to the broker"),
                    }
                    self.state.set(ConnectionState::Connected);
                    if let Some(reconnect) = &mut self.reconnect {
                        reconnect.connected(self.now);
                    }
                    self.notify_watchers(Ok(()));
                }
                ConnEvent::ConnectFailed(reason) => {
                    warn!(?reason, "the broker refused the connection");
                    self.stats.connect_failures += 1;
                    self.connected = false;
                    self.session_ended = true;
                    self.no_connection(Disconnection::Refused(reason));
                    self.notify_watchers(Err(Error::Refused(reason)));
                }
                ConnEvent::Disconnected(cause) => {
                    let taken_over =
                        cause == DisconnectCause::ByServer(DisconnectReason::SessionTakenOver);
                    if let Some(reconnect) = &mut self.reconnect {
                        let ending = match &cause {
                            _ if taken_over => Ending::TakenOver,
                            DisconnectCause::ByServer(_) | DisconnectCause::TransportClosed => {
                                Ending::ByBroker
                            }
                            _ => Ending::ByClient,
                        };
                        reconnect.ended(self.now, ending);
                    }
                    if taken_over {
                        self.stats.takeovers += 1;
                        warn!(
                            takeovers = self.stats.takeovers,
                            "the broker gave this client id's session to another connection \
                             (DISCONNECT 0x8E): another client uses the same client id; \
                             reconnecting after the takeover backoff"
                        );
                    }
                    if self.connected {
                        self.stats.disconnects += 1;
                        if cause == DisconnectCause::ByClient {
                            info!("disconnected");
                        } else if !taken_over {
                            warn!(?cause, "the connection to the broker ended");
                        }
                    } else {
                        self.stats.connect_failures += 1;
                        warn!(?cause, "the connection ended before the broker accepted it");
                        self.notify_watchers(Err(Error::NotAccepted(cause.clone())));
                    }
                    self.no_connection(if taken_over {
                        Disconnection::TakenOver
                    } else {
                        Disconnection::Ended(cause)
                    });
                    self.connected = false;
                    self.session_ended = true;
                }
                // The engine times the request out and reports it on its operation.
                ConnEvent::PublishRefused(error) => {
                    self.stats.publishes_refused += 1;
                    warn!(%error, "the MQTT session refused to publish a request: it will time out");
                }
                // K8S-SAT needs no challenge round; a broker that sends one is not answered and
                // its connect times out.
                ConnEvent::AuthenticationChallenge { .. } => {
                    warn!("the broker asked for an authentication round: not answered (K8S-SAT needs none)");
                }
                ConnEvent::Reauthenticated => info!("re-authenticated with the new token"),
            }
        }
        self.trace_ignored();
    }

    /// Traces what the engine ignored since the last look (it only counts it).
    fn trace_ignored(&mut self) {
        let now = self.conn.engine().stats();
        let seen = std::mem::replace(&mut self.seen, now);
        if now.malformed_messages > seen.malformed_messages {
            let count = now.malformed_messages - seen.malformed_messages;
            warn!(
                count,
                "ignored messages that do not decode or are on an unknown topic"
            );
        }
        if now.unmatched_responses > seen.unmatched_responses {
            let count = now.unmatched_responses - seen.unmatched_responses;
            debug!(
                count,
                "ignored responses that match no pending request (late or duplicate)"
            );
        }
        if now.clock_errors > seen.clock_errors {
            let count = now.clock_errors - seen.clock_errors;
            warn!(
                count,
                "the hybrid logical clock refused timestamps (clock drift?)"
            );
        }
    }

    /// The lease of `lock` that a `try_acquire`/`acquire` won is gone.
    fn revoke(&mut self, lock: LockId) {
        if let Some(slot) = self.won.remove(&lock).and_then(|slot| slot.upgrade()) {
            slot.revoke();
        }
    }

    fn route_lock(&mut self, event: Event) {
        match &event {
            Event::HolderChanged { lock, holder } => {
                let name = name_of(&self.conn, *lock);
                trace!(lock = %name, holder = holder.as_ref().map(tracing::field::display), "holder changed");
                match self.observers.get(lock) {
                    Some(subs) => {
                        for (_, sink) in subs {
                            // An observer that does not read loses its oldest changes.
                            if !sink.push(Ok(Change::from(holder.clone()))) {
                                self.stats.events_dropped += 1;
                            }
                        }
                    }
                    None => self.stats.events_dropped += 1,
                }
                return;
            }
            Event::ObserveFailed { lock, error } => {
                warn!(lock = %name_of(&self.conn, *lock), %error, "observing the lock failed");
                // The engine stopped observing: tell every observer, whose streams then end.
                if let Some(subs) = self.observers.remove(lock) {
                    for (_, sink) in subs {
                        sink.push(Err(error.clone()));
                    }
                }
                return;
            }
            // A lease of try_acquire/acquire ended: its `Lease` reads invalid from now on.
            Event::Expired { lock, reason } => {
                self.stats.leases_expired += 1;
                warn!(lock = %name_of(&self.conn, *lock), ?reason, "a lease ended before its release");
                self.revoke(*lock);
                return;
            }
            Event::Released { lock, .. } if self.conn.engine().valid_until(*lock).is_none() => {
                self.revoke(*lock);
            }
            _ => {}
        }
        let Some(op) = event.op() else { return };
        let Some(route) = self.ops.get_mut(&op) else {
            self.stats.events_dropped += 1;
            trace!(?event, "an event of an operation nobody waits for: dropped");
            return;
        };
        trace_event(route, &event, &self.conn, self.now);
        record(&mut self.stats, route, &event, self.now);
        if let (Event::Acquired { lock, .. }, Kind::TryAcquire | Kind::Acquire) =
            (&event, route.kind)
        {
            // The engine keeps one lease per lock: one won before is gone.
            if let Some(before) = self.won.insert(*lock, route.sink.slot()) {
                before.upgrade().inspect(|slot| slot.revoke());
            }
        }
        let last = event.is_final();
        route.sink.deliver(event);
        if last {
            // Dropping the sink closes the slot.
            self.ops.remove(&op);
        }
    }
}

/// Counts what `event` tells of its operation.
fn record(stats: &mut Stats, route: &mut Route, event: &Event, now: Instant) {
    match event {
        Event::Acquired { .. } => {
            if !route.had_lock {
                stats.waited(now.saturating_duration_since(route.started));
            }
            route.had_lock = true;
        }
        Event::EditRequested { .. } if !route.had_lock => {
            stats.waited(now.saturating_duration_since(route.started));
            route.had_lock = true;
        }
        // The hold's slot still has the lease this renewal replaces: the slack is measured
        // against it.
        Event::Renewed { .. } => {
            if let Some(previous) = route.sink.lease_valid_until() {
                stats.renewed(previous.saturating_duration_since(now));
            }
        }
        Event::Lost { .. } => stats.leases_lost += 1,
        _ => {}
    }
    if !route.counted {
        if let Some(outcome) = Outcome::of(event) {
            stats.ended(route.kind, outcome);
            route.counted = true;
        }
    }
}

/// Traces `event` in its operation's span (before it is counted: `route` still has the previous
/// lease), at a level that fits how often it happens and whether an operator must look.
fn trace_event<C: Engine>(route: &Route, event: &Event, conn: &C, now: Instant) {
    let span = route.span();
    let op = route.kind.name();
    match event {
        Event::Acquired {
            lock,
            token,
            valid_until,
            hold,
            ..
        } => {
            let lock = name_of(conn, *lock);
            let valid_for = valid_until.saturating_duration_since(now);
            if *hold && route.had_lock {
                info!(parent: span, %lock, %token, ?valid_for, "hold won the lock again");
            } else {
                debug!(parent: span, op, %lock, %token, ?valid_for, "lock won");
            }
        }
        Event::Busy { lock, .. } => {
            debug!(parent: span, lock = %name_of(conn, *lock), "lock busy: held by another holder")
        }
        Event::Renewed {
            lock,
            token,
            valid_until,
            ..
        } => trace!(
            parent: span,
            lock = %name_of(conn, *lock),
            %token,
            valid_for = ?valid_until.saturating_duration_since(now),
            slack = ?route.sink.lease_valid_until().map(|v| v.saturating_duration_since(now)),
            "lease renewed"
        ),
        Event::Lost { lock, reason, .. } => warn!(
            parent: span,
            lock = %name_of(conn, *lock),
            ?reason,
            "lease lost"
        ),
        Event::Released { lock, was_held, .. } => {
            debug!(parent: span, lock = %name_of(conn, *lock), was_held, "released")
        }
        Event::HoldEnded { lock, .. } => {
            debug!(parent: span, lock = %name_of(conn, *lock), "hold ended")
        }
        Event::Holder { lock, holder, .. } => debug!(
            parent: span,
            lock = %name_of(conn, *lock),
            holder = holder.as_ref().map(tracing::field::display),
            "holder read"
        ),
        Event::EditRequested { lock, current, .. } => debug!(
            parent: span,
            lock = %name_of(conn, *lock),
            present = current.is_some(),
            "edit has the lock and the key's value"
        ),
        Event::EditDone { lock, outcome, .. } => {
            debug!(parent: span, lock = %name_of(conn, *lock), ?outcome, "edit done")
        }
        Event::Accessed { lock, outcome, .. } => {
            debug!(parent: span, lock = %name_of(conn, *lock), ?outcome, "store access done")
        }
        Event::Failed {
            lock,
            error: OpError::Cancelled,
            ..
        } => debug!(parent: span, op, lock = %name_of(conn, *lock), "cancelled"),
        Event::Failed { lock, error, .. } => {
            info!(parent: span, op, lock = %name_of(conn, *lock), %error, "{op} failed")
        }
        // Events of no operation are traced where they are routed.
        _ => {}
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
        let (tx, rx) = mailbox();
        let actor = Actor::new(
            &Settings::new("127.0.0.1", 1, "actor-test"),
            now(),
            rx.publisher(),
        )
        .unwrap();
        (actor, Client::new(tx), rx)
    }

    /// The reconnect backoff of default settings but for `reconnect_max` 1 s.
    fn reconnect() -> Reconnect {
        let mut settings = Settings::new("127.0.0.1", 1, "backoff-test");
        settings.reconnect_max = Duration::from_secs(1);
        let (_, rx) = mailbox();
        let actor = Actor::new(&settings, now(), rx.publisher()).unwrap();
        actor.reconnect.unwrap()
    }

    #[test]
    fn a_connack_alone_does_not_reset_the_reconnect_backoff() {
        let mut r = reconnect();
        let t0 = now().instant;
        // Failed attempts grow towards reconnect_max (1 s; each delay is from its upper half).
        let failed: Vec<Duration> = (0..6).map(|_| r.next_delay()).collect();
        assert!(failed[0] <= Duration::from_millis(50), "{failed:?}");
        assert!(failed[5] >= Duration::from_millis(500), "{failed:?}");
        // Accepted, then closed by the broker at once (mosquitto closing a taken-over session's
        // socket): the next delays start at reconnect_max and keep growing past it.
        let mut at = t0;
        let mut flapping = Vec::new();
        for _ in 0..4 {
            r.connected(at);
            at += Duration::from_millis(20);
            r.ended(at, Ending::ByBroker);
            flapping.push(r.next_delay());
        }
        assert!(flapping[0] >= Duration::from_millis(500), "{flapping:?}");
        assert!(flapping[3] >= Duration::from_secs(4), "{flapping:?}");
        // A connection that lasted resets both.
        r.connected(at);
        r.ended(at + Duration::from_secs(10), Ending::ByBroker);
        assert!(r.next_delay() <= Duration::from_millis(50));
        // A takeover is flapping however long the connection lasted.
        r.connected(at);
        r.ended(at + Duration::from_secs(60), Ending::TakenOver);
        assert!(r.next_delay() >= Duration::from_millis(500));
    }

    #[test]
    fn connections_the_client_gave_up_keep_the_plain_backoff() {
        let mut r = reconnect();
        let mut at = now().instant;
        // Short connections lost to keep-alive timeouts (a flapping network, a paused broker):
        // never the flapping backoff, so reconnecting stays within reconnect_max (1 s).
        for _ in 0..20 {
            r.connected(at);
            at += Duration::from_millis(20);
            r.ended(at, Ending::ByClient);
            assert!(r.next_delay() <= Duration::from_secs(1));
        }
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
    fn a_failed_attempt_is_traced_to_log_and_published_as_the_connection_state() {
        /// Without a tracing subscriber the records go to `log`: catch them there.
        struct Capture(std::sync::Mutex<Vec<(log::Level, String)>>);
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                true
            }
            fn log(&self, record: &log::Record<'_>) {
                let text = record.args().to_string();
                self.0.lock().unwrap().push((record.level(), text));
            }
            fn flush(&self) {}
        }
        static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Warn);

        let (mut actor, client, _rx) = actor();
        let watch = client.connection_state();
        assert_eq!(watch.current(), ConnectionState::Connecting);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        actor.connect_failed(&refused);
        assert_eq!(
            watch.current(),
            ConnectionState::Disconnected(Disconnection::Transport {
                kind: std::io::ErrorKind::ConnectionRefused,
                message: "refused".into(),
            })
        );
        assert_eq!(actor.stats.connect_failures, 1);
        let records = CAPTURE.0.lock().unwrap();
        assert!(
            records
                .iter()
                .any(|(level, text)| *level == log::Level::Warn
                    && text.contains("cannot reach the broker")),
            "{records:?}"
        );
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
