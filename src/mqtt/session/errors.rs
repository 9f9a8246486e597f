//! Why the session refuses a request.

#[cfg(doc)]
use super::{Options, Session};

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
