//! MQTT v5 properties: their identifiers (MQTT v5 §2.2.2.2, named once here), the size of each,
//! the check of a whole property block, and [`Properties`], an iterator over a checked block.

use super::varint::read_varint;
use super::{malformed, DecodeError};

/// Payload Format Indicator (byte).
pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// Message Expiry Interval (four-byte integer, seconds).
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// Content Type (UTF-8 string).
pub(crate) const CONTENT_TYPE: u8 = 0x03;
/// Response Topic (UTF-8 string).
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
/// Correlation Data (binary data).
pub(crate) const CORRELATION_DATA: u8 = 0x09;
/// Subscription Identifier (variable byte integer).
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// Session Expiry Interval (four-byte integer, seconds).
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// Assigned Client Identifier (UTF-8 string).
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// Server Keep Alive (two-byte integer, seconds).
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
/// Authentication Method (UTF-8 string).
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
/// Authentication Data (binary data).
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
/// Request Problem Information (byte).
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// Will Delay Interval (four-byte integer, seconds).
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
/// Request Response Information (byte).
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// Response Information (UTF-8 string).
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
/// Server Reference (UTF-8 string).
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
/// Reason String (UTF-8 string).
pub(crate) const REASON_STRING: u8 = 0x1F;
/// Receive Maximum (two-byte integer). Not the value we advertise: that is
/// [`super::RECEIVE_MAXIMUM`].
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
/// Topic Alias Maximum (two-byte integer).
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// Topic Alias (two-byte integer).
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
/// Maximum QoS (byte).
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
/// Retain Available (byte).
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
/// User Property (UTF-8 string pair).
pub(crate) const USER_PROPERTY: u8 = 0x26;
/// Maximum Packet Size (four-byte integer).
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// Wildcard Subscription Available (byte).
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// Subscription Identifier Available (byte).
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
/// Shared Subscription Available (byte).
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The size of the value of property `id`, whose bytes start `tail` (`Ok(None)`: its length
/// runs past `tail`; `Err`: not an MQTT v5 property).
pub(crate) fn property_size(id: u8, tail: &[u8]) -> Result<Option<usize>, ()> {
    Ok(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Some(1),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => Some(2),
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Some(4),
        SUBSCRIPTION_IDENTIFIER => read_varint(tail).map(|(n, _)| n),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | AUTHENTICATION_DATA
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => prefixed(tail, 1),
        USER_PROPERTY => prefixed(tail, 2),
        _ => return Err(()),
    })
}

/// Walks the property block starting at `body[at..]` (its length, then the properties) and checks
/// that every property is known and that the last one ends exactly at the end of the block.
/// Returns the offset just after the block.
pub(super) fn check_properties(
    packet: &'static str,
    body: &[u8],
    at: usize,
) -> Result<usize, DecodeError> {
    let bad = |detail| Err(malformed(packet, detail));
    let rest = body.get(at..).unwrap_or_default();
    let Some((len_len, len)) = read_varint(rest) else {
        return bad("missing or bad property length");
    };
    let Some(mut block) = rest.get(len_len..len_len + len) else {
        return bad("property length runs past the packet");
    };
    while let Some((&id, tail)) = block.split_first() {
        let Ok(size) = property_size(id, tail) else {
            return bad("unknown property");
        };
        match size.and_then(|n| tail.get(n..)) {
            Some(next) => block = next,
            None => return bad("property runs past the property length"),
        }
    }
    Ok(at + len_len + len)
}

/// Total length of `count` consecutive length-prefixed strings at the start of `buf`.
pub(super) fn prefixed(buf: &[u8], count: usize) -> Option<usize> {
    let mut used = 0;
    for _ in 0..count {
        let len = buf.get(used..used + 2)?;
        used += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    Some(used)
}

/// One property of a block, as [`Properties`] reads it: the values of those a PUBLISH carries and
/// a reader acts on, borrowed from the block; any other property by its identifier alone.
///
/// Strings are their bytes: the codec checked that they are UTF-8 when it decoded the packet, and
/// a reader turns into text only what it keeps (most names it only compares).
#[allow(clippy::enum_variant_names)] // `UserProperty` is MQTT's own name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Property<'a> {
    /// Message Expiry Interval, in seconds.
    MessageExpiry(u32),
    /// Content Type.
    ContentType(&'a [u8]),
    /// Response Topic.
    ResponseTopic(&'a [u8]),
    /// Correlation Data.
    CorrelationData(&'a [u8]),
    /// User Property: name and value.
    UserProperty(&'a [u8], &'a [u8]),
    /// Any other MQTT v5 property (its identifier); its value is skipped.
    Other(u8),
}

/// The properties of a property block (the bytes after its length prefix), in order.
///
/// Meant for a block the codec has checked (identifiers, lengths, UTF-8); on any input it never
/// panics and stops at the first property that is unknown or runs past the block, yielding
/// nothing from there on.
#[derive(Clone, Debug)]
pub(crate) struct Properties<'a> {
    /// What is left of the block.
    rest: &'a [u8],
}

impl<'a> Properties<'a> {
    /// The properties of `block`, a property block without its length prefix.
    pub(crate) fn new(block: &'a [u8]) -> Self {
        Properties { rest: block }
    }
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        let (&id, tail) = self.rest.split_first()?;
        let size = property_size(id, tail).ok().flatten();
        let parsed = size
            .and_then(|n| Some((tail.get(..n)?, tail.get(n..)?)))
            .and_then(|(value, rest)| Some((read_value(id, value)?, rest)));
        match parsed {
            Some((property, rest)) => {
                self.rest = rest;
                Some(property)
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

impl std::iter::FusedIterator for Properties<'_> {}

/// The value of property `id` from its bytes (exactly [`property_size`] of them).
fn read_value(id: u8, value: &[u8]) -> Option<Property<'_>> {
    // A length-prefixed string or binary at the start of `x`, and what follows it.
    fn split_prefixed(x: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = x.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        Some((rest.get(..len)?, rest.get(len..)?))
    }
    // The length-prefixed string or binary at the start of `x`.
    fn text(x: &[u8]) -> Option<&[u8]> {
        Some(split_prefixed(x)?.0)
    }
    Some(match id {
        MESSAGE_EXPIRY_INTERVAL => {
            Property::MessageExpiry(u32::from_be_bytes(value.try_into().ok()?))
        }
        CONTENT_TYPE => Property::ContentType(text(value)?),
        RESPONSE_TOPIC => Property::ResponseTopic(text(value)?),
        CORRELATION_DATA => Property::CorrelationData(split_prefixed(value)?.0),
        USER_PROPERTY => {
            let (name, rest) = split_prefixed(value)?;
            Property::UserProperty(name, text(rest)?)
        }
        other => Property::Other(other),
    })
}
