//! Encoding of every packet a client sends.

use crate::block::make_room;
use bytes::{BufMut, Bytes, BytesMut};
use mqttbytes::v5 as mb;

use super::property;
use super::varint::{put_varint, varint_len};
use super::{MAX_REMAINING_LENGTH, RECEIVE_MAXIMUM};
use crate::mqtt::reason::DisconnectReason;
use crate::{Message, QoS, SharedStr};

/// Something that cannot be put in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncodeError {
    /// A string or binary field longer than 65 535 bytes (the named field).
    FieldTooLong(&'static str),
    /// The packet is longer than MQTT can express.
    PacketTooLong,
}

fn check_field(name: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong(name))
    } else {
        Ok(())
    }
}

/// The size of the blocks outgoing packets are written into: each `poll_transmit` hands out the
/// filled part and the next packets go into the rest of the block, one allocation for many.
const TX_BLOCK: usize = 8192;

/// Makes room for `len` more bytes in `out`, a new block at a time.
pub(crate) fn reserve_block(out: &mut BytesMut, len: usize) {
    make_room(out, len, TX_BLOCK);
}

/// Appends `s` with its two-byte length prefix (a string or binary field).
pub(crate) fn put_str(buf: &mut impl BufMut, s: &[u8]) {
    // Callers check lengths (with `check_field`) first.
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

/// Appends a fixed header and `body` to `out`.
fn put_packet(out: &mut BytesMut, first: u8, body: &[u8]) -> Result<(), EncodeError> {
    if body.len() > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong);
    }
    out.put_u8(first);
    put_varint(out, body.len());
    out.put_slice(body);
    Ok(())
}

/// The fields of a CONNECT.
#[derive(Clone, Debug)]
pub(crate) struct ConnectFields<'a> {
    pub client_id: &'a str,
    pub clean_start: bool,
    pub keep_alive_secs: u16,
    pub session_expiry: u32,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub maximum_packet_size: u32,
}

/// Appends a CONNECT to `out`, which may already hold other packets.
pub(crate) fn encode_connect(out: &mut BytesMut, c: &ConnectFields<'_>) -> Result<(), EncodeError> {
    check_field("client id", c.client_id.len())?;
    check_field("username", c.username.map_or(0, str::len))?;
    check_field("password", c.password.map_or(0, <[u8]>::len))?;
    check_field(
        "authentication method",
        c.authentication_method.map_or(0, str::len),
    )?;
    check_field(
        "authentication data",
        c.authentication_data.map_or(0, <[u8]>::len),
    )?;

    let mut props = BytesMut::new();
    if c.session_expiry != 0 {
        props.put_u8(property::SESSION_EXPIRY_INTERVAL);
        props.put_u32(c.session_expiry);
    }
    props.put_u8(property::RECEIVE_MAXIMUM);
    props.put_u16(RECEIVE_MAXIMUM);
    props.put_u8(property::MAXIMUM_PACKET_SIZE);
    props.put_u32(c.maximum_packet_size);
    props.put_u8(property::TOPIC_ALIAS_MAXIMUM);
    props.put_u16(0); // Topic Alias Maximum: we accept no aliases.
    props.put_u8(property::REQUEST_PROBLEM_INFORMATION);
    props.put_u8(1); // Request Problem Information.
    if let Some(method) = c.authentication_method {
        props.put_u8(property::AUTHENTICATION_METHOD);
        put_str(&mut props, method.as_bytes());
    }
    if let Some(data) = c.authentication_data {
        props.put_u8(property::AUTHENTICATION_DATA);
        put_str(&mut props, data);
    }

    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }

    let mut body = BytesMut::new();
    put_str(&mut body, b"MQTT");
    body.put_u8(5);
    body.put_u8(flags);
    body.put_u16(c.keep_alive_secs);
    put_varint(&mut body, props.len());
    body.put_slice(&props);
    put_str(&mut body, c.client_id.as_bytes());
    if let Some(username) = c.username {
        put_str(&mut body, username.as_bytes());
    }
    if let Some(password) = c.password {
        put_str(&mut body, password);
    }
    put_packet(out, 0x10, &body)
}

/// Length of the properties of a PUBLISH (without their own length prefix).
fn publish_properties_len(message: &Message) -> usize {
    let string = |s: &Option<SharedStr>| s.as_ref().map_or(0, |s| 3 + s.len());
    message.message_expiry.map_or(0, |_| 5)
        + string(&message.content_type)
        + string(&message.response_topic)
        + message.correlation_data.as_ref().map_or(0, |c| 3 + c.len())
        + message
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>()
}

/// Length of the variable header and payload of a PUBLISH, after checking every field's limit.
fn publish_remaining_len(message: &Message) -> Result<usize, EncodeError> {
    check_field("topic", message.topic.len())?;
    check_field(
        "response topic",
        message.response_topic.as_ref().map_or(0, |s| s.len()),
    )?;
    check_field(
        "correlation data",
        message.correlation_data.as_ref().map_or(0, Bytes::len),
    )?;
    check_field(
        "content type",
        message.content_type.as_ref().map_or(0, |s| s.len()),
    )?;
    for (k, v) in &message.user_properties {
        check_field("user property", k.len().max(v.len()))?;
    }
    let props = publish_properties_len(message);
    let packet_id = if message.qos == QoS::AtLeastOnce {
        2
    } else {
        0
    };
    let len =
        2 + message.topic.len() + packet_id + varint_len(props) + props + message.payload.len();
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong);
    }
    Ok(len)
}

/// The size of the whole PUBLISH packet for `message`, without encoding it.
pub(crate) fn publish_len(message: &Message) -> Result<usize, EncodeError> {
    let remaining = publish_remaining_len(message)?;
    Ok(1 + varint_len(remaining) + remaining)
}

/// Appends a PUBLISH to `out` (written here, not by mqttbytes: one pass, no copies of the fields).
pub(crate) fn encode_publish(
    out: &mut BytesMut,
    message: &Message,
    packet_id: u16,
    dup: bool,
) -> Result<(), EncodeError> {
    let remaining = publish_remaining_len(message)?;
    let qos1 = message.qos == QoS::AtLeastOnce;
    reserve_block(out, 1 + varint_len(remaining) + remaining);
    out.put_u8(0x30 | (u8::from(dup && qos1) << 3) | (u8::from(qos1) << 1));
    put_varint(out, remaining);
    put_str(out, message.topic.as_bytes());
    if qos1 {
        out.put_u16(packet_id);
    }
    put_varint(out, publish_properties_len(message));
    if let Some(expiry) = message.message_expiry {
        out.put_u8(property::MESSAGE_EXPIRY_INTERVAL);
        out.put_u32(expiry);
    }
    if let Some(ct) = &message.content_type {
        out.put_u8(property::CONTENT_TYPE);
        put_str(out, ct.as_bytes());
    }
    if let Some(rt) = &message.response_topic {
        out.put_u8(property::RESPONSE_TOPIC);
        put_str(out, rt.as_bytes());
    }
    if let Some(cd) = &message.correlation_data {
        out.put_u8(property::CORRELATION_DATA);
        put_str(out, cd);
    }
    for (k, v) in &message.user_properties {
        out.put_u8(property::USER_PROPERTY);
        put_str(out, k.as_bytes());
        put_str(out, v.as_bytes());
    }
    out.put_slice(&message.payload);
    Ok(())
}

/// Encodes a SUBSCRIBE into a buffer of its own.
pub(crate) fn encode_subscribe(
    packet_id: u16,
    filters: &[(&str, QoS)],
) -> Result<BytesMut, EncodeError> {
    let mut subscribe = mb::Subscribe {
        pkid: packet_id,
        filters: Vec::with_capacity(filters.len()),
        properties: None,
    };
    for (filter, qos) in filters {
        check_field("topic filter", filter.len())?;
        let qos = match qos {
            QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        };
        subscribe
            .filters
            .push(mb::SubscribeFilter::new((*filter).to_owned(), qos));
    }
    let mut out = BytesMut::new();
    subscribe
        .write(&mut out)
        .map_err(|_| EncodeError::PacketTooLong)?;
    Ok(out)
}

/// Appends an AUTH with a reason code (0x18 continue, 0x19 re-authenticate), the Authentication
/// Method and, when given, the Authentication Data.
pub(crate) fn encode_auth(
    out: &mut BytesMut,
    reason: u8,
    method: &str,
    data: Option<&[u8]>,
) -> Result<(), EncodeError> {
    check_field("authentication method", method.len())?;
    check_field("authentication data", data.map_or(0, <[u8]>::len))?;
    let mut props = BytesMut::new();
    props.put_u8(property::AUTHENTICATION_METHOD);
    put_str(&mut props, method.as_bytes());
    if let Some(data) = data {
        props.put_u8(property::AUTHENTICATION_DATA);
        put_str(&mut props, data);
    }
    let mut body = BytesMut::with_capacity(props.len() + 5);
    body.put_u8(reason);
    put_varint(&mut body, props.len());
    body.put_slice(&props);
    put_packet(out, 0xF0, &body)
}

/// Appends a successful PUBACK (remaining length 2: reason code and properties omitted).
pub(crate) fn encode_puback(out: &mut BytesMut, packet_id: u16) {
    reserve_block(out, 4);
    out.put_u8(0x40);
    out.put_u8(2);
    out.put_u16(packet_id);
}

/// Appends a PINGREQ.
pub(crate) fn encode_pingreq(out: &mut BytesMut) {
    out.put_slice(&[0xC0, 0x00]);
}

/// Appends a DISCONNECT: normal disconnection in 2 bytes, any other reason code without properties.
pub(crate) fn encode_disconnect(out: &mut BytesMut, reason: DisconnectReason) {
    match reason.code() {
        0 => out.put_slice(&[0xE0, 0x00]),
        code => out.put_slice(&[0xE0, 0x01, code]),
    }
}
