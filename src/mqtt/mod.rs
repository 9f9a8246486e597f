//! A sans-IO MQTT v5 client session over bytes: CONNECT/CONNACK, SUBSCRIBE/SUBACK, QoS 0 and QoS 1
//! PUBLISH with PUBACK tracking and an in-flight limit, keep-alive, DISCONNECT both ways, and
//! session resumption with re-sending of unacknowledged publishes.
//!
//! The [`Session`] never touches a socket or a clock: feed it bytes with
//! [`Session::handle_bytes`] and time with [`Session::handle_timeout`], then drain
//! [`Session::poll_transmit`] and [`Session::poll_event`] and sleep until [`Session::poll_timeout`].
//! Messages are [`crate::Message`]; the codec behind this module is private.

pub(crate) mod codec;
mod reason;
pub(crate) mod session;
pub(crate) mod template;

pub use codec::DecodeError;
pub use reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
pub use session::{
    AuthError, DisconnectCause, Event, Options, PublishError, PublishId, Session, SubscribeError,
    SubscribeId,
};
