//! What the session reports: events, the causes of a disconnection, the identifiers of requests.

use bytes::Bytes;

use super::super::codec::{DecodeError, RawPublish};
use super::super::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{Message, QoS};

#[cfg(doc)]
use super::{Options, Session};

/// Identifies a publish accepted by [`Session::publish`] in later events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u64);

/// Identifies a subscribe accepted by [`Session::subscribe`] in its [`Event::Subscribed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscribeId(pub u64);

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
    /// A QoS 1 publish that will not be acknowledged: it was sent and the broker did not resume
    /// our session (or its new Maximum Packet Size is below the packet's size), its send-by
    /// instant ([`Session::publish_by`](super::Session::publish_by)) passed before it could be
    /// written, or the caller dropped it ([`Session::drop_unacknowledged`](super::Session::drop_unacknowledged)).
    /// The caller decides whether to publish it again.
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

/// An entry of the event queue: an event, or a message on the raw topic still as bytes.
#[derive(Debug)]
pub(crate) enum Queued {
    Event(Event),
    Raw(RawPublish),
}
