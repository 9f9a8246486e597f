//! The MQTT v5 client session state machine.
//!
//! ```text
//!            connect()                CONNACK success
//!   Idle ─────────────────▶ Connecting ───────────────▶ Connected
//!    ▲                          │                           │
//!    └──────────────────────────┴───────────────────────────┘
//!      CONNACK refused, connect timeout, keep-alive timeout, DISCONNECT (either way),
//!      malformed packet, protocol violation, transport closed
//! ```
//!
//! Enhanced authentication (MQTT v5 AUTH): with [`Options::authentication_method`] set, the server
//! may answer the CONNECT with AUTH 0x18 (continue) before its CONNACK; each such challenge is an
//! [`Event::AuthenticationChallenge`], answered with [`Session::continue_authentication`]. Once
//! connected, [`Session::reauthenticate`] sends AUTH 0x19 with fresh data (a rotated token, say);
//! the server answers AUTH 0x00 ([`Event::Reauthenticated`]), another challenge, or DISCONNECT.
//!
//! Unacknowledged QoS 1 publishes survive the trip back to `Idle`: after the next CONNACK they are
//! re-sent with DUP=1 if the broker resumed the session, or reported as [`Event::PublishDropped`] if
//! it did not.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::codec::{
    self, Auth, ConnAck, ConnectFields, DecodeError, EncodeError, Inbound, RawPublish,
};
use super::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{Message, QoS, SharedStr};

/// Configuration of a [`Session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Client identifier. Empty asks the server to assign one (then kept for reconnects).
    pub client_id: String,
    /// Clean Start on the first connection; later connections always resume (Clean Start = 0).
    pub clean_start: bool,
    /// Keep-alive interval, in whole seconds (fractions are dropped, at most 65 535); zero turns
    /// keep-alive off. A PINGREQ goes out when nothing was sent for this long; its PINGRESP must
    /// arrive within half of it.
    pub keep_alive: Duration,
    /// Session Expiry Interval, in seconds.
    pub session_expiry: u32,
    /// User name.
    pub username: Option<String>,
    /// Password (binary data in MQTT v5).
    pub password: Option<Bytes>,
    /// Authentication Method property (enhanced authentication).
    pub authentication_method: Option<String>,
    /// Authentication Data property.
    pub authentication_data: Option<Bytes>,
    /// Maximum Packet Size we advertise and enforce on inbound packets, in bytes (0 counts as 1).
    pub max_packet_size: u32,
    /// Our own cap on unacknowledged QoS 1 publishes (further ones wait in a queue); 0 counts as 1.
    pub max_inflight: u16,
    /// How long to wait for the CONNACK after [`Session::connect`].
    pub connect_timeout: Duration,
}

impl Options {
    /// Options with defaults: clean start, keep-alive 60 s, session expiry 3600 s, no credentials,
    /// maximum inbound packet 1 MiB, at most 100 publishes in flight, connect timeout 30 s.
    pub fn new(client_id: impl Into<String>) -> Self {
        Options {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: Duration::from_secs(60),
            session_expiry: 3600,
            username: None,
            password: None,
            authentication_method: None,
            authentication_data: None,
            max_packet_size: 1 << 20,
            max_inflight: 100,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Identifies a publish accepted by [`Session::publish`] in later events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u64);

/// Identifies a subscribe accepted by [`Session::subscribe`] in its [`Event::Subscribed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscribeId(pub u64);

/// Why [`Session::publish`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A QoS 0 message cannot be sent or queued while not connected.
    #[error("not connected")]
    NotConnected,
    /// The topic is empty or contains a wildcard or a NUL character.
    #[error("invalid topic name")]
    InvalidTopic,
    /// A string or binary field is longer than 65 535 bytes.
    #[error("{0} longer than 65535 bytes")]
    FieldTooLong(&'static str),
    /// The packet exceeds the server's Maximum Packet Size (or the MQTT limit).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Size of the encoded PUBLISH.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The server's Maximum QoS is 0.
    #[error("the server does not support QoS 1")]
    QoSNotSupported,
}

/// Why [`Session::subscribe`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// Not connected.
    #[error("not connected")]
    NotConnected,
    /// No filters given, or an empty filter or one with a NUL character.
    #[error("empty filter list or invalid filter")]
    InvalidFilter,
    /// A filter is longer than 65 535 bytes.
    #[error("{0} longer than 65535 bytes")]
    FieldTooLong(&'static str),
    /// The packet exceeds the server's Maximum Packet Size (or the MQTT limit).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Size of the encoded SUBSCRIBE.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// All 65 535 packet identifiers are in use.
    #[error("no free packet identifier")]
    NoPacketId,
}

/// Why [`Session::reauthenticate`] or [`Session::continue_authentication`] refused to send AUTH.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// [`Options::authentication_method`] is not set: there is no enhanced authentication.
    #[error("no authentication method configured")]
    NoMethod,
    /// A re-authentication is already waiting for the server's answer.
    #[error("a re-authentication is already in progress")]
    InProgress,
    /// The server has sent no challenge (AUTH 0x18) that waits for an answer.
    #[error("no authentication challenge to answer")]
    NoChallenge,
    /// The authentication data is longer than 65 535 bytes.
    #[error("{0} longer than 65535 bytes")]
    FieldTooLong(&'static str),
}

/// Why the session left the connected (or connecting) state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectCause {
    /// The server sent DISCONNECT.
    ByServer(DisconnectReason),
    /// We called [`Session::disconnect`].
    ByClient,
    /// No PINGRESP within half the keep-alive interval after a PINGREQ.
    KeepAliveTimeout,
    /// No CONNACK within [`Options::connect_timeout`].
    ConnectTimeout,
    /// The transport closed ([`Session::handle_transport_closed`]).
    TransportClosed,
    /// The server broke the protocol (we sent DISCONNECT with a reason code).
    ProtocolViolation(String),
    /// The server sent bytes that do not decode (we sent DISCONNECT 0x81 or 0x95).
    Malformed(DecodeError),
    /// The options cannot be encoded in a CONNECT (a field longer than 65 535 bytes).
    InvalidOptions(&'static str),
}

/// Something that happened, from [`Session::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The CONNACK accepted the connection.
    Connected {
        /// Whether the server resumed our session.
        session_present: bool,
    },
    /// The CONNACK refused the connection; the session is disconnected.
    ConnectFailed(ConnectReason),
    /// The SUBACK for a subscribe: the granted QoS or failure per filter, in request order.
    Subscribed {
        /// The subscribe.
        id: SubscribeId,
        /// One result per filter.
        results: Vec<Result<QoS, SubscribeFailure>>,
    },
    /// The PUBACK for a QoS 1 publish.
    PublishAcked {
        /// The publish.
        id: PublishId,
        /// The server's verdict.
        reason: PubAckReason,
        /// The message, handed back (its correlation data names the request it carried); `None`
        /// for a packet the caller encoded itself.
        message: Option<Message>,
    },
    /// A QoS 1 publish that was sent but will never be acknowledged: the broker did not resume our
    /// session (or its new Maximum Packet Size is below the packet's size). The caller decides
    /// whether to publish it again.
    PublishDropped {
        /// The publish.
        id: PublishId,
        /// The message, handed back to be published again if the caller wants; `None` for a
        /// packet the caller encoded itself.
        message: Option<Message>,
    },
    /// An application message from the server (already acknowledged if QoS 1).
    Message(Message),
    /// The server continues an enhanced authentication (AUTH 0x18, before the CONNACK or during
    /// a re-authentication) with this Authentication Data; answer with
    /// [`Session::continue_authentication`].
    AuthenticationChallenge {
        /// The server's Authentication Data.
        data: Option<Bytes>,
    },
    /// The server accepted a re-authentication (AUTH 0x00).
    Reauthenticated,
    /// The connection is over. Subscribes without a SUBACK are void. No further event comes until
    /// the next [`Session::connect`].
    Disconnected(DisconnectCause),
}

/// Connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection (or none we will speak on).
    Idle,
    /// CONNECT sent, waiting for CONNACK until the deadline (none if it is beyond `Instant`).
    Connecting { deadline: Option<Instant> },
    /// CONNACK received.
    Connected,
}

/// A QoS 1 publish that has a packet identifier and is (or was) on the wire.
#[derive(Clone, Debug)]
struct Inflight {
    id: PublishId,
    packet_id: u16,
    message: Outgoing,
}

/// A QoS 1 publish waiting for room in flight. `packet_id` is set when it was already sent on an
/// earlier connection (then it goes out again with DUP=1).
#[derive(Clone, Debug)]
struct Waiting {
    id: PublishId,
    packet_id: Option<u16>,
    message: Outgoing,
}

/// The size of the blocks raw-topic packets are copied into.
const RX_BLOCK: usize = 16 * 1024;

/// An entry of the event queue: an event, or a message on the raw topic still as bytes.
#[derive(Debug)]
pub(crate) enum Queued {
    Event(Event),
    Raw(RawPublish),
}

/// What a QoS 1 publish sends: a message, or a whole PUBLISH packet encoded by the caller.
#[derive(Clone, Debug)]
enum Outgoing {
    Message(Message),
    /// A QoS 1 PUBLISH (DUP=0, RETAIN=0) whose packet identifier, two bytes at `id_at`, is filled
    /// in when it is sent.
    Packet {
        bytes: Bytes,
        id_at: usize,
    },
}

impl Outgoing {
    fn len(&self) -> Result<usize, EncodeError> {
        match self {
            Outgoing::Message(m) => codec::publish_len(m),
            Outgoing::Packet { bytes, .. } => Ok(bytes.len()),
        }
    }

    fn write(&self, tx: &mut BytesMut, packet_id: u16, dup: bool) {
        match self {
            // Checked when published: the message encodes.
            Outgoing::Message(m) => {
                let _ = codec::encode_publish(tx, m, packet_id, dup);
            }
            Outgoing::Packet { bytes, id_at } => {
                let start = tx.len();
                codec::reserve_block(tx, bytes.len());
                tx.extend_from_slice(bytes);
                tx[start] |= u8::from(dup) << 3;
                tx[start + id_at..start + id_at + 2].copy_from_slice(&packet_id.to_be_bytes());
            }
        }
    }

    fn into_message(self) -> Option<Message> {
        match self {
            Outgoing::Message(m) => Some(m),
            Outgoing::Packet { .. } => None,
        }
    }
}

/// The packet identifiers in use, one bit each.
#[derive(Debug)]
struct PacketIds(Vec<u64>);

impl PacketIds {
    fn new() -> Self {
        PacketIds(vec![0; 1024])
    }

    /// Marks `id` used; `false` if it already was.
    fn insert(&mut self, id: u16) -> bool {
        let (word, bit) = (usize::from(id >> 6), 1u64 << (id & 63));
        let free = self.0[word] & bit == 0;
        self.0[word] |= bit;
        free
    }

    fn remove(&mut self, id: &u16) {
        self.0[usize::from(*id >> 6)] &= !(1u64 << (*id & 63));
    }
}

/// Limits learnt from the last CONNACK.
#[derive(Clone, Copy, Debug)]
struct ServerLimits {
    receive_maximum: u16,
    maximum_packet_size: Option<u32>,
    qos1: bool,
    keep_alive: Duration,
}

/// A sans-IO MQTT v5 client session: bytes in, bytes and events out.
///
/// After every call, drain [`Session::poll_transmit`] and [`Session::poll_event`] until `None`,
/// then call [`Session::handle_timeout`] at [`Session::poll_timeout`].
///
/// ```
/// use leasedlock::mqtt::{Event, Options, Session};
/// use leasedlock::{Message, QoS};
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut session = Session::new(Options::new("client-1"));
/// session.connect(now);
/// let connect = session.poll_transmit().unwrap(); // write these bytes to the socket
/// assert_eq!(connect[0], 0x10);
///
/// session.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]); // CONNACK read from the socket
/// assert_eq!(session.poll_event(), Some(Event::Connected { session_present: false }));
///
/// let message = Message { topic: "a/b".into(), qos: QoS::AtLeastOnce, ..Message::default() };
/// let id = session.publish(now, message).unwrap();
/// assert!(session.poll_transmit().is_some()); // the PUBLISH, packet id 1
/// session.handle_bytes(now, &[0x40, 0x02, 0x00, 0x01]); // its PUBACK
/// assert!(matches!(session.poll_event(), Some(Event::PublishAcked { id: acked, .. }) if acked == id));
/// ```
#[derive(Debug)]
pub struct Session {
    options: Options,
    client_id: String,
    connected_before: bool,
    /// Clean Start of the CONNECT in progress.
    clean_start_sent: bool,
    state: State,
    limits: ServerLimits,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<Queued>,
    next_packet_id: u16,
    next_id: u64,
    inflight: VecDeque<Inflight>,
    waiting: VecDeque<Waiting>,
    subscribes: VecDeque<(u16, SubscribeId, usize)>,
    /// Packet identifiers of `inflight`, of previously sent `waiting` entries and of `subscribes`.
    used_packet_ids: PacketIds,
    /// The topic of the last inbound PUBLISH (see `codec::decode`).
    topic_cache: SharedStr,
    /// Messages on this topic are left as bytes (see [`Session::set_raw_topic`]).
    raw_topic: Option<SharedStr>,
    /// The block raw-topic packets are copied into (see `Session::copy_packet`).
    rx_block: BytesMut,
    /// The topic of the last outbound PUBLISH, known to be valid.
    checked_topic: SharedStr,
    last_sent: Option<Instant>,
    ping_deadline: Option<Instant>,
    /// Where the enhanced authentication exchange stands on this connection.
    auth: AuthExchange,
    /// New authentication data arrived after the CONNECT went out: re-authenticate once the
    /// CONNACK arrives.
    reauthenticate_after_connack: bool,
}

/// The enhanced authentication exchange on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthExchange {
    /// Nothing under way.
    Idle,
    /// We sent AUTH (0x19, or 0x18 answering a challenge); the server has not decided yet.
    AwaitingServer,
    /// The server sent AUTH 0x18; we have not answered yet.
    Challenged,
}

impl Session {
    /// A disconnected session; call [`Session::connect`] once the transport is up.
    pub fn new(options: Options) -> Self {
        let keep_alive = whole_secs(options.keep_alive);
        Session {
            client_id: options.client_id.clone(),
            limits: ServerLimits {
                receive_maximum: u16::MAX,
                maximum_packet_size: None,
                qos1: true,
                keep_alive,
            },
            options,
            connected_before: false,
            clean_start_sent: false,
            state: State::Idle,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            events: VecDeque::new(),
            next_packet_id: 1,
            next_id: 0,
            inflight: VecDeque::new(),
            waiting: VecDeque::new(),
            subscribes: VecDeque::new(),
            used_packet_ids: PacketIds::new(),
            topic_cache: SharedStr::default(),
            raw_topic: None,
            rx_block: BytesMut::new(),
            checked_topic: SharedStr::from_static("/"),
            last_sent: None,
            ping_deadline: None,
            auth: AuthExchange::Idle,
            reauthenticate_after_connack: false,
        }
    }

    /// The transport is up: queue a CONNECT. The first connection uses [`Options::clean_start`],
    /// later ones resume the session. Calling it while connected starts over on a new transport.
    pub fn connect(&mut self, now: Instant) {
        self.rx.clear();
        self.tx.clear();
        self.clear_subscribes();
        self.ping_deadline = None;
        self.auth = AuthExchange::Idle;
        self.reauthenticate_after_connack = false;
        let keep_alive = whole_secs(self.options.keep_alive);
        self.limits.keep_alive = keep_alive;
        self.clean_start_sent = self.options.clean_start && !self.connected_before;
        let fields = ConnectFields {
            client_id: &self.client_id,
            clean_start: self.clean_start_sent,
            keep_alive_secs: keep_alive.as_secs() as u16,
            session_expiry: self.options.session_expiry,
            username: self.options.username.as_deref(),
            password: self.options.password.as_deref(),
            authentication_method: self.options.authentication_method.as_deref(),
            authentication_data: self.options.authentication_data.as_deref(),
            maximum_packet_size: self.max_inbound(),
        };
        match codec::encode_connect(&mut self.tx, &fields) {
            Ok(()) => {
                self.state = State::Connecting {
                    deadline: now.checked_add(self.options.connect_timeout),
                };
                self.last_sent = Some(now);
            }
            Err(e) => {
                self.state = State::Idle;
                let field = match e {
                    EncodeError::FieldTooLong(field) => field,
                    EncodeError::PacketTooLong => "CONNECT",
                };
                self.push_event(Event::Disconnected(DisconnectCause::InvalidOptions(field)));
            }
        }
    }

    /// Bytes received from the transport, in any split. Ignored while not connecting or connected.
    /// A PUBACK or SUBACK for a packet identifier we are not waiting on is ignored; a malformed or
    /// oversized packet, or a protocol violation, ends the connection (DISCONNECT sent).
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let mut bytes = bytes;
        let max = self.max_inbound() as usize;
        // Whole packets straight from the input while nothing is buffered: a PUBACK is read in
        // place, any other packet copied once into a buffer of its own.
        while self.rx.is_empty() && self.state != State::Idle {
            let frame = match codec::frame(bytes, max) {
                Err(e) => return self.fail_malformed(e),
                Ok(Some(frame)) if bytes.len() >= frame.len => frame,
                Ok(_) => break,
            };
            let (packet, rest) = bytes.split_at(frame.len);
            bytes = rest;
            let inbound = if packet[0] == 0x40 {
                codec::decode_puback(&packet[frame.header_len..])
            } else {
                let packet = self.copy_packet(packet, frame.header_len);
                codec::decode(
                    packet,
                    frame,
                    &mut self.topic_cache,
                    self.raw_topic.as_ref(),
                )
            };
            match inbound {
                Ok(inbound) => self.handle_packet(now, inbound),
                Err(e) => return self.fail_malformed(e),
            }
        }
        while self.state != State::Idle {
            // Buffer no more than the rest of the current frame, so that the buffer stays bounded
            // by the maximum packet size and the fixed header is checked before the body arrives.
            let want = match codec::frame(&self.rx, max) {
                Err(e) => return self.fail_malformed(e),
                Ok(Some(frame)) if self.rx.len() >= frame.len => {
                    let packet = self.rx.split_to(frame.len).freeze();
                    match codec::decode(
                        packet,
                        frame,
                        &mut self.topic_cache,
                        self.raw_topic.as_ref(),
                    ) {
                        Ok(inbound) => self.handle_packet(now, inbound),
                        Err(e) => return self.fail_malformed(e),
                    }
                    continue;
                }
                Ok(Some(frame)) => frame.len - self.rx.len(),
                Ok(None) => 1,
            };
            if bytes.is_empty() {
                return;
            }
            let take = want.min(bytes.len());
            self.rx.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    /// An inbound packet, copied out of the caller's buffer. A PUBLISH on the raw topic (a
    /// response: read and dropped at once) is cut from a shared block, one allocation for many;
    /// any other packet gets a buffer of its exact size, since what it carries may be kept.
    fn copy_packet(&mut self, packet: &[u8], header_len: usize) -> Bytes {
        let raw = packet[0] >> 4 == 3
            && self.raw_topic.as_ref().is_some_and(|topic| {
                let t = topic.as_bytes();
                let len = (t.len() as u16).to_be_bytes();
                packet.get(header_len..header_len + 2) == Some(&len[..])
                    && packet.get(header_len + 2..header_len + 2 + t.len()) == Some(t)
            });
        if !raw {
            return Bytes::copy_from_slice(packet);
        }
        if self.rx_block.capacity() - self.rx_block.len() < packet.len() {
            self.rx_block = BytesMut::with_capacity(packet.len().max(RX_BLOCK));
        }
        self.rx_block.extend_from_slice(packet);
        self.rx_block.split().freeze()
    }

    /// Bytes to write to the transport, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.tx.is_empty() {
            None
        } else {
            Some(self.tx.split().freeze())
        }
    }

    /// Whether [`Session::poll_event`] has something.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        Some(match self.poll_queued()? {
            Queued::Event(event) => event,
            Queued::Raw(raw) => Event::Message(raw.into_message()),
        })
    }

    /// The next event, a message on the raw topic left as bytes.
    pub(crate) fn poll_queued(&mut self) -> Option<Queued> {
        self.events.pop_front()
    }

    /// Messages on `topic` are reported by [`Session::poll_queued`] as bytes (checked, but not
    /// turned into a [`Message`]).
    pub(crate) fn set_raw_topic(&mut self, topic: SharedStr) {
        self.topic_cache = topic.clone();
        self.raw_topic = Some(topic);
    }

    fn push_event(&mut self, event: Event) {
        self.events.push_back(Queued::Event(event));
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Connecting { deadline } => deadline,
            State::Connected => self.ping_deadline.or_else(|| self.next_ping()),
        }
    }

    /// Time has passed: fire due timers. Safe to call early, late or repeatedly.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Idle => {}
            State::Connecting { deadline } => {
                if deadline.is_some_and(|deadline| now >= deadline) {
                    self.end(DisconnectCause::ConnectTimeout, None);
                }
            }
            State::Connected => {
                if let Some(deadline) = self.ping_deadline {
                    if now >= deadline {
                        self.end(DisconnectCause::KeepAliveTimeout, None);
                    }
                } else if self.next_ping().is_some_and(|at| now >= at) {
                    codec::encode_pingreq(&mut self.tx);
                    self.last_sent = Some(now);
                    self.ping_deadline =
                        Some(now.checked_add(self.limits.keep_alive / 2).unwrap_or(now));
                }
            }
        }
    }

    /// Publishes a message. QoS 0 goes out at once (or fails when not connected). QoS 1 is queued
    /// and sent as soon as connected with room in flight; its outcome arrives as
    /// [`Event::PublishAcked`] or [`Event::PublishDropped`].
    pub fn publish(&mut self, now: Instant, message: Message) -> Result<PublishId, PublishError> {
        // The same topic as the previous publish (the same memory: the request topic is one
        // shared string) was checked already.
        let topic = message.topic.as_bytes();
        if !std::ptr::eq(topic, self.checked_topic.as_bytes()) {
            if topic.is_empty() || topic.iter().any(|&b| matches!(b, b'+' | b'#' | 0)) {
                return Err(PublishError::InvalidTopic);
            }
            self.checked_topic = message.topic.clone();
        }
        if message.qos == QoS::AtLeastOnce && !self.limits.qos1 {
            return Err(PublishError::QoSNotSupported);
        }
        if message.qos == QoS::AtMostOnce && self.state != State::Connected {
            return Err(PublishError::NotConnected);
        }
        let size = codec::publish_len(&message).map_err(|e| match e {
            EncodeError::FieldTooLong(field) => PublishError::FieldTooLong(field),
            EncodeError::PacketTooLong => PublishError::TooLarge {
                size: usize::MAX,
                max: self.max_outbound(),
            },
        })?;
        let max = self.max_outbound();
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        match message.qos {
            QoS::AtMostOnce => {
                let id = PublishId(self.next_id);
                self.next_id += 1;
                // Checked above: the message encodes.
                let _ = codec::encode_publish(&mut self.tx, &message, 0, false);
                self.last_sent = Some(now);
                Ok(id)
            }
            QoS::AtLeastOnce => Ok(self.publish_qos1(now, Outgoing::Message(message))),
        }
    }

    /// Publishes a QoS 1 PUBLISH packet encoded by the caller (DUP=0, RETAIN=0, the two bytes at
    /// `id_at` left for the packet identifier), like [`Session::publish`].
    pub(crate) fn publish_packet(
        &mut self,
        now: Instant,
        bytes: Bytes,
        id_at: usize,
    ) -> Result<PublishId, PublishError> {
        debug_assert_eq!(bytes.first(), Some(&0x32));
        debug_assert!(id_at + 2 <= bytes.len());
        if !self.limits.qos1 {
            return Err(PublishError::QoSNotSupported);
        }
        let (size, max) = (bytes.len(), self.max_outbound());
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        Ok(self.publish_qos1(now, Outgoing::Packet { bytes, id_at }))
    }

    fn publish_qos1(&mut self, now: Instant, message: Outgoing) -> PublishId {
        let id = PublishId(self.next_id);
        self.next_id += 1;
        // Nothing queued before it and room in flight: straight out (the common case).
        if self.waiting.is_empty()
            && self.state == State::Connected
            && self.inflight.len() < self.inflight_limit()
        {
            if let Some(packet_id) = self.take_packet_id() {
                message.write(&mut self.tx, packet_id, false);
                self.last_sent = Some(now);
                self.inflight.push_back(Inflight {
                    id,
                    packet_id,
                    message,
                });
                return id;
            }
        }
        self.waiting.push_back(Waiting {
            id,
            packet_id: None,
            message,
        });
        self.drain_waiting(now);
        id
    }

    /// Subscribes to topic filters; the SUBACK arrives as [`Event::Subscribed`]. Only while
    /// connected: a connection lost before the SUBACK voids the request.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: &[(&str, QoS)],
    ) -> Result<SubscribeId, SubscribeError> {
        if self.state != State::Connected {
            return Err(SubscribeError::NotConnected);
        }
        if filters.is_empty()
            || filters
                .iter()
                .any(|(f, _)| f.is_empty() || f.contains('\0'))
        {
            return Err(SubscribeError::InvalidFilter);
        }
        // Encoded with a stand-in packet id first: a refused request must not hold an id.
        let encoded = codec::encode_subscribe(1, filters).map_err(|e| match e {
            EncodeError::FieldTooLong(field) => SubscribeError::FieldTooLong(field),
            EncodeError::PacketTooLong => SubscribeError::TooLarge {
                size: usize::MAX,
                max: self.max_outbound(),
            },
        })?;
        let max = self.max_outbound();
        if encoded.len() > max {
            return Err(SubscribeError::TooLarge {
                size: encoded.len(),
                max,
            });
        }
        let packet_id = self.take_packet_id().ok_or(SubscribeError::NoPacketId)?;
        let encoded = codec::encode_subscribe(packet_id, filters).map_err(|_| {
            self.used_packet_ids.remove(&packet_id);
            SubscribeError::NoPacketId
        })?;
        let id = SubscribeId(self.next_id);
        self.next_id += 1;
        self.subscribes.push_back((packet_id, id, filters.len()));
        self.send(now, &encoded);
        Ok(id)
    }

    /// New Authentication Data (a rotated token, say): kept for every later CONNECT and, while
    /// connected, sent at once in AUTH 0x19 (re-authenticate) with [`Options::authentication_method`].
    /// Returns whether AUTH went out; the server answers [`Event::Reauthenticated`], an
    /// [`Event::AuthenticationChallenge`], or DISCONNECT. While not connected the data waits for
    /// the next CONNECT; while connecting (CONNECT sent with older data) AUTH 0x19 goes out right
    /// after the CONNACK.
    pub fn reauthenticate(&mut self, now: Instant, data: Bytes) -> Result<bool, AuthError> {
        if self.options.authentication_method.is_none() {
            return Err(AuthError::NoMethod);
        }
        if data.len() > usize::from(u16::MAX) {
            return Err(AuthError::FieldTooLong("authentication data"));
        }
        match self.state {
            State::Idle => {}
            State::Connecting { .. } => self.reauthenticate_after_connack = true,
            State::Connected if self.auth != AuthExchange::Idle => {
                return Err(AuthError::InProgress)
            }
            State::Connected => {
                self.options.authentication_data = Some(data);
                self.send_reauthenticate(now);
                return Ok(true);
            }
        }
        self.options.authentication_data = Some(data);
        Ok(false)
    }

    /// Sends AUTH 0x19 with the method and the current authentication data.
    fn send_reauthenticate(&mut self, now: Instant) {
        if let Some(method) = self.options.authentication_method.as_deref() {
            // Lengths were checked when the data was given: this cannot fail.
            let _ = codec::encode_auth(
                &mut self.tx,
                REAUTHENTICATE,
                method,
                self.options.authentication_data.as_deref(),
            );
            self.last_sent = Some(now);
            self.auth = AuthExchange::AwaitingServer;
        }
    }

    /// Answers the server's [`Event::AuthenticationChallenge`] with AUTH 0x18 (continue
    /// authentication) carrying `data`.
    pub fn continue_authentication(&mut self, now: Instant, data: Bytes) -> Result<(), AuthError> {
        let Some(method) = self.options.authentication_method.as_deref() else {
            return Err(AuthError::NoMethod);
        };
        if self.auth != AuthExchange::Challenged || self.state == State::Idle {
            return Err(AuthError::NoChallenge);
        }
        codec::encode_auth(&mut self.tx, CONTINUE_AUTHENTICATION, method, Some(&data))
            .map_err(|_| AuthError::FieldTooLong("authentication data"))?;
        self.last_sent = Some(now);
        self.auth = AuthExchange::AwaitingServer;
        Ok(())
    }

    /// Sends DISCONNECT with `reason` and ends the connection ([`DisconnectCause::ByClient`]).
    /// Unacknowledged publishes are kept for the next connection.
    pub fn disconnect(&mut self, now: Instant, reason: DisconnectReason) {
        if self.state != State::Idle {
            self.last_sent = Some(now);
            self.end(DisconnectCause::ByClient, Some(reason));
        }
    }

    /// The transport is gone.
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        if self.state != State::Idle {
            self.end(DisconnectCause::TransportClosed, None);
        }
        self.tx.clear();
    }

    /// Whether a CONNACK accepted the current connection.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// QoS 1 publishes sent and not yet acknowledged (those waiting for room are not counted). While
    /// connected it never exceeds the smaller of [`Options::max_inflight`] and the server's Receive
    /// Maximum.
    pub fn publishes_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The client identifier: the configured one, or the one the server assigned.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn handle_packet(&mut self, now: Instant, inbound: Inbound) {
        if let State::Connecting { .. } = self.state {
            return match inbound {
                Inbound::ConnAck(ack) => self.handle_connack(now, ack),
                Inbound::Auth(auth) => self.handle_auth(auth),
                Inbound::Disconnect(reason) => self.end(DisconnectCause::ByServer(reason), None),
                _ => self.violation("packet before CONNACK", DisconnectReason::ProtocolError),
            };
        }
        match inbound {
            Inbound::ConnAck(_) => {
                self.violation("second CONNACK", DisconnectReason::ProtocolError)
            }
            Inbound::Publish(publish) => {
                if self.accept_publish(
                    now,
                    publish.exactly_once,
                    publish.topic_alias,
                    publish.message.topic.is_empty(),
                    publish.message.qos,
                    publish.packet_id,
                ) {
                    self.push_event(Event::Message(publish.message));
                }
            }
            Inbound::RawPublish(raw) => {
                if self.accept_publish(
                    now,
                    raw.exactly_once,
                    raw.topic_alias,
                    raw.topic.is_empty(),
                    raw.qos,
                    raw.packet_id,
                ) {
                    self.events.push_back(Queued::Raw(raw));
                }
            }
            Inbound::PubAck { packet_id, reason } => {
                if let Some(pos) = self.inflight.iter().position(|p| p.packet_id == packet_id) {
                    if let Some(done) = self.inflight.remove(pos) {
                        self.used_packet_ids.remove(&packet_id);
                        self.push_event(Event::PublishAcked {
                            id: done.id,
                            reason,
                            message: done.message.into_message(),
                        });
                    }
                    self.drain_waiting(now);
                }
            }
            Inbound::SubAck {
                packet_id,
                results,
                granted_exactly_once,
            } => {
                let Some(pos) = self.subscribes.iter().position(|s| s.0 == packet_id) else {
                    return;
                };
                let expected = self.subscribes[pos].2;
                if granted_exactly_once || results.len() != expected {
                    return self.violation(
                        "SUBACK does not answer our SUBSCRIBE",
                        DisconnectReason::ProtocolError,
                    );
                }
                if let Some((_, id, _)) = self.subscribes.remove(pos) {
                    self.used_packet_ids.remove(&packet_id);
                    self.push_event(Event::Subscribed { id, results });
                }
            }
            Inbound::PingResp => self.ping_deadline = None,
            Inbound::Disconnect(reason) => self.end(DisconnectCause::ByServer(reason), None),
            Inbound::Auth(auth) => self.handle_auth(auth),
            Inbound::Unexpected(packet_type) => self.violation(
                &format!("unexpected packet type {packet_type}"),
                DisconnectReason::ProtocolError,
            ),
        }
    }

    /// A server AUTH: a challenge (0x18) while connecting with a method or while
    /// re-authenticating, or success (0x00) ending a re-authentication. Anything else, or another
    /// method than ours, breaks the protocol.
    fn handle_auth(&mut self, auth: Auth) {
        let Some(method) = self.options.authentication_method.as_deref() else {
            return self.violation(
                "AUTH without enhanced authentication",
                DisconnectReason::ProtocolError,
            );
        };
        if auth.method.as_deref() != Some(method) {
            return self.violation(
                "AUTH with another authentication method",
                DisconnectReason::ProtocolError,
            );
        }
        let connecting = matches!(self.state, State::Connecting { .. });
        match (auth.reason, self.auth) {
            (CONTINUE_AUTHENTICATION, AuthExchange::Idle) if connecting => {}
            (CONTINUE_AUTHENTICATION, AuthExchange::AwaitingServer) => {}
            (SUCCESS, AuthExchange::AwaitingServer) if !connecting => {
                self.auth = AuthExchange::Idle;
                self.push_event(Event::Reauthenticated);
                return;
            }
            _ => {
                return self.violation(
                    "unexpected AUTH reason code",
                    DisconnectReason::ProtocolError,
                )
            }
        }
        self.auth = AuthExchange::Challenged;
        self.push_event(Event::AuthenticationChallenge { data: auth.data });
    }

    fn handle_connack(&mut self, now: Instant, ack: ConnAck) {
        if let Some(reason) = ack.refused {
            self.state = State::Idle;
            self.rx.clear();
            self.push_event(Event::ConnectFailed(reason));
            return;
        }
        if ack.session_present && self.clean_start_sent {
            return self.violation(
                "CONNACK resumes a session after Clean Start",
                DisconnectReason::ProtocolError,
            );
        }
        if ack.receive_maximum == Some(0) || ack.maximum_packet_size == Some(0) {
            return self.violation(
                "CONNACK with Receive Maximum or Maximum Packet Size 0",
                DisconnectReason::ProtocolError,
            );
        }
        if let Some(id) = ack.assigned_client_id {
            self.client_id = id;
        }
        self.limits = ServerLimits {
            receive_maximum: ack.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: ack.maximum_packet_size,
            qos1: ack.maximum_qos != Some(0),
            keep_alive: ack.server_keep_alive.map_or(self.limits.keep_alive, |s| {
                Duration::from_secs(u64::from(s))
            }),
        };
        self.state = State::Connected;
        self.auth = AuthExchange::Idle;
        self.connected_before = true;
        if std::mem::take(&mut self.reauthenticate_after_connack) {
            self.send_reauthenticate(now);
        }
        self.push_event(Event::Connected {
            session_present: ack.session_present,
        });
        // Everything sent before goes back to the head of the queue, in its original order.
        let resent: Vec<Inflight> = self.inflight.drain(..).collect();
        for previous in resent.into_iter().rev() {
            self.waiting.push_front(Waiting {
                id: previous.id,
                packet_id: Some(previous.packet_id),
                message: previous.message,
            });
        }
        if !ack.session_present {
            let mut kept = VecDeque::with_capacity(self.waiting.len());
            for waiting in std::mem::take(&mut self.waiting) {
                if let Some(packet_id) = waiting.packet_id {
                    self.used_packet_ids.remove(&packet_id);
                    self.push_event(Event::PublishDropped {
                        id: waiting.id,
                        message: waiting.message.into_message(),
                    });
                } else {
                    kept.push_back(waiting);
                }
            }
            self.waiting = kept;
        }
        self.drain_waiting(now);
    }

    /// Checks an inbound PUBLISH and acknowledges it (QoS 1); `false` when it ended the session.
    fn accept_publish(
        &mut self,
        now: Instant,
        exactly_once: bool,
        topic_alias: Option<u16>,
        topic_empty: bool,
        qos: QoS,
        packet_id: u16,
    ) -> bool {
        if exactly_once {
            self.violation(
                "QoS 2 PUBLISH on a QoS 1 subscription",
                DisconnectReason::QoSNotSupported,
            );
            return false;
        }
        if topic_alias.is_some() {
            self.violation(
                "Topic Alias above our maximum of 0",
                DisconnectReason::TopicAliasInvalid,
            );
            return false;
        }
        if topic_empty {
            self.violation(
                "PUBLISH without a topic name",
                DisconnectReason::ProtocolError,
            );
            return false;
        }
        if qos == QoS::AtLeastOnce {
            codec::encode_puback(&mut self.tx, packet_id);
            self.last_sent = Some(now);
        }
        true
    }
    /// Sends waiting QoS 1 publishes while there is room in flight.
    fn drain_waiting(&mut self, now: Instant) {
        if self.state != State::Connected {
            return;
        }
        let limit = self.inflight_limit();
        while self.inflight.len() < limit {
            let Some(next) = self.waiting.pop_front() else {
                crate::burst::shrink_after_burst(&mut self.waiting);
                return;
            };
            let (packet_id, dup) = match next.packet_id {
                Some(packet_id) => (packet_id, true),
                None => match self.take_packet_id() {
                    Some(packet_id) => (packet_id, false),
                    None => {
                        self.waiting.push_front(next);
                        return;
                    }
                },
            };
            let fits = next.message.len().is_ok_and(|n| n <= self.max_outbound());
            match fits {
                true => {
                    next.message.write(&mut self.tx, packet_id, dup);
                    self.last_sent = Some(now);
                    self.inflight.push_back(Inflight {
                        id: next.id,
                        packet_id,
                        message: next.message,
                    });
                }
                // Only possible when a new CONNACK lowered the server's Maximum Packet Size.
                _ => {
                    self.used_packet_ids.remove(&packet_id);
                    self.push_event(Event::PublishDropped {
                        id: next.id,
                        message: next.message.into_message(),
                    });
                }
            }
        }
    }

    /// How many QoS 1 publishes may await their PUBACK at once.
    fn inflight_limit(&self) -> usize {
        usize::from(
            self.options
                .max_inflight
                .min(self.limits.receive_maximum)
                .max(1),
        )
    }

    /// Takes a packet identifier not used by any publish or subscribe awaiting its
    /// acknowledgement: the next one after the last taken, wrapping from 65 535 to 1.
    fn take_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if self.used_packet_ids.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn clear_subscribes(&mut self) {
        for (packet_id, _, _) in self.subscribes.drain(..) {
            self.used_packet_ids.remove(&packet_id);
        }
    }

    /// The Maximum Packet Size we advertise and enforce (MQTT forbids 0).
    fn max_inbound(&self) -> u32 {
        self.options.max_packet_size.max(1)
    }

    fn max_outbound(&self) -> usize {
        self.limits
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize)
    }

    fn next_ping(&self) -> Option<Instant> {
        if self.limits.keep_alive.is_zero() {
            return None;
        }
        self.last_sent
            .and_then(|at| at.checked_add(self.limits.keep_alive))
    }

    fn send(&mut self, now: Instant, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
        self.last_sent = Some(now);
    }

    fn fail_malformed(&mut self, error: DecodeError) {
        let reason = match error {
            DecodeError::TooLarge { .. } => DisconnectReason::PacketTooLarge,
            _ => DisconnectReason::MalformedPacket,
        };
        self.end(DisconnectCause::Malformed(error), Some(reason));
    }

    fn violation(&mut self, what: &str, reason: DisconnectReason) {
        self.end(
            DisconnectCause::ProtocolViolation(what.to_owned()),
            Some(reason),
        );
    }

    /// Ends the connection: optionally sends DISCONNECT, reports `cause` once.
    fn end(&mut self, cause: DisconnectCause, send: Option<DisconnectReason>) {
        if let Some(reason) = send {
            codec::encode_disconnect(&mut self.tx, reason);
        }
        self.state = State::Idle;
        self.rx.clear();
        self.clear_subscribes();
        self.ping_deadline = None;
        self.auth = AuthExchange::Idle;
        self.reauthenticate_after_connack = false;
        self.push_event(Event::Disconnected(cause));
    }
}

/// AUTH reason codes.
const SUCCESS: u8 = 0x00;
const CONTINUE_AUTHENTICATION: u8 = 0x18;
const REAUTHENTICATE: u8 = 0x19;

/// A keep-alive interval in whole seconds that fits the 16-bit CONNECT field.
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().min(u64::from(u16::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests make up their own time origin
    fn t0() -> Instant {
        Instant::now()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn tx(s: &mut Session) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = s.poll_transmit() {
            out.extend_from_slice(&b);
        }
        out
    }

    fn events(s: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    const CONNACK: [u8; 5] = [0x20, 0x03, 0x00, 0x00, 0x00];
    const CONNACK_RESUMED: [u8; 5] = [0x20, 0x03, 0x01, 0x00, 0x00];

    /// A session connected at `t0` with `options`, its CONNECT drained.
    fn connected(options: Options, now: Instant) -> Session {
        let mut s = Session::new(options);
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &CONNACK);
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        s
    }

    fn message(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            ..Message::default()
        }
    }

    /// The PUBLISH bytes of `message("t", b"x")` with a packet id and DUP flag.
    fn publish_t_x(packet_id: u16, dup: bool) -> Vec<u8> {
        let [hi, lo] = packet_id.to_be_bytes();
        vec![
            if dup { 0x3A } else { 0x32 },
            7,
            0,
            1,
            b't',
            hi,
            lo,
            0,
            b'x',
        ]
    }

    #[test]
    fn connect_and_connack_success() {
        let now = t0();
        let mut s = Session::new(Options::new("c"));
        assert!(!s.is_connected());
        assert_eq!(s.poll_timeout(), None);
        s.connect(now);
        #[rustfmt::skip]
        let connect = [
            0x10, 0x20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60,
            0x12, 0x11, 0, 0, 0x0E, 0x10, 0x21, 0xFF, 0xFF, 0x27, 0, 0x10, 0, 0, 0x22, 0, 0,
            0x17, 1,
            0, 1, b'c',
        ];
        assert_eq!(tx(&mut s), connect);
        assert_eq!(s.poll_timeout(), Some(now + secs(30)));
        s.handle_bytes(now, &CONNACK);
        assert!(s.is_connected());
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        assert_eq!(tx(&mut s), [0u8; 0]);
    }

    #[test]
    fn connect_carries_credentials_and_authentication() {
        let mut options = Options::new("c");
        options.username = Some("u".into());
        options.password = Some(Bytes::from_static(&[0xFF, 0x00]));
        options.authentication_method = Some("K8S-SAT".into());
        options.authentication_data = Some(Bytes::from_static(b"tok"));
        options.session_expiry = 0;
        options.keep_alive = Duration::ZERO;
        let mut s = Session::new(options);
        s.connect(t0());
        let bytes = tx(&mut s);
        assert_eq!(
            bytes[9],
            0x80 | 0x40 | 0x02,
            "username, password, clean start"
        );
        assert_eq!(&bytes[10..12], &[0, 0], "keep-alive off");
        let tail = [0, 1, b'c', 0, 1, b'u', 0, 2, 0xFF, 0x00];
        assert!(bytes.ends_with(&tail));
        let method = [0x15, 0, 7, b'K', b'8', b'S', b'-', b'S', b'A', b'T'];
        assert!(bytes.windows(method.len()).any(|w| w == method));
        let data = [0x16, 0, 3, b't', b'o', b'k'];
        assert!(bytes.windows(data.len()).any(|w| w == data));
    }

    #[test]
    fn connack_refused_with_reason() {
        let now = t0();
        let mut s = Session::new(Options::new("c"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x87, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::ConnectFailed(ConnectReason::NotAuthorized)]
        );
        assert!(!s.is_connected());
        assert_eq!(s.poll_timeout(), None);
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &[0x20, 0x03, 0x00, 0xF3, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::ConnectFailed(ConnectReason::Other(0xF3))]
        );
    }

    #[test]
    fn session_present_after_clean_start_is_a_protocol_error() {
        let now = t0();
        let mut s = Session::new(Options::new("c"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &CONNACK_RESUMED);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
    }

    #[test]
    fn connack_limits_and_assigned_client_id() {
        let now = t0();
        let mut s = Session::new(Options::new(""));
        s.connect(now);
        tx(&mut s);
        // Server Keep Alive 5 s, Maximum Packet Size 16, Assigned Client Identifier "abc".
        s.handle_bytes(
            now,
            &[
                0x20, 0x11, 0, 0, 0x0E, 0x13, 0, 5, 0x27, 0, 0, 0, 16, 0x12, 0, 3, b'a', b'b', b'c',
            ],
        );
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        assert_eq!(s.client_id(), "abc");
        assert_eq!(s.poll_timeout(), Some(now + secs(5)));
        assert_eq!(s.publish(now, message("t", b"x")), Ok(PublishId(0)));
        assert_eq!(s.publish(now, message("t", &[0; 8])), Ok(PublishId(1)));
        assert_eq!(
            s.publish(now, message("t", &[0; 9])),
            Err(PublishError::TooLarge { size: 17, max: 16 })
        );
        // The reconnect resumes with the assigned id.
        s.handle_transport_closed(now);
        s.connect(now);
        let connect = tx(&mut s);
        assert_eq!(connect[9], 0x00, "clean start off on a reconnect");
        assert!(connect.ends_with(&[0, 3, b'a', b'b', b'c']));
    }

    #[test]
    fn packets_before_connack_are_a_protocol_error() {
        let now = t0();
        let mut s = Session::new(Options::new("c"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
    }

    #[test]
    fn publish_and_puback() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        let a = s.publish(now, message("t", b"x")).unwrap();
        let b = s.publish(now, message("t", b"x")).unwrap();
        let c = s.publish(now, message("t", b"x")).unwrap();
        let expected: Vec<u8> = [
            publish_t_x(1, false),
            publish_t_x(2, false),
            publish_t_x(3, false),
        ]
        .concat();
        assert_eq!(tx(&mut s), expected);
        s.handle_bytes(now, &[0x40, 0x02, 0, 2, 0x40, 0x03, 0, 1, 0x10]);
        s.handle_bytes(now, &[0x40, 0x04, 0, 3, 0x87, 0x00]);
        assert_eq!(
            events(&mut s),
            [
                Event::PublishAcked {
                    id: b,
                    reason: PubAckReason::Success,
                    message: Some(message("t", b"x")),
                },
                Event::PublishAcked {
                    id: a,
                    reason: PubAckReason::NoMatchingSubscribers,
                    message: Some(message("t", b"x")),
                },
                Event::PublishAcked {
                    id: c,
                    reason: PubAckReason::NotAuthorized,
                    message: Some(message("t", b"x")),
                },
            ]
        );
        // A QoS 0 publish goes out without a packet id and is never acknowledged.
        let mut m = message("t", b"x");
        m.qos = QoS::AtMostOnce;
        s.publish(now, m).unwrap();
        assert_eq!(tx(&mut s), [0x30, 5, 0, 1, b't', 0, b'x']);
    }

    #[test]
    fn publish_errors() {
        let now = t0();
        let mut s = Session::new(Options::new("c"));
        let mut m = message("t", b"x");
        m.qos = QoS::AtMostOnce;
        assert_eq!(s.publish(now, m), Err(PublishError::NotConnected));
        assert_eq!(
            s.publish(now, message("a/+", b"x")),
            Err(PublishError::InvalidTopic)
        );
        assert_eq!(
            s.publish(now, message("", b"x")),
            Err(PublishError::InvalidTopic)
        );
        assert_eq!(
            s.subscribe(now, &[("a", QoS::AtLeastOnce)]),
            Err(SubscribeError::NotConnected)
        );
        // QoS 1 while disconnected is queued, and sent once connected.
        let id = s.publish(now, message("t", b"x")).unwrap();
        assert_eq!(tx(&mut s), [0u8; 0]);
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &CONNACK);
        assert_eq!(tx(&mut s), publish_t_x(1, false));
        s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
        assert_eq!(
            events(&mut s)[1],
            Event::PublishAcked {
                id,
                reason: PubAckReason::Success,
                message: Some(message("t", b"x")),
            }
        );
    }

    #[test]
    fn encoded_packets_get_their_packet_id_and_dup_when_sent_again() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        let packet = || Bytes::from_static(&[0x32, 7, 0, 1, b't', 0, 0, 0, b'x']);
        let a = s.publish_packet(now, packet(), 5).unwrap();
        let b = s.publish(now, message("t", b"x")).unwrap();
        assert_eq!(
            tx(&mut s),
            [publish_t_x(1, false), publish_t_x(2, false)].concat()
        );
        s.handle_transport_closed(now);
        events(&mut s);
        let c = s.publish_packet(now, packet(), 5).unwrap(); // queued while disconnected
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &CONNACK_RESUMED);
        events(&mut s);
        assert_eq!(
            tx(&mut s),
            [
                publish_t_x(1, true),
                publish_t_x(2, true),
                publish_t_x(3, false)
            ]
            .concat()
        );
        s.handle_bytes(
            now,
            &[0x40, 0x02, 0, 1, 0x40, 0x02, 0, 2, 0x40, 0x03, 0, 3, 0x10],
        );
        assert_eq!(
            events(&mut s),
            [
                Event::PublishAcked {
                    id: a,
                    reason: PubAckReason::Success,
                    message: None
                },
                Event::PublishAcked {
                    id: b,
                    reason: PubAckReason::Success,
                    message: Some(message("t", b"x"))
                },
                Event::PublishAcked {
                    id: c,
                    reason: PubAckReason::NoMatchingSubscribers,
                    message: None
                },
            ]
        );
        // A packet over the server's maximum packet size is refused before it takes an id.
        s.limits.maximum_packet_size = Some(8);
        assert_eq!(
            s.publish_packet(now, packet(), 5),
            Err(PublishError::TooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn resume_resends_unacked_with_dup() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.publish(now, message("t", b"x")).unwrap();
        let b = s.publish(now, message("t", b"x")).unwrap();
        tx(&mut s);
        s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
        events(&mut s);
        s.handle_transport_closed(now);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::TransportClosed)]
        );
        s.handle_transport_closed(now);
        assert_eq!(events(&mut s), []);
        let c = s.publish(now, message("t", b"x")).unwrap();
        s.connect(now);
        assert_eq!(tx(&mut s)[9], 0x00, "resume: clean start off");
        s.handle_bytes(now, &CONNACK_RESUMED);
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: true
            }]
        );
        assert_eq!(
            tx(&mut s),
            [publish_t_x(2, true), publish_t_x(3, false)].concat()
        );
        s.handle_bytes(now, &[0x40, 0x02, 0, 2, 0x40, 0x02, 0, 3]);
        let acked: Vec<_> = events(&mut s)
            .into_iter()
            .map(|e| match e {
                Event::PublishAcked { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(acked, [b, c]);
    }

    #[test]
    fn session_not_present_drops_unacked_and_sends_waiting() {
        let now = t0();
        let mut options = Options::new("c");
        options.max_inflight = 2;
        let mut s = connected(options, now);
        let a = s.publish(now, message("t", b"x")).unwrap();
        let b = s.publish(now, message("t", b"x")).unwrap();
        let c = s.publish(now, message("t", b"x")).unwrap(); // waits: in flight is full
        tx(&mut s);
        s.handle_bytes(now, &[0xE0, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::ByServer(
                DisconnectReason::NormalDisconnection
            ))]
        );
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &CONNACK);
        assert_eq!(
            events(&mut s),
            [
                Event::Connected {
                    session_present: false
                },
                Event::PublishDropped {
                    id: a,
                    message: Some(message("t", b"x"))
                },
                Event::PublishDropped {
                    id: b,
                    message: Some(message("t", b"x"))
                },
            ]
        );
        // The one never sent goes out normally, with a fresh packet id.
        assert_eq!(tx(&mut s), publish_t_x(3, false));
        s.handle_bytes(now, &[0x40, 0x02, 0, 3]);
        assert_eq!(
            events(&mut s),
            [Event::PublishAcked {
                id: c,
                reason: PubAckReason::Success,
                message: Some(message("t", b"x")),
            }]
        );
    }

    #[test]
    fn inflight_limit_queues_and_drains_in_order() {
        let now = t0();
        let mut options = Options::new("c");
        options.max_inflight = 3;
        let mut s = Session::new(options);
        s.connect(now);
        tx(&mut s);
        // The server's Receive Maximum (2) is below ours (3).
        s.handle_bytes(now, &[0x20, 0x06, 0, 0, 0x03, 0x21, 0, 2]);
        events(&mut s);
        let ids: Vec<_> = (0..4)
            .map(|_| s.publish(now, message("t", b"x")).unwrap())
            .collect();
        assert_eq!(
            tx(&mut s),
            [publish_t_x(1, false), publish_t_x(2, false)].concat()
        );
        s.handle_bytes(now, &[0x40, 0x02, 0, 2]);
        assert_eq!(tx(&mut s), publish_t_x(3, false));
        s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
        assert_eq!(tx(&mut s), publish_t_x(4, false));
        s.handle_bytes(now, &[0x40, 0x02, 0, 3, 0x40, 0x02, 0, 4]);
        assert_eq!(tx(&mut s), [0u8; 0]);
        let acked: Vec<_> = events(&mut s)
            .into_iter()
            .map(|e| match e {
                Event::PublishAcked { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(acked, [ids[1], ids[0], ids[2], ids[3]]);
    }

    #[test]
    fn packet_ids_wrap_skip_zero_and_ids_in_use() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.next_packet_id = 65534;
        s.publish(now, message("t", b"x")).unwrap(); // 65534, stays in flight
        s.subscribe(now, &[("a", QoS::AtLeastOnce)]).unwrap(); // 65535, no SUBACK yet
        s.publish(now, message("t", b"x")).unwrap(); // wraps to 1
        let out = tx(&mut s);
        assert!(out.starts_with(&publish_t_x(65534, false)));
        assert!(out.ends_with(&publish_t_x(1, false)));
        // The counter comes round again: 65534, 65535 and 1 are still in use.
        s.next_packet_id = 65534;
        s.publish(now, message("t", b"x")).unwrap();
        assert_eq!(tx(&mut s), publish_t_x(2, false));
        // Once acknowledged, an id is free again.
        s.handle_bytes(now, &[0x40, 0x02, 0xFF, 0xFE]);
        s.next_packet_id = 65534;
        s.publish(now, message("t", b"x")).unwrap();
        assert_eq!(tx(&mut s), publish_t_x(65534, false));
    }

    #[test]
    fn subscribe_and_suback_with_mixed_results() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        let id = s
            .subscribe(
                now,
                &[
                    ("a", QoS::AtLeastOnce),
                    ("b", QoS::AtMostOnce),
                    ("c", QoS::AtLeastOnce),
                ],
            )
            .unwrap();
        assert_eq!(
            tx(&mut s),
            [0x82, 0x0F, 0, 1, 0, 0, 1, b'a', 1, 0, 1, b'b', 0, 0, 1, b'c', 1]
        );
        s.handle_bytes(now, &[0x90, 0x06, 0, 1, 0, 1, 0, 0x87]);
        assert_eq!(
            events(&mut s),
            [Event::Subscribed {
                id,
                results: vec![
                    Ok(QoS::AtLeastOnce),
                    Ok(QoS::AtMostOnce),
                    Err(SubscribeFailure::NotAuthorized)
                ]
            }]
        );
        assert_eq!(s.subscribe(now, &[]), Err(SubscribeError::InvalidFilter));
        // A SUBACK with the wrong number of results is a protocol violation.
        s.subscribe(now, &[("a", QoS::AtLeastOnce)]).unwrap();
        tx(&mut s);
        s.handle_bytes(now, &[0x90, 0x05, 0, 2, 0, 1, 1]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
    }

    #[test]
    fn incoming_qos1_publish_is_acknowledged() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(
            now,
            &[0x32, 0x0A, 0, 3, b'a', b'/', b'b', 0, 7, 0, b'h', b'i'],
        );
        assert_eq!(tx(&mut s), [0x40, 0x02, 0, 7]);
        assert_eq!(
            events(&mut s),
            [Event::Message(Message {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"hi"),
                qos: QoS::AtLeastOnce,
                ..Message::default()
            })]
        );
        // QoS 0: no acknowledgement.
        s.handle_bytes(now, &[0x30, 0x04, 0, 1, b'a', 0]);
        assert_eq!(tx(&mut s), [0u8; 0]);
        assert_eq!(events(&mut s).len(), 1);
    }

    #[test]
    fn incoming_qos2_and_topic_alias_are_protocol_errors() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(now, &[0x34, 0x06, 0, 1, b't', 0, 9, 0]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x9B]);

        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(now, &[0x30, 0x07, 0, 1, b't', 3, 0x23, 0, 1]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x94]);
    }

    #[test]
    fn keep_alive_ping_and_late_pingresp() {
        let now = t0();
        let mut options = Options::new("c");
        options.keep_alive = secs(10);
        let mut s = connected(options, now);
        assert_eq!(s.poll_timeout(), Some(now + secs(10)));
        s.handle_timeout(now + secs(5));
        assert_eq!(tx(&mut s), [0u8; 0]);
        s.handle_timeout(now + secs(10));
        assert_eq!(tx(&mut s), [0xC0, 0x00]);
        s.handle_timeout(now + secs(10));
        assert_eq!(tx(&mut s), [0u8; 0], "one PINGREQ at a time");
        assert_eq!(s.poll_timeout(), Some(now + secs(15)));
        s.handle_bytes(now + secs(11), &[0xD0, 0x00]);
        assert_eq!(s.poll_timeout(), Some(now + secs(20)));
        // Sending anything postpones the next PINGREQ.
        s.publish(now + secs(12), message("t", b"x")).unwrap();
        tx(&mut s);
        assert_eq!(s.poll_timeout(), Some(now + secs(22)));
        s.handle_timeout(now + secs(22));
        assert_eq!(tx(&mut s), [0xC0, 0x00]);
        s.handle_timeout(now + secs(27));
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::KeepAliveTimeout)]
        );
        assert!(!s.is_connected());
        assert_eq!(s.poll_timeout(), None);
        // Late PINGRESP and repeated timeouts change nothing.
        s.handle_bytes(now + secs(28), &[0xD0, 0x00]);
        s.handle_timeout(now + secs(28));
        assert_eq!(events(&mut s), []);
        assert_eq!(tx(&mut s), [0u8; 0]);
    }

    #[test]
    fn connect_timeout() {
        let now = t0();
        let mut options = Options::new("c");
        options.connect_timeout = secs(5);
        let mut s = Session::new(options);
        s.connect(now);
        tx(&mut s);
        assert_eq!(s.poll_timeout(), Some(now + secs(5)));
        s.handle_timeout(now + secs(4));
        assert_eq!(events(&mut s), []);
        s.handle_timeout(now + secs(5));
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::ConnectTimeout)]
        );
        s.handle_timeout(now + secs(6));
        s.handle_bytes(now + secs(6), &CONNACK);
        assert_eq!(events(&mut s), []);
        assert!(!s.is_connected());
    }

    #[test]
    fn server_disconnect_with_reason_code_and_no_properties() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(now, &[0xE0, 0x01, 0x8E]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::ByServer(
                DisconnectReason::SessionTakenOver
            ))]
        );
        assert_eq!(tx(&mut s), [0u8; 0]);
        assert!(!s.is_connected());
    }

    #[test]
    fn client_disconnect() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.disconnect(now, DisconnectReason::NormalDisconnection);
        assert_eq!(tx(&mut s), [0xE0, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::ByClient)]
        );
        s.disconnect(now, DisconnectReason::NormalDisconnection);
        assert_eq!(tx(&mut s), [0u8; 0]);
        assert_eq!(events(&mut s), []);
    }

    #[test]
    fn split_delivery_gives_the_same_result() {
        let now = t0();
        let mut transcript = CONNACK.to_vec();
        transcript.extend_from_slice(&[0x90, 0x04, 0, 1, 0, 1]); // SUBACK
        transcript.extend_from_slice(&[0x32, 0x0A, 0, 3, b'a', b'/', b'b', 0, 7, 0, b'h', b'i']);
        transcript.extend_from_slice(&[0x40, 0x02, 0, 2]); // PUBACK
        transcript.extend_from_slice(&[0xE0, 0x01, 0x8E]); // DISCONNECT

        let run = |chunk: usize| {
            let mut s = Session::new(Options::new("c"));
            s.connect(now);
            tx(&mut s);
            let mut out = Vec::new();
            let mut evs = Vec::new();
            let mut subscribed = false;
            for piece in transcript.chunks(chunk) {
                s.handle_bytes(now, piece);
                if s.is_connected() && !subscribed {
                    subscribed = true;
                    s.subscribe(now, &[("a/#", QoS::AtLeastOnce)]).unwrap();
                    s.publish(now, message("t", b"x")).unwrap();
                }
                out.extend(tx(&mut s));
                evs.extend(events(&mut s));
            }
            (out, evs)
        };
        let whole = run(5); // the CONNACK alone first, then everything
        assert_eq!(whole.1.len(), 5, "{:?}", whole.1);
        // Packets whole or cut anywhere: read in place, or buffered until complete.
        for chunk in [1, 2, 3, 4, 6, 7] {
            assert_eq!(run(chunk), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn malformed_remaining_length_ends_the_session() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(now, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::Malformed(
                DecodeError::RemainingLength
            ))]
        );
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x81]);
    }

    #[test]
    fn malformed_complete_frame_ends_the_session() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        s.handle_bytes(now, &[0x90, 0x02, 0x00, 0x01]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::Malformed(
                DecodeError::Packet { .. }
            ))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x81]);
    }

    #[test]
    fn oversized_packet_is_refused_before_its_body_arrives() {
        let now = t0();
        let mut options = Options::new("c");
        options.max_packet_size = 64;
        let mut s = connected(options, now);
        s.handle_bytes(now, &[0x30, 0x80, 0x01]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::Malformed(
                DecodeError::TooLarge { size: 131, max: 64 }
            ))]
        );
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x95]);
        assert!(s.rx.len() <= 64);
    }

    #[test]
    fn message_properties_round_trip_through_the_session() {
        let now = t0();
        let mut s = connected(Options::new("c"), now);
        let sent = Message {
            topic: "statestore/v1/x/command/invoke".into(),
            payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            qos: QoS::AtLeastOnce,
            correlation_data: Some(Bytes::from_static(&[7; 16])),
            response_topic: Some("clients/c/resp".into()),
            message_expiry: Some(10),
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![("__protVer".into(), "1.0".into()), ("$x".into(), "".into())],
        };
        s.publish(now, sent.clone()).unwrap();
        let bytes = tx(&mut s);
        // Feed our own PUBLISH back as if the server delivered it.
        s.handle_bytes(now, &bytes);
        assert_eq!(tx(&mut s), [0x40, 0x02, 0, 1]);
        assert_eq!(events(&mut s), [Event::Message(sent)]);
    }

    // Enhanced authentication transcripts: every byte we send and receive.

    const METHOD: &[u8] = b"K8S-SAT";

    fn sat_options(token: &'static [u8]) -> Options {
        let mut options = Options::new("c");
        options.authentication_method = Some("K8S-SAT".into());
        options.authentication_data = Some(Bytes::from_static(token));
        options
    }

    /// An AUTH packet: reason code, Authentication Method K8S-SAT, optional data.
    fn auth(reason: u8, data: Option<&[u8]>) -> Vec<u8> {
        let mut props = vec![0x15, 0, METHOD.len() as u8];
        props.extend_from_slice(METHOD);
        if let Some(data) = data {
            props.extend_from_slice(&[0x16, 0, data.len() as u8]);
            props.extend_from_slice(data);
        }
        let mut packet = vec![0xF0, (props.len() + 2) as u8, reason, props.len() as u8];
        packet.extend_from_slice(&props);
        packet
    }

    /// A session that sent CONNECT with a SAT and got its CONNACK.
    fn connected_with_sat(now: Instant) -> Session {
        let mut s = Session::new(sat_options(b"tok"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        s
    }

    #[test]
    fn connect_carries_method_and_data() {
        let mut s = Session::new(sat_options(b"tok"));
        s.connect(t0());
        #[rustfmt::skip]
        let expected = [
            0x10, 0x30,                                 // CONNECT, 48 bytes
            0, 4, b'M', b'Q', b'T', b'T', 5, 0x02,      // MQTT 5, Clean Start
            0, 60,                                      // keep-alive
            0x22,                                       // 34 bytes of properties:
            0x11, 0, 0, 0x0E, 0x10,                     //   Session Expiry 3600
            0x21, 0xFF, 0xFF,                           //   Receive Maximum
            0x27, 0, 0x10, 0, 0,                        //   Maximum Packet Size 1 MiB
            0x22, 0, 0,                                 //   Topic Alias Maximum 0
            0x17, 1,                                    //   Request Problem Information
            0x15, 0, 7, b'K', b'8', b'S', b'-', b'S', b'A', b'T', // Authentication Method
            0x16, 0, 3, b't', b'o', b'k',               //   Authentication Data
            0, 1, b'c',                                 // client id
        ];
        assert_eq!(tx(&mut s), expected);
    }

    #[test]
    fn challenge_before_connack_is_answered_then_connack() {
        let now = t0();
        let mut s = Session::new(sat_options(b"tok"));
        s.connect(now);
        tx(&mut s);
        assert_eq!(
            s.continue_authentication(now, Bytes::from_static(b"x")),
            Err(AuthError::NoChallenge)
        );
        s.handle_bytes(now, &auth(0x18, Some(b"ch")));
        assert_eq!(
            events(&mut s),
            [Event::AuthenticationChallenge {
                data: Some(Bytes::from_static(b"ch"))
            }]
        );
        assert!(!s.is_connected());
        s.continue_authentication(now, Bytes::from_static(b"resp"))
            .unwrap();
        assert_eq!(tx(&mut s), auth(0x18, Some(b"resp")));
        s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        assert_eq!(
            s.continue_authentication(now, Bytes::new()),
            Err(AuthError::NoChallenge)
        );
    }

    #[test]
    fn reauthentication_succeeds_with_auth_success() {
        let now = t0();
        let mut s = connected_with_sat(now);
        assert_eq!(s.reauthenticate(now, Bytes::from_static(b"new")), Ok(true));
        assert_eq!(tx(&mut s), auth(0x19, Some(b"new")));
        assert_eq!(
            s.reauthenticate(now, Bytes::from_static(b"newer")),
            Err(AuthError::InProgress)
        );
        s.handle_bytes(now, &auth(0x00, None));
        assert_eq!(events(&mut s), [Event::Reauthenticated]);
        assert!(s.is_connected());
        // The new token is the one the next CONNECT carries.
        s.handle_transport_closed(now);
        events(&mut s);
        s.connect(now);
        assert!(tx(&mut s)
            .windows(6)
            .any(|w| w == [0x16, 0, 3, b'n', b'e', b'w']));
    }

    #[test]
    fn new_data_while_connecting_reauthenticates_after_the_connack() {
        let now = t0();
        let mut s = Session::new(sat_options(b"old"));
        s.connect(now);
        tx(&mut s);
        assert_eq!(s.reauthenticate(now, Bytes::from_static(b"new")), Ok(false));
        assert_eq!(tx(&mut s), [0u8; 0]);
        s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(
            events(&mut s),
            [Event::Connected {
                session_present: false
            }]
        );
        assert_eq!(tx(&mut s), auth(0x19, Some(b"new")));
        s.handle_bytes(now, &auth(0x00, None));
        assert_eq!(events(&mut s), [Event::Reauthenticated]);
    }

    #[test]
    fn reauthentication_with_a_challenge_in_between() {
        let now = t0();
        let mut s = connected_with_sat(now);
        s.reauthenticate(now, Bytes::from_static(b"new")).unwrap();
        tx(&mut s);
        s.handle_bytes(now, &auth(0x18, Some(b"more")));
        assert_eq!(
            events(&mut s),
            [Event::AuthenticationChallenge {
                data: Some(Bytes::from_static(b"more"))
            }]
        );
        s.continue_authentication(now, Bytes::from_static(b"ok"))
            .unwrap();
        assert_eq!(tx(&mut s), auth(0x18, Some(b"ok")));
        s.handle_bytes(now, &auth(0x00, None));
        assert_eq!(events(&mut s), [Event::Reauthenticated]);
    }

    #[test]
    fn reauthentication_refused_by_disconnect() {
        let now = t0();
        let mut s = connected_with_sat(now);
        s.reauthenticate(now, Bytes::from_static(b"bad")).unwrap();
        assert_eq!(tx(&mut s), auth(0x19, Some(b"bad")));
        s.handle_bytes(now, &[0xE0, 0x01, 0x87]);
        assert_eq!(
            events(&mut s),
            [Event::Disconnected(DisconnectCause::ByServer(
                DisconnectReason::NotAuthorized
            ))]
        );
        assert_eq!(tx(&mut s), [0u8; 0]);
        assert!(!s.is_connected());
    }

    #[test]
    fn reauthenticate_while_disconnected_waits_for_the_next_connect() {
        let now = t0();
        let mut s = Session::new(sat_options(b"old"));
        assert_eq!(
            s.reauthenticate(now, Bytes::from_static(b"fresh")),
            Ok(false)
        );
        assert_eq!(tx(&mut s), [0u8; 0]);
        s.connect(now);
        assert!(tx(&mut s).ends_with(&[0x16, 0, 5, b'f', b'r', b'e', b's', b'h', 0, 1, b'c']));
        let mut plain = Session::new(Options::new("c"));
        assert_eq!(
            plain.reauthenticate(now, Bytes::new()),
            Err(AuthError::NoMethod)
        );
    }

    #[test]
    fn unsolicited_or_foreign_auth_is_a_protocol_error() {
        let now = t0();
        // AUTH success without a re-authentication in progress.
        let mut s = connected_with_sat(now);
        s.handle_bytes(now, &auth(0x00, None));
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
        // AUTH success instead of a CONNACK.
        let mut s = Session::new(sat_options(b"tok"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &auth(0x00, None));
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        // Another method.
        let mut s = connected_with_sat(now);
        s.reauthenticate(now, Bytes::from_static(b"new")).unwrap();
        tx(&mut s);
        s.handle_bytes(
            now,
            &[0xF0, 0x08, 0x00, 0x06, 0x15, 0x00, 0x03, b'F', b'O', b'O'],
        );
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        // No enhanced authentication configured at all.
        let mut s = Session::new(Options::new("c"));
        s.connect(now);
        tx(&mut s);
        s.handle_bytes(now, &auth(0x18, Some(b"ch")));
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
        ));
        // A malformed AUTH (property length past the packet).
        let mut s = connected_with_sat(now);
        s.handle_bytes(now, &[0xF0, 0x02, 0x18, 0x05]);
        assert!(matches!(
            events(&mut s)[..],
            [Event::Disconnected(DisconnectCause::Malformed(_))]
        ));
    }
}
