//! [`Connection`]: the lock engine and the MQTT session glued together — bytes in, bytes out.
//!
//! This is what a driver moves: it owns no socket and reads no clock. It follows the crate's
//! [drive contract](crate#the-drive-contract); concretely, a driver
//!
//! 1. calls [`Connection::connect`] once its transport (TCP, TLS, …) is up,
//! 2. writes every buffer from [`Connection::poll_transmit`] to the transport, in order,
//! 3. hands every event from [`Connection::poll_event`] to the user, and repeats 2–3 until both
//!    are empty (handling an event may issue an intent whose bytes must go out),
//! 4. waits for bytes, an intent or the deadline of [`Connection::poll_timeout`], and calls
//!    [`Connection::handle_bytes`] or [`Connection::handle_timeout`],
//! 5. calls [`Connection::handle_transport_closed`] when the transport breaks, and `connect`
//!    again once a new one is up (the engine resubscribes, re-registers KEYNOTIFY and re-checks).
//!
//! Intents go through the connection ([`Connection::start`] with a [`lock::Intent`], and
//! [`Connection::complete_edit`], `observe`, `unobserve`, `cancel`), which passes them to the
//! engine at their `Now` and moves their outputs into the session at once; the engine itself is
//! only lent read-only ([`Connection::engine`]), so nothing can poll it behind the connection's
//! back. The engine's typed requests become PUBLISH packets written from a template of what all
//! of this client's requests share, and responses are parsed straight from their bytes: the same
//! wire bytes and the same checks as the [`Message`](crate::Message) path that
//! [`lock::Client::to_message`] offers to other MQTT clients, without building messages.
//!
//! ```no_run
//! use leasedlock::connection::{Connection, Event};
//! use leasedlock::lock::{Config, Intent, Options};
//! use leasedlock::{mqtt, Now};
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
//!
//! fn now() -> Now {
//!     let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
//!     Now::new(Instant::now(), wall)
//! }
//!
//! let mut stream = TcpStream::connect("127.0.0.1:1883").unwrap();
//! stream.set_nodelay(true).unwrap();
//! let config = Config::new("worker-1");
//! let mut conn = Connection::new(config, mqtt::Options::new("worker-1"), now(), 1).unwrap();
//! conn.connect(now());
//! let lock = conn.lock_id("my-lock").unwrap();
//! let lease = Duration::from_secs(10);
//! conn.start(now(), lock, Intent::TryAcquire { lease }, Options::default()).unwrap();
//! let mut buf = vec![0u8; 64 * 1024];
//! loop {
//!     // Write and handle until both are empty: handling an event may start an intent
//!     // (`complete_edit` after `EditRequested`, say) whose bytes must go out before we sleep.
//!     loop {
//!         let mut busy = false;
//!         while let Some(bytes) = conn.poll_transmit() {
//!             stream.write_all(&bytes).unwrap();
//!             busy = true;
//!         }
//!         while let Some(event) = conn.poll_event() {
//!             println!("{event:?}");
//!             busy = true;
//!         }
//!         if !busy {
//!             break;
//!         }
//!     }
//!     // Sleep until the next deadline or until bytes arrive.
//!     let wait = conn
//!         .poll_timeout()
//!         .map(|t| t.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
//!     stream.set_read_timeout(wait).unwrap();
//!     match stream.read(&mut buf) {
//!         Ok(0) => break,
//!         Ok(n) => conn.handle_bytes(now(), &buf[..n]),
//!         Err(_) => conn.handle_timeout(now()),
//!     }
//! }
//! ```

mod wire;

use crate::burst::shrink_after_burst;
use crate::lock::{
    self, Client, ConfigError, EditAction, Intent, IntentError, LockId, NotDelivered, OpId, Options,
};
use crate::mqtt::{
    self, AuthError, ConnectReason, DisconnectCause, PubAckReason, PublishError, PublishId,
    Session, SubscribeId,
};
use crate::store::ResponseParser;
use crate::time::later;
use crate::{Now, QoS};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;
use wire::RequestWriter;

/// What a [`Connection`] tells its driver and user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An event of the lock engine.
    Lock(lock::Event),
    /// The broker accepted the connection.
    Connected {
        /// Whether the broker resumed the MQTT session.
        session_present: bool,
    },
    /// The broker refused the connection (CONNACK reason code).
    ConnectFailed(ConnectReason),
    /// The connection ended; reconnect with a new transport and [`Connection::connect`].
    Disconnected(DisconnectCause),
    /// The MQTT session refused a request the engine wanted to publish; the request will time out.
    PublishRefused(PublishError),
    /// The broker continues an enhanced authentication (AUTH 0x18); answer with
    /// [`Connection::continue_authentication`].
    AuthenticationChallenge {
        /// The broker's Authentication Data.
        data: Option<Bytes>,
    },
    /// The broker accepted a re-authentication ([`Connection::reauthenticate`]).
    Reauthenticated,
}

/// The lock engine over a sans-IO MQTT v5 session: bytes in, bytes out.
#[derive(Debug)]
pub struct Connection {
    mqtt: Session,
    client: Client,
    subscribes: BTreeMap<SubscribeId, String>,
    events: VecDeque<Event>,
    last_now: Now,
    /// The correlation data of requests in flight, until their PUBACK.
    requests: VecDeque<(PublishId, [u8; 16])>,
    /// Writes requests as PUBLISH packets (`None`: a client id too long for a template; requests
    /// then go as messages).
    writer: Option<RequestWriter>,
    /// Reads responses from their packets.
    responses: ResponseParser,
}

impl Connection {
    /// A connection for `config.client_id`; the MQTT client id is set to the same value.
    pub fn new(
        config: lock::Config,
        mut mqtt_options: mqtt::Options,
        now: Now,
        seed: u64,
    ) -> Result<Connection, ConfigError> {
        mqtt_options.client_id = config.client_id.clone();
        let client = Client::new(config, now, seed)?;
        let mut mqtt = Session::new(mqtt_options);
        // Responses are read straight from their property bytes.
        mqtt.set_raw_topic(client.sender().response_topic().clone());
        let writer = RequestWriter::new(client.sender());
        Ok(Connection {
            client,
            mqtt,
            subscribes: BTreeMap::new(),
            events: VecDeque::new(),
            last_now: now,
            requests: VecDeque::new(),
            writer,
            responses: ResponseParser::default(),
        })
    }

    /// The lock engine, read-only: tokens, validity, lock names, counters. Intents go through
    /// the methods of the connection, which keep the engine and the session in step.
    pub fn engine(&self) -> &Client {
        &self.client
    }

    // ----- intents: see `lock::Client` for what each does -------------------------------------

    /// The id of the lock called `name` ([`Client::lock_id`]); no I/O.
    pub fn lock_id(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError> {
        self.client.lock_id(name)
    }

    /// Starts an operation ([`Client::start`]): `Intent::TryAcquire`, `Acquire`, `Release`,
    /// `Holder`, `Hold`, `CloseHold` or `Edit` on `lock`.
    pub fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.intent(now, |c| c.start(now, lock, intent, options))
    }

    /// [`Client::complete_edit`].
    pub fn complete_edit(
        &mut self,
        now: Now,
        op: OpId,
        action: EditAction,
    ) -> Result<(), IntentError> {
        self.intent(now, |c| c.complete_edit(now, op, action))
    }

    /// [`Client::observe`].
    pub fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        self.intent(now, |c| c.observe(now, lock))
    }

    /// [`Client::unobserve`].
    pub fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        self.intent(now, |c| c.unobserve(now, lock))
    }

    /// [`Client::cancel`].
    pub fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
        self.intent(now, |c| c.cancel(now, op))
    }

    /// Runs `intent` on the engine at `now` (which becomes the clock of what its outputs cause)
    /// and moves its outputs into the session: for what the other methods do not cover.
    pub fn intent<T>(&mut self, now: Now, intent: impl FnOnce(&mut Client) -> T) -> T {
        self.tick(now);
        let result = intent(&mut self.client);
        self.pump();
        result
    }

    // ----- the transport ----------------------------------------------------------------------

    /// The MQTT session (read-only).
    pub fn session(&self) -> &Session {
        &self.mqtt
    }

    /// A new transport is up: send CONNECT.
    pub fn connect(&mut self, now: Now) {
        self.tick(now);
        self.mqtt.connect(now.instant);
        self.pump();
    }

    /// Bytes read from the transport.
    pub fn handle_bytes(&mut self, now: Now, bytes: &[u8]) {
        self.tick(now);
        self.mqtt.handle_bytes(now.instant, bytes);
        self.pump();
    }

    /// Deadlines up to `now` have passed (safe to call early, late or twice).
    pub fn handle_timeout(&mut self, now: Now) {
        self.tick(now);
        self.mqtt.handle_timeout(now.instant);
        self.client.handle_timeout(now);
        self.pump();
    }

    /// The transport broke or was closed.
    pub fn handle_transport_closed(&mut self, now: Now) {
        self.tick(now);
        self.mqtt.handle_transport_closed(now.instant);
        self.pump();
    }

    /// Send DISCONNECT (normal disconnection); close the transport once it is written.
    pub fn disconnect(&mut self, now: Now) {
        self.tick(now);
        self.mqtt
            .disconnect(now.instant, mqtt::DisconnectReason::NormalDisconnection);
        self.pump();
    }

    /// New authentication data (a rotated token): sent at once in AUTH 0x19 while connected (the
    /// result is `true`), right after the CONNACK while connecting, and in every later CONNECT.
    /// See [`Session::reauthenticate`].
    pub fn reauthenticate(&mut self, now: Now, data: Bytes) -> Result<bool, AuthError> {
        self.tick(now);
        let sent = self.mqtt.reauthenticate(now.instant, data);
        self.pump();
        sent
    }

    /// Answers an [`Event::AuthenticationChallenge`]. See [`Session::continue_authentication`].
    pub fn continue_authentication(&mut self, now: Now, data: Bytes) -> Result<(), AuthError> {
        self.tick(now);
        let sent = self.mqtt.continue_authentication(now.instant, data);
        self.pump();
        sent
    }

    /// Bytes to write to the transport, in order. A request that waited in the session for room
    /// in flight goes out only if the engine still waits for its answer as it is written.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        loop {
            self.pump();
            let (requests, client) = (&self.requests, &self.client);
            let bytes = self
                .mqtt
                .poll_transmit_with(|id| awaited(requests, client, id));
            // Requests dropped as they were looked at are told to the engine, which may make
            // new ones: the bytes are not complete before that.
            if bytes.is_some() || !self.mqtt.has_events() {
                return bytes;
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pump();
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.mqtt.poll_timeout(), self.client.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves events and requests between the session and the engine, until neither has anything
    /// left. Called by every poll: most of the time there is nothing to move, and that check
    /// stays inline.
    #[inline]
    fn pump(&mut self) {
        if self.mqtt.has_events() || self.client.has_output() {
            self.pump_all();
        }
    }

    #[inline(never)]
    fn pump_all(&mut self) {
        let now = self.last_now;
        loop {
            let mut moved = false;
            while let Some(queued) = self.mqtt.poll_queued() {
                moved = true;
                match queued {
                    mqtt::session::Queued::Event(event) => self.on_mqtt_event(now, event),
                    mqtt::session::Queued::Raw(raw) => {
                        let (correlation_data, outcome) =
                            self.responses
                                .parse_parts(raw.properties(), raw.payload(), || {
                                    raw.packet.slice(raw.payload.clone())
                                });
                        let correlation_data = correlation_data.unwrap_or_default();
                        self.client.handle_response(now, correlation_data, outcome);
                    }
                }
            }
            // The engine has read every event above before its outputs are looked at: a request
            // it made for one event and gave up at a later one never reaches the session.
            while let Some(output) = self.client.poll_output() {
                moved = true;
                match output {
                    lock::Output::Request(request) => {
                        if self.client.awaits(&request.correlation_data) {
                            self.send_request(now, request);
                        }
                    }
                    lock::Output::Subscribe(filter) => {
                        // Not connected: the engine subscribes again on the next connection.
                        if let Ok(id) = self
                            .mqtt
                            .subscribe(now.instant, &[(&filter, QoS::AtLeastOnce)])
                        {
                            self.subscribes.insert(id, filter);
                        }
                    }
                    lock::Output::Event(e) => self.events.push_back(Event::Lock(e)),
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A new reading of the clocks. A pause of the monotonic clock since the last one (a
    /// suspended host, seen by the wall clock) brings the session's send-by instants forward by
    /// as much: a request whose time ran out while the host slept is not sent when it wakes.
    fn tick(&mut self, now: Now) {
        if let Some(pause) = now.pause_since(self.last_now) {
            self.mqtt.handle_clock_pause(pause);
        }
        self.last_now = now;
    }

    /// Hands a request to the session: as a PUBLISH written from the template, or as a message.
    /// It goes out only while the engine waits for its answer: the session drops it unsent
    /// once its timeout has passed (a full in-flight window, no connection).
    fn send_request(&mut self, now: Now, request: lock::Request) {
        let send_by = later(now.instant, request.timeout);
        let published = match &mut self.writer {
            Some(writer) => match writer.write(&request) {
                Ok((bytes, id_at)) => self.mqtt.publish_packet(now.instant, bytes, id_at, send_by),
                Err(refused) => Err(refused),
            },
            None => {
                let message = self.client.to_message(&request);
                self.mqtt.publish_by(now.instant, message, send_by)
            }
        };
        match published {
            Ok(id) => self.requests.push_back((id, request.correlation_data)),
            // The request stays pending in the engine and times out there.
            Err(e) => self.events.push_back(Event::PublishRefused(e)),
        }
    }

    fn on_mqtt_event(&mut self, now: Now, event: mqtt::Event) {
        match event {
            mqtt::Event::Connected { session_present } => {
                self.subscribes.clear();
                self.client.handle_connected(now);
                self.events.push_back(Event::Connected { session_present });
            }
            mqtt::Event::ConnectFailed(reason) => {
                self.events.push_back(Event::ConnectFailed(reason));
            }
            mqtt::Event::Subscribed { id, results } => {
                if let Some(filter) = self.subscribes.remove(&id) {
                    let granted = matches!(results.first(), Some(Ok(_)));
                    self.client.handle_subscribed(now, &filter, granted);
                }
            }
            mqtt::Event::Message(message) => self.client.handle_message(now, &message),
            mqtt::Event::AuthenticationChallenge { data } => {
                self.events
                    .push_back(Event::AuthenticationChallenge { data });
            }
            mqtt::Event::Reauthenticated => self.events.push_back(Event::Reauthenticated),
            mqtt::Event::Disconnected(cause) => {
                self.subscribes.clear();
                self.client.handle_disconnected(now);
                // The engine gave up every request in flight: none of them may reach the store
                // later, re-sent on a resumed session or sent on the next connection.
                // (`canary-resend` plants a bug for the simulator: they are kept and re-sent,
                // see `awaited`.)
                #[cfg(not(feature = "canary-resend"))]
                self.mqtt.drop_unacknowledged();
                self.events.push_back(Event::Disconnected(cause));
            }
            mqtt::Event::PublishAcked {
                id,
                reason,
                message,
            } => {
                // PUBACKs come in the order of the publishes, nearly always.
                let at = self.requests.iter().position(|(p, _)| *p == id);
                let correlation = at.and_then(|at| self.requests.remove(at)).map(|(_, c)| c);
                shrink_after_burst(&mut self.requests);
                let why = match reason {
                    PubAckReason::Success => return,
                    PubAckReason::NoMatchingSubscribers => NotDelivered::NoSubscribers,
                    other => NotDelivered::Refused(format!("{other:?}")),
                };
                match (correlation, message.and_then(|m| m.correlation_data)) {
                    (Some(c), _) => self.client.handle_not_delivered(now, &c, why),
                    (None, Some(c)) => self.client.handle_not_delivered(now, &c, why),
                    (None, None) => {}
                }
            }
            // A request the session dropped unsent, its time run out: the engine learns that
            // the store never saw it. (Those dropped at or after a disconnection the engine has
            // given up already, and it ignores them.)
            mqtt::Event::PublishDropped { id, .. } => {
                if let Some(at) = self.requests.iter().position(|(p, _)| *p == id) {
                    if let Some((_, correlation)) = self.requests.remove(at) {
                        self.client
                            .handle_not_delivered(now, &correlation, NotDelivered::Unsent);
                    }
                }
            }
        }
    }
}

/// Whether the session's publish `id`, about to be written, is a request the engine still
/// waits for (`requests`: the correlation data by publish, in order). A publish that is not a
/// request goes.
fn awaited(requests: &VecDeque<(PublishId, [u8; 16])>, client: &Client, id: PublishId) -> bool {
    // `canary-resend` plants a bug for the simulator: every request leaves, given up or not.
    if cfg!(feature = "canary-resend") {
        return true;
    }
    match requests.binary_search_by_key(&id, |(p, _)| *p) {
        Ok(at) => client.awaits(&requests[at].1),
        Err(_) => true,
    }
}
