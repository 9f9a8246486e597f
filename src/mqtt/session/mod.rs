//! The MQTT v5 client session state machine.
//!
//! [`Session`] moves between three states: see the diagram on [`State`] (private, in
//! `session/mod.rs`).
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
//!
//! One file per concern: `options`, `errors` and `events` hold the public types; `connect` the
//! CONNECT, CONNACK and AUTH exchanges; `publish` the publishes, the in-flight window and packet
//! identifiers; `subscribe` the SUBSCRIBE; `inbound` the bytes and packets from the server;
//! `keep_alive` the timers. The [`Session`] itself and what every part shares are here.

mod connect;
mod errors;
mod events;
mod inbound;
mod keep_alive;
mod options;
mod publish;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The size of the blocks raw-topic packets are copied into.
const RX_BLOCK: usize = 16 * 1024;

use bytes::{Bytes, BytesMut};

use self::connect::{whole_secs, AuthExchange};
use self::publish::{Inflight, PacketIds, Waiting};
use super::codec;
use super::reason::DisconnectReason;
use crate::block::Blocks;
use crate::SharedStr;

#[cfg(doc)]
use crate::Message;

pub use self::errors::{AuthError, PublishError, SubscribeError};
pub(crate) use self::events::Queued;
pub use self::events::{DisconnectCause, Event, PublishId, SubscribeId};
pub use self::options::Options;

/// Connection state.
///
/// ```text
///            connect()                CONNACK success
///   Idle ─────────────────▶ Connecting ───────────────▶ Connected
///    ▲                          │                           │
///    └──────────────────────────┴───────────────────────────┘
///      CONNACK refused, connect timeout, keep-alive timeout, DISCONNECT (either way),
///      malformed packet, protocol violation, transport closed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection (or none we will speak on).
    Idle,
    /// CONNECT sent, waiting for CONNACK until the deadline (none if it is beyond `Instant`).
    Connecting { deadline: Option<Instant> },
    /// CONNACK received.
    Connected,
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
/// After every call, drain [`Session::poll_transmit`] and then [`Session::poll_event`] until
/// `None`, then call [`Session::handle_timeout`] at [`Session::poll_timeout`]. QoS 1 publishes
/// that waited for room in flight are written when the bytes are taken, so an event about one
/// (dropped, its send-by instant passed) may come from that call.
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
    /// Room in flight may have opened for `waiting` (a publish queued, a PUBACK, a CONNACK), as
    /// of this instant: they are written at the next [`Session::poll_transmit_with`], asked
    /// about then, not when the room opened.
    drain_due: Option<Instant>,
    subscribes: VecDeque<(u16, SubscribeId, usize)>,
    /// Packet identifiers of `inflight`, of previously sent `waiting` entries and of `subscribes`.
    used_packet_ids: PacketIds,
    /// The topic of the last inbound PUBLISH (see `codec::decode`).
    topic_cache: SharedStr,
    /// Messages on this topic are left as bytes (see [`Session::set_raw_topic`]).
    raw_topic: Option<SharedStr>,
    /// The block raw-topic packets are copied into (see `Session::copy_packet`).
    rx_blocks: Blocks,
    /// The topic of the last outbound PUBLISH, known to be valid.
    checked_topic: SharedStr,
    last_sent: Option<Instant>,
    /// When the last whole packet arrived: a broker that sends nothing (stopped, or behind a
    /// half-open TCP connection) is pinged even while this side keeps sending.
    last_received: Option<Instant>,
    ping_deadline: Option<Instant>,
    /// Where the enhanced authentication exchange stands on this connection.
    auth: AuthExchange,
    /// New authentication data arrived after the CONNECT went out: re-authenticate once the
    /// CONNACK arrives.
    reauthenticate_after_connack: bool,
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
            drain_due: None,
            subscribes: VecDeque::new(),
            used_packet_ids: PacketIds::new(),
            topic_cache: SharedStr::default(),
            raw_topic: None,
            rx_blocks: Blocks::new(RX_BLOCK),
            checked_topic: SharedStr::from_static("/"),
            last_sent: None,
            last_received: None,
            ping_deadline: None,
            auth: AuthExchange::Idle,
            reauthenticate_after_connack: false,
        }
    }

    /// Bytes to write to the transport, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit_with(|_| true)
    }

    /// Bytes to write to the transport, in order, as [`Session::poll_transmit`]; a QoS 1 publish
    /// that waited for room in flight is written only if `wanted` says so as its turn comes (or
    /// dropped, with [`Event::PublishDropped`]): a caller decides at the last moment whether a
    /// request it may have given up since publishing it still goes out.
    pub fn poll_transmit_with(
        &mut self,
        mut wanted: impl FnMut(PublishId) -> bool,
    ) -> Option<Bytes> {
        if let Some(now) = self.drain_due.take() {
            self.drain_waiting(now, &mut wanted);
        }
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

    /// Sends DISCONNECT with `reason` and ends the connection ([`DisconnectCause::ByClient`]).
    /// Unacknowledged publishes are kept for the next connection. Bytes not yet taken with
    /// [`Session::poll_transmit`] are dropped, here and whenever a connection ends: nothing of a
    /// connection goes out after its end.
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

    /// The Maximum Packet Size we advertise and enforce (MQTT forbids 0).
    fn max_inbound(&self) -> u32 {
        self.options.max_packet_size.max(1)
    }

    fn max_outbound(&self) -> usize {
        self.limits
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize)
    }

    fn send(&mut self, now: Instant, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
        self.last_sent = Some(now);
    }

    fn violation(&mut self, what: &str, reason: DisconnectReason) {
        self.end(
            DisconnectCause::ProtocolViolation(what.to_owned()),
            Some(reason),
        );
    }

    /// Ends the connection: drops what was not yet written (it belongs to this connection: a
    /// publish stays unacknowledged and so is kept for a resumed session), optionally sends
    /// DISCONNECT, reports `cause` once.
    fn end(&mut self, cause: DisconnectCause, send: Option<DisconnectReason>) {
        self.tx.clear();
        if let Some(reason) = send {
            codec::encode_disconnect(&mut self.tx, reason);
        }
        self.state = State::Idle;
        self.forget_connection();
        self.push_event(Event::Disconnected(cause));
    }

    /// Drops what belongs to one connection only: unread bytes, subscribes awaiting their SUBACK,
    /// the PINGRESP deadline, the enhanced authentication exchange.
    fn forget_connection(&mut self) {
        self.rx.clear();
        self.clear_subscribes();
        self.ping_deadline = None;
        self.auth = AuthExchange::Idle;
        self.reauthenticate_after_connack = false;
    }
}
