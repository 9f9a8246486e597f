//! MQTT v5 packets ⇄ bytes: the only module that knows `mqttbytes`.
//!
//! We frame every inbound packet ourselves from its fixed header, so that "need more bytes" and
//! "malformed" are told apart and an oversized frame is refused before it is buffered; then exactly
//! one complete frame is decoded. mqttbytes 0.6 decodes PUBLISH, PUBACK, SUBACK and the properties of
//! a successful CONNACK, and encodes PUBLISH and SUBSCRIBE. Everything it gets wrong is done here:
//!
//! 1. it cannot decode a DISCONNECT without properties (remaining length 0 or 1): we decode
//!    DISCONNECT (and AUTH, which it does not know) ourselves;
//! 2. it reports a complete but truncated frame as "insufficient bytes": we only ever hand it a
//!    complete frame, so any error it returns is a malformed packet;
//! 3. its CONNECT writer patches the connect flags at an absolute offset, corrupting a non-empty
//!    buffer, and its login carries the password as a `String`: we write CONNECT ourselves;
//! 4. its UNSUBSCRIBE decoder prints with `dbg!`: we never decode UNSUBSCRIBE (a client never
//!    receives one) and never send one.
//!
//! 5. its property readers stop once a running count reaches the property length, so a property that
//!    overruns the block silently eats into the payload or the reason codes: we walk every property
//!    block ourselves first and refuse one that does not end exactly where its length says.
//!
//! A failed CONNACK is decoded here too (mqttbytes rejects reason codes it does not know), and so
//! are PUBACK, PINGREQ and DISCONNECT on the way out (a few fixed bytes each).
//!
//! One file per concern: `decode` frames inbound packets and decodes all but PUBLISH,
//! `publish` decodes PUBLISH (as a [`crate::Message`] or left as bytes), `property` names the
//! property identifiers and walks property blocks, `varint` reads and writes variable byte
//! integers, and `encode` writes every outbound packet.

mod decode;
mod encode;
pub(crate) mod property;
mod publish;
#[cfg(test)]
mod tests;
mod varint;

pub(crate) use decode::{decode, decode_puback, frame, Auth, ConnAck, Inbound};
pub(crate) use encode::{
    encode_auth, encode_connect, encode_disconnect, encode_pingreq, encode_puback, encode_publish,
    encode_subscribe, publish_len, put_str, reserve_block, ConnectFields, EncodeError,
};
pub(crate) use publish::RawPublish;
pub(crate) use varint::{put_varint, varint_len};

/// The largest remaining length a fixed header can express.
pub(crate) const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// The Receive Maximum we advertise: we acknowledge every inbound QoS 1 PUBLISH at once.
pub(crate) const RECEIVE_MAXIMUM: u16 = u16::MAX;

/// A packet from the server that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length of the fixed header runs past its 4 bytes.
    #[error("remaining length longer than 4 bytes")]
    RemainingLength,
    /// The packet is larger than the Maximum Packet Size we advertised.
    #[error("packet of {size} bytes exceeds our maximum packet size of {max}")]
    TooLarge {
        /// Size of the whole packet, fixed header included.
        size: usize,
        /// The limit we advertised.
        max: usize,
    },
    /// Packet type 0 is reserved.
    #[error("reserved packet type 0")]
    PacketType,
    /// Reserved fixed-header flags are not as the specification requires.
    #[error("invalid fixed header flags {flags:#x} on packet type {packet_type}")]
    Flags {
        /// The packet type (upper nibble of the first byte).
        packet_type: u8,
        /// The flags (lower nibble).
        flags: u8,
    },
    /// The body of a packet does not parse.
    #[error("malformed {packet}: {detail}")]
    Packet {
        /// Which packet.
        packet: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

fn malformed(packet: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::Packet {
        packet,
        detail: detail.into(),
    }
}

/// Maps an mqttbytes error on a complete frame: there is nothing more to wait for.
fn from_mb(packet: &'static str, error: mqttbytes::Error) -> DecodeError {
    match error {
        mqttbytes::Error::InsufficientBytes(_) => malformed(packet, "a field runs past the frame"),
        other => malformed(packet, format!("{other:?}")),
    }
}
