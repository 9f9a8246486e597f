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

use bytes::{BufMut, Bytes, BytesMut};
use mqttbytes::v5 as mb;

use super::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{Message, QoS, SharedStr};

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

/// The position of one complete packet at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Length of the fixed header (type byte + remaining length).
    pub header_len: usize,
    /// Length of the whole packet.
    pub len: usize,
}

/// Frames the packet at the start of `buf` from its fixed header.
///
/// `Ok(None)`: more bytes are needed. A packet larger than `max_packet_size` is an error as soon as
/// its remaining length is known, whether or not its bytes have arrived.
pub(crate) fn frame(buf: &[u8], max_packet_size: usize) -> Result<Option<Frame>, DecodeError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            let len = header_len + remaining;
            if len > max_packet_size {
                return Err(DecodeError::TooLarge {
                    size: len,
                    max: max_packet_size,
                });
            }
            if buf[0] >> 4 == 0 {
                return Err(DecodeError::PacketType);
            }
            return Ok(Some(Frame { header_len, len }));
        }
    }
    Err(DecodeError::RemainingLength)
}

/// A CONNACK.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ConnAck {
    /// Session Present flag.
    pub session_present: bool,
    /// `Some` when the server refused the connection.
    pub refused: Option<ConnectReason>,
    /// Receive Maximum property.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size property.
    pub maximum_packet_size: Option<u32>,
    /// Server Keep Alive property, in seconds.
    pub server_keep_alive: Option<u16>,
    /// Assigned Client Identifier property.
    pub assigned_client_id: Option<String>,
    /// Maximum QoS property.
    pub maximum_qos: Option<u8>,
}

/// A PUBLISH from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InboundPublish {
    /// Packet identifier (0 for QoS 0).
    pub packet_id: u16,
    /// QoS 2 (which we never subscribe with): `message.qos` is then meaningless.
    pub exactly_once: bool,
    /// Topic Alias property (we advertise a maximum of 0, so any alias is a protocol error).
    pub topic_alias: Option<u16>,
    /// The application message.
    pub message: Message,
}

/// An AUTH packet (enhanced authentication): its reason code and the properties we act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Auth {
    /// Reason code: 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: u8,
    /// Authentication Method property.
    pub method: Option<String>,
    /// Authentication Data property.
    pub data: Option<Bytes>,
}

/// A decoded packet from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(InboundPublish),
    /// PUBLISH on the raw topic.
    RawPublish(RawPublish),
    /// PUBACK.
    PubAck {
        /// Packet identifier.
        packet_id: u16,
        /// Reason code.
        reason: PubAckReason,
    },
    /// SUBACK: one result per filter.
    SubAck {
        /// Packet identifier.
        packet_id: u16,
        /// Granted QoS or failure, per filter, in order.
        results: Vec<Result<QoS, SubscribeFailure>>,
        /// Whether any filter was granted QoS 2, which we never ask for.
        granted_exactly_once: bool,
    },
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(DisconnectReason),
    /// AUTH.
    Auth(Auth),
    /// A packet a client never receives or that we never solicit (its packet type).
    Unexpected(u8),
}

/// Decodes one complete frame located by [`frame`].
pub(crate) fn decode(
    bytes: Bytes,
    frame: Frame,
    topic_cache: &mut SharedStr,
    raw_topic: Option<&SharedStr>,
) -> Result<Inbound, DecodeError> {
    debug_assert_eq!(bytes.len(), frame.len);
    let first = bytes[0];
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let body = &bytes[frame.header_len..];
    let header = mqttbytes::FixedHeader::new(first, frame.header_len - 1, body.len());
    let check_flags = || {
        if flags == 0 {
            Ok(())
        } else {
            Err(DecodeError::Flags { packet_type, flags })
        }
    };
    match packet_type {
        2 => {
            check_flags()?;
            decode_connack(bytes, header, frame)
        }
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(malformed("PUBLISH", "DUP set on QoS 0"));
            }
            // `decode_publish` checks every property (id, length, bounds) itself.
            decode_publish(bytes, frame, flags, topic_cache, raw_topic)
        }
        4 => {
            check_flags()?;
            decode_puback(body)
        }
        9 => {
            check_flags()?;
            check_properties("SUBACK", body, 2)?;
            let ack = mb::SubAck::read(header, bytes).map_err(|e| from_mb("SUBACK", e))?;
            if ack.pkid == 0 {
                return Err(malformed("SUBACK", "packet identifier 0"));
            }
            let mut granted_exactly_once = false;
            let results = ack
                .return_codes
                .iter()
                .map(|code| match code {
                    mb::SubscribeReasonCode::QoS0 => Ok(QoS::AtMostOnce),
                    mb::SubscribeReasonCode::QoS1 => Ok(QoS::AtLeastOnce),
                    mb::SubscribeReasonCode::QoS2 => {
                        granted_exactly_once = true;
                        Ok(QoS::AtLeastOnce)
                    }
                    failure => Err(SubscribeFailure::from_code(*failure as u8)),
                })
                .collect();
            Ok(Inbound::SubAck {
                packet_id: ack.pkid,
                results,
                granted_exactly_once,
            })
        }
        13 => {
            check_flags()?;
            if body.is_empty() {
                Ok(Inbound::PingResp)
            } else {
                Err(malformed("PINGRESP", "non-empty body"))
            }
        }
        14 => {
            check_flags()?;
            decode_reason_only("DISCONNECT", body)
                .map(|code| Inbound::Disconnect(DisconnectReason::from_code(code)))
        }
        15 => {
            check_flags()?;
            decode_auth(body).map(Inbound::Auth)
        }
        0 => Err(DecodeError::PacketType),
        other => Ok(Inbound::Unexpected(other)),
    }
}

fn decode_connack(
    bytes: Bytes,
    header: mqttbytes::FixedHeader,
    frame: Frame,
) -> Result<Inbound, DecodeError> {
    let body = &bytes[frame.header_len..];
    let (&ack_flags, &code) = match body {
        [f, c, ..] => (f, c),
        _ => return Err(malformed("CONNACK", "shorter than 2 bytes")),
    };
    if ack_flags & 0xFE != 0 {
        return Err(malformed("CONNACK", "reserved acknowledge flags set"));
    }
    let session_present = ack_flags & 1 == 1;
    if code != 0 {
        // A refusal ends the connection: its properties change nothing, and mqttbytes would reject
        // reason codes it does not know.
        return Ok(Inbound::ConnAck(ConnAck {
            session_present,
            refused: Some(ConnectReason::from_code(code)),
            ..ConnAck::default()
        }));
    }
    if check_properties("CONNACK", body, 2)? != body.len() {
        return Err(malformed("CONNACK", "bytes after the properties"));
    }
    let ack = mb::ConnAck::read(header, bytes).map_err(|e| from_mb("CONNACK", e))?;
    let mut out = ConnAck {
        session_present,
        ..ConnAck::default()
    };
    if let Some(p) = ack.properties {
        out.receive_maximum = p.receive_max;
        out.maximum_packet_size = p.max_packet_size;
        out.server_keep_alive = p.server_keep_alive;
        out.assigned_client_id = p.assigned_client_identifier;
        out.maximum_qos = p.max_qos;
    }
    Ok(Inbound::ConnAck(out))
}

/// Decodes a PUBLISH without copying: topic, property strings and payload are slices of `bytes`.
/// `topic_cache` holds the topic of the previous PUBLISH: the same topic again (every response
/// comes on one) is shared, not allocated. A PUBLISH on `raw_topic` is checked the same way but
/// left as bytes ([`Inbound::RawPublish`]).
fn decode_publish(
    bytes: Bytes,
    frame: Frame,
    flags: u8,
    topic_cache: &mut SharedStr,
    raw_topic: Option<&SharedStr>,
) -> Result<Inbound, DecodeError> {
    let bad = |detail: &str| malformed("PUBLISH", detail);
    let qos_bits = (flags >> 1) & 3;
    let (qos, exactly_once) = match qos_bits {
        0 => (QoS::AtMostOnce, false),
        1 => (QoS::AtLeastOnce, false),
        2 => (QoS::AtLeastOnce, true),
        _ => return Err(bad("QoS 3")),
    };
    let mut r = Reader {
        buf: &bytes,
        at: frame.header_len,
    };
    // The raw topic is recognised by its bytes (it was checked when it was set).
    let topic_len = bytes
        .get(r.at..r.at + 2)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    let topic_range = topic_len.map(|len| r.at + 2..r.at + 2 + len);
    let raw = match (raw_topic, &topic_range) {
        (Some(t), Some(range)) => bytes.get(range.clone()) == Some(t.as_bytes()),
        _ => false,
    };
    let topic = if raw {
        r.at = topic_range.clone().map_or(r.at, |range| range.end);
        None
    } else {
        Some(
            r.string_cached(topic_cache)
                .ok_or_else(|| bad("bad topic name"))?,
        )
    };
    let packet_id = if qos_bits == 0 {
        0
    } else {
        match r.u16() {
            Some(0) | None => return Err(bad("packet identifier 0 or missing")),
            Some(id) => id,
        }
    };
    let (len_len, props_len) = read_varint(&bytes[r.at..]).ok_or_else(|| bad("property length"))?;
    r.at += len_len;
    let (start, end) = (r.at, r.at + props_len);
    let Some(topic) = topic else {
        let topic_alias = read_publish_properties(&mut r, end, None)?;
        return Ok(Inbound::RawPublish(RawPublish {
            packet_id,
            exactly_once,
            topic_alias,
            qos,
            topic: topic_range.unwrap_or_default(),
            props: start..end,
            payload: end..bytes.len(),
            packet: bytes,
        }));
    };
    let mut message = Message {
        topic,
        qos,
        ..Message::default()
    };
    let topic_alias = read_publish_properties(&mut r, end, Some(&mut message))?;
    message.payload = bytes.slice(end..);
    Ok(Inbound::Publish(InboundPublish {
        packet_id,
        exactly_once,
        topic_alias,
        message,
    }))
}

/// Reads the properties of a PUBLISH up to `end` into `message` (or only checks them, when there
/// is no message); returns the Topic Alias, if any.
fn read_publish_properties(
    r: &mut Reader<'_>,
    end: usize,
    mut message: Option<&mut Message>,
) -> Result<Option<u16>, DecodeError> {
    let bad = |detail: &str| malformed("PUBLISH", detail);
    let mut topic_alias = None;
    // A string property: kept in the message, or only checked.
    fn string(r: &mut Reader<'_>, keep: bool) -> Option<Option<SharedStr>> {
        if keep {
            r.string().map(Some)
        } else {
            r.check_string().map(|()| None)
        }
    }
    while r.at < end {
        let keep = message.is_some();
        let id = r.u8().ok_or_else(|| bad("property"))?;
        let ok = match id {
            0x01 => r.u8().is_some(),
            0x02 => match (r.u32(), message.as_deref_mut()) {
                (Some(v), Some(m)) => {
                    m.message_expiry = Some(v);
                    true
                }
                (v, _) => v.is_some(),
            },
            0x03 | 0x08 => match (string(r, keep), message.as_deref_mut()) {
                (Some(Some(v)), Some(m)) if id == 0x03 => {
                    m.content_type = Some(v);
                    true
                }
                (Some(Some(v)), Some(m)) => {
                    m.response_topic = Some(v);
                    true
                }
                (v, _) => v.is_some(),
            },
            0x09 => match (r.binary(), message.as_deref_mut()) {
                (Some(v), Some(m)) => {
                    m.correlation_data = Some(v);
                    true
                }
                (v, _) => v.is_some(),
            },
            0x0B => match read_varint(&r.buf[r.at..]) {
                Some((n, _)) => {
                    r.at += n;
                    true
                }
                None => false,
            },
            0x23 => r.u16().map(|v| topic_alias = Some(v)).is_some(),
            0x26 => match (string(r, keep), string(r, keep), message.as_deref_mut()) {
                (Some(Some(k)), Some(Some(v)), Some(m)) => {
                    m.user_properties.push((k, v));
                    true
                }
                (k, v, _) => k.is_some() && v.is_some(),
            },
            _ => return Err(bad("property not allowed in PUBLISH")),
        };
        if !ok || r.at > end {
            return Err(bad("bad property"));
        }
    }
    Ok(topic_alias)
}

/// A PUBLISH on the session's raw topic: checked like any other (property ids, lengths, strings)
/// but not turned into a [`Message`]; its parts are ranges of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawPublish {
    /// Packet identifier (0 for QoS 0).
    pub packet_id: u16,
    /// QoS 2 (which we never subscribe with).
    pub exactly_once: bool,
    /// Topic Alias property.
    pub topic_alias: Option<u16>,
    /// Quality of service.
    pub qos: QoS,
    /// The whole packet.
    pub packet: Bytes,
    /// Where the topic name, the property block (without its length prefix) and the payload
    /// are in `packet`.
    pub topic: std::ops::Range<usize>,
    pub props: std::ops::Range<usize>,
    pub payload: std::ops::Range<usize>,
}

impl RawPublish {
    /// The message it carries.
    pub(crate) fn into_message(self) -> Message {
        let mut message = Message {
            // Checked when decoded (it is the raw topic): valid UTF-8.
            topic: SharedStr::from_utf8(&self.packet[self.topic.clone()]).unwrap_or_default(),
            qos: self.qos,
            payload: self.packet.slice(self.payload.clone()),
            ..Message::default()
        };
        let mut r = Reader {
            buf: &self.packet,
            at: self.props.start,
        };
        // Checked when decoded: this cannot fail.
        let _ = read_publish_properties(&mut r, self.props.end, Some(&mut message));
        message
    }
}

/// Whether every byte is in 1..=0x7F, eight bytes at a time.
fn is_ascii_without_nul(bytes: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A high bit set, or a zero byte (the classic "has zero byte" test).
        if x & HIGH != 0 || (x.wrapping_sub(LOW) & !x & HIGH) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b.wrapping_sub(1) < 0x7F)
}

/// A PUBACK from its body (the bytes after the fixed header).
pub(crate) fn decode_puback(body: &[u8]) -> Result<Inbound, DecodeError> {
    let Some((id, rest)) = body.split_first_chunk::<2>() else {
        return Err(malformed("PUBACK", "shorter than a packet identifier"));
    };
    if rest.len() >= 2 && check_properties("PUBACK", body, 3)? != body.len() {
        return Err(malformed("PUBACK", "bytes after the properties"));
    }
    let packet_id = u16::from_be_bytes(*id);
    if packet_id == 0 {
        return Err(malformed("PUBACK", "packet identifier 0"));
    }
    // The reason codes MQTT v5 allows in a PUBACK (§3.4.2.1).
    let code = rest.first().copied().unwrap_or(0);
    if !matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    ) {
        return Err(malformed("PUBACK", "reason code not allowed in a PUBACK"));
    }
    Ok(Inbound::PubAck {
        packet_id,
        reason: PubAckReason::from_code(code),
    })
}

/// The strings that arrive on most state-store messages (shared, not allocated).
fn known_string(bytes: &[u8]) -> Option<&'static str> {
    let candidates: &[&'static str] = match bytes.len() {
        3 => &["200", "1.0"],
        4 => &["__ts"],
        6 => &["__stat"],
        7 => &["__stMsg", "__srcId"],
        9 => &["__protVer"],
        24 => &["application/octet-stream"],
        _ => return None,
    };
    candidates.iter().copied().find(|k| k.as_bytes() == bytes)
}
/// Reads big-endian fields and length-prefixed strings from a packet body without copying.
struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let range = self.at..self.at.checked_add(n)?;
        if range.end > self.buf.len() {
            return None;
        }
        self.at = range.end;
        Some(range)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|r| self.buf[r.start])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|r| u16::from_be_bytes([self.buf[r.start], self.buf[r.start + 1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let r = self.take(4)?;
        let b = &self.buf[r];
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn binary(&mut self) -> Option<Bytes> {
        let len = usize::from(self.u16()?);
        self.take(len).map(|r| self.buf.slice(r))
    }
    /// A string that is probably `cache`: shared if it is, else read and kept in `cache`.
    fn string_cached(&mut self, cache: &mut SharedStr) -> Option<SharedStr> {
        let at = self.at;
        let len = usize::from(self.u16()?);
        if self.buf.get(self.at..self.at + len) == Some(cache.as_bytes()) {
            self.at += len;
            return Some(cache.clone());
        }
        self.at = at;
        let s = self.string()?;
        *cache = s.clone();
        Some(s)
    }

    /// Checks a string (length, no NUL, UTF-8) without keeping it.
    fn check_string(&mut self) -> Option<()> {
        let len = usize::from(self.u16()?);
        let range = self.take(len)?;
        let bytes = &self.buf[range];
        // ASCII without NUL is valid at once (the common case).
        if is_ascii_without_nul(bytes) {
            return Some(());
        }
        if bytes.contains(&0) || std::str::from_utf8(bytes).is_err() {
            return None;
        }
        Some(())
    }

    fn string(&mut self) -> Option<SharedStr> {
        let len = usize::from(self.u16()?);
        let range = self.take(len)?;
        let bytes = &self.buf[range];
        if bytes.contains(&0) {
            return None;
        }
        // The protocol's fixed names and values are shared, not allocated, on every message.
        if let Some(known) = known_string(bytes) {
            return Some(SharedStr::from_static(known));
        }
        SharedStr::from_utf8(bytes).ok()
    }
}

/// Decodes the body of a DISCONNECT: an optional reason code (absent = 0x00), then optional
/// properties that must fill the rest of the body exactly. The properties are not surfaced.
fn decode_reason_only(packet: &'static str, body: &[u8]) -> Result<u8, DecodeError> {
    let Some((&code, rest)) = body.split_first() else {
        return Ok(0);
    };
    if rest.is_empty() {
        return Ok(code);
    }
    let (len_len, props_len) =
        read_varint(rest).ok_or_else(|| malformed(packet, "bad property length"))?;
    if len_len + props_len != rest.len() {
        return Err(malformed(
            packet,
            "property length does not match the packet",
        ));
    }
    Ok(code)
}

/// Decodes the body of an AUTH: an optional reason code (absent = success, and then no
/// properties), then a property block that must fill the rest of the body exactly and may hold
/// the Authentication Method and Data (once each), a Reason String and User Properties.
fn decode_auth(body: &[u8]) -> Result<Auth, DecodeError> {
    let bad = |detail: &str| Err(malformed("AUTH", detail));
    let mut auth = Auth {
        reason: 0,
        method: None,
        data: None,
    };
    let Some((&reason, rest)) = body.split_first() else {
        return Ok(auth);
    };
    auth.reason = reason;
    if rest.is_empty() {
        return Ok(auth);
    }
    let Some((len_len, len)) = read_varint(rest) else {
        return bad("bad property length");
    };
    if len_len + len != rest.len() {
        return bad("property length does not match the packet");
    }
    let mut block = &rest[len_len..];
    while let Some((&id, tail)) = block.split_first() {
        let Some(size) = prefixed(tail, if id == 0x26 { 2 } else { 1 }) else {
            return bad("property runs past the packet");
        };
        let Some(value) = tail.get(2..size) else {
            return bad("property runs past the packet");
        };
        match id {
            0x15 if auth.method.is_none() => match std::str::from_utf8(value) {
                Ok(method) => auth.method = Some(method.to_owned()),
                Err(_) => return bad("authentication method is not UTF-8"),
            },
            0x16 if auth.data.is_none() => auth.data = Some(Bytes::copy_from_slice(value)),
            0x15 | 0x16 => return bad("authentication method or data repeated"),
            0x1F | 0x26 => {}
            _ => return bad("unknown or unexpected property"),
        }
        block = &tail[size..];
    }
    Ok(auth)
}

/// Walks the property block starting at `body[at..]` (its length, then the properties) and checks
/// that every property is known and that the last one ends exactly at the end of the block.
/// Returns the offset just after the block.
/// The size of the value of property `id`, whose bytes start `tail` (`Ok(None)`: its length
/// runs past `tail`; `Err`: not an MQTT v5 property).
pub(crate) fn property_size(id: u8, tail: &[u8]) -> Result<Option<usize>, ()> {
    Ok(match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Some(1),
        0x13 | 0x21 | 0x22 | 0x23 => Some(2),
        0x02 | 0x11 | 0x18 | 0x27 => Some(4),
        0x0B => read_varint(tail).map(|(n, _)| n),
        0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => prefixed(tail, 1),
        0x26 => prefixed(tail, 2),
        _ => return Err(()),
    })
}

fn check_properties(packet: &'static str, body: &[u8], at: usize) -> Result<usize, DecodeError> {
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
fn prefixed(buf: &[u8], count: usize) -> Option<usize> {
    let mut used = 0;
    for _ in 0..count {
        let len = buf.get(used..used + 2)?;
        used += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    Some(used)
}

/// A variable byte integer at the start of `buf`: (bytes used, value). `None` if truncated or longer
/// than 4 bytes.
fn read_varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 1, value));
        }
    }
    None
}

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

pub(crate) fn put_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

/// The size of the blocks outgoing packets are written into: each `poll_transmit` hands out the
/// filled part and the next packets go into the rest of the block, one allocation for many.
const TX_BLOCK: usize = 8192;

/// Makes room for `len` more bytes in `out`, a new block at a time.
pub(crate) fn reserve_block(out: &mut BytesMut, len: usize) {
    if out.capacity() - out.len() < len {
        out.reserve(len.max(TX_BLOCK));
    }
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    // Callers check lengths with `check_field` first.
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
        props.put_u8(0x11);
        props.put_u32(c.session_expiry);
    }
    props.put_u8(0x21);
    props.put_u16(RECEIVE_MAXIMUM);
    props.put_u8(0x27);
    props.put_u32(c.maximum_packet_size);
    props.put_u8(0x22);
    props.put_u16(0); // Topic Alias Maximum: we accept no aliases.
    props.put_u8(0x17);
    props.put_u8(1); // Request Problem Information.
    if let Some(method) = c.authentication_method {
        props.put_u8(0x15);
        put_str(&mut props, method.as_bytes());
    }
    if let Some(data) = c.authentication_data {
        props.put_u8(0x16);
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

pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
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
        out.put_u8(0x02);
        out.put_u32(expiry);
    }
    if let Some(ct) = &message.content_type {
        out.put_u8(0x03);
        put_str(out, ct.as_bytes());
    }
    if let Some(rt) = &message.response_topic {
        out.put_u8(0x08);
        put_str(out, rt.as_bytes());
    }
    if let Some(cd) = &message.correlation_data {
        out.put_u8(0x09);
        put_str(out, cd);
    }
    for (k, v) in &message.user_properties {
        out.put_u8(0x26);
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
    props.put_u8(0x15);
    put_str(&mut props, method.as_bytes());
    if let Some(data) = data {
        props.put_u8(0x16);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a PUBLISH on its own, checking that `publish_len` predicted its size.
    fn encoded_publish(m: &Message, packet_id: u16, dup: bool) -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::from(&b"prefix"[..]);
        encode_publish(&mut out, m, packet_id, dup)?;
        let out = out.split_off(6);
        assert_eq!(publish_len(m).unwrap(), out.len());
        Ok(out)
    }

    /// Frames and decodes one whole packet.
    fn decode_all(bytes: &[u8]) -> Result<Inbound, DecodeError> {
        let frame = frame(bytes, 1 << 20)?.expect("complete frame");
        assert_eq!(frame.len, bytes.len());
        let plain = decode(
            Bytes::copy_from_slice(bytes),
            frame,
            &mut SharedStr::default(),
            None,
        );
        // A PUBLISH on the raw topic: the same checks, and the same message once converted.
        if bytes[0] >> 4 == 3 {
            let body = &bytes[frame.header_len..];
            let topic = body
                .get(2..prefixed(body, 1).unwrap_or(0).max(2))
                .and_then(|t| std::str::from_utf8(t).ok())
                .unwrap_or("");
            let raw = decode(
                Bytes::copy_from_slice(bytes),
                frame,
                &mut SharedStr::default(),
                Some(&SharedStr::from(topic)),
            );
            let as_plain = raw.map(|inbound| match inbound {
                Inbound::RawPublish(r) => Inbound::Publish(InboundPublish {
                    packet_id: r.packet_id,
                    exactly_once: r.exactly_once,
                    topic_alias: r.topic_alias,
                    message: r.into_message(),
                }),
                other => other,
            });
            assert_eq!(as_plain, plain, "raw and message decoding disagree");
        }
        plain
    }

    #[test]
    fn ascii_without_nul_agrees_with_the_plain_definition() {
        let plain = |b: &[u8]| b.iter().all(|&c| (1..=0x7F).contains(&c));
        let mut cases: Vec<Vec<u8>> =
            vec![vec![], b"__stat".to_vec(), b"0123456789abcdefg".to_vec()];
        for len in [1, 7, 8, 9, 16, 17, 31] {
            for at in 0..len {
                for bad in [0u8, 0x80, 0xFF, 0x7F, 0x01] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    cases.push(v);
                }
            }
        }
        for case in cases {
            assert_eq!(is_ascii_without_nul(&case), plain(&case), "{case:?}");
        }
    }

    #[test]
    fn the_topic_of_the_previous_publish_is_reused() {
        let decode_with = |bytes: &[u8], cache: &mut SharedStr| {
            let frame = frame(bytes, 1 << 20).unwrap().unwrap();
            match decode(Bytes::copy_from_slice(bytes), frame, cache, None) {
                Ok(Inbound::Publish(p)) => p.message.topic,
                other => panic!("{other:?}"),
            }
        };
        let a_b = [0x30, 0x07, 0, 3, b'a', b'/', b'b', 0, b'x'];
        let a_c = [0x30, 0x07, 0, 3, b'a', b'/', b'c', 0, b'x'];
        let mut cache = SharedStr::default();
        assert_eq!(decode_with(&a_b, &mut cache), "a/b");
        assert_eq!(cache, "a/b");
        assert_eq!(decode_with(&a_b, &mut cache), "a/b");
        assert_eq!(decode_with(&a_c, &mut cache), "a/c");
        assert_eq!(cache, "a/c");
        // A topic that is not valid is refused whatever the cache holds.
        let mut nul = a_b;
        nul[5] = 0;
        let frame = frame(&nul, 1 << 20).unwrap().unwrap();
        assert!(decode(Bytes::copy_from_slice(&nul), frame, &mut cache, None).is_err());
    }

    /// mqttbytes' own decoder, for showing its defects.
    fn mb_read(bytes: &[u8]) -> Result<mb::Packet, mqttbytes::Error> {
        mb::read(&mut BytesMut::from(bytes), 1 << 20)
    }

    #[test]
    fn framing_tells_need_more_from_malformed() {
        assert_eq!(frame(&[], 100), Ok(None));
        assert_eq!(frame(&[0x30], 100), Ok(None));
        assert_eq!(frame(&[0x30, 0x80], 100), Ok(None));
        assert_eq!(
            frame(&[0x30, 0x05, 0, 1], 100),
            Ok(Some(Frame {
                header_len: 2,
                len: 7
            }))
        );
        // A fifth remaining-length byte is malformed, not "need more".
        assert_eq!(
            frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX),
            Err(DecodeError::RemainingLength)
        );
        assert_eq!(
            frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], usize::MAX),
            Err(DecodeError::RemainingLength)
        );
        assert_eq!(
            frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
            Ok(Some(Frame {
                header_len: 5,
                len: 5 + MAX_REMAINING_LENGTH
            }))
        );
        assert_eq!(frame(&[0x00, 0x00], 100), Err(DecodeError::PacketType));
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        assert_eq!(
            frame(&[0x30, 0x80, 0x01], 100),
            Err(DecodeError::TooLarge {
                size: 131,
                max: 100
            })
        );
        assert_eq!(
            frame(&[0x30, 0x62], 100),
            Ok(Some(Frame {
                header_len: 2,
                len: 100
            }))
        );
    }

    /// Defect 1: mqttbytes cannot decode a DISCONNECT with a reason code and no properties
    /// (nor one with remaining length 0); we decode DISCONNECT ourselves.
    #[test]
    fn defect_1_disconnect_without_properties() {
        assert_eq!(
            mb_read(&[0xE0, 0x01, 0x8E]),
            Err(mqttbytes::Error::InsufficientBytes(1))
        );
        assert_eq!(
            mb_read(&[0xE0, 0x00]),
            Err(mqttbytes::Error::PayloadRequired)
        );
        assert_eq!(
            decode_all(&[0xE0, 0x01, 0x8E]),
            Ok(Inbound::Disconnect(DisconnectReason::SessionTakenOver))
        );
        assert_eq!(
            decode_all(&[0xE0, 0x00]),
            Ok(Inbound::Disconnect(DisconnectReason::NormalDisconnection))
        );
        // With properties (a reason string "x").
        assert_eq!(
            decode_all(&[0xE0, 0x06, 0x8B, 0x04, 0x1F, 0x00, 0x01, b'x']),
            Ok(Inbound::Disconnect(DisconnectReason::ServerShuttingDown))
        );
        // A property length that does not match the packet is malformed.
        assert!(matches!(
            decode_all(&[0xE0, 0x03, 0x8B, 0x05, 0x1F]),
            Err(DecodeError::Packet { .. })
        ));
        assert!(matches!(
            decode_all(&[0xE1, 0x00]),
            Err(DecodeError::Flags { .. })
        ));
    }

    /// Defect 2: mqttbytes reports a complete but truncated frame as "insufficient bytes", which
    /// would make a reader wait forever; we hand it only complete frames and call that malformed.
    #[test]
    fn defect_2_complete_malformed_frame_is_not_need_more() {
        // CONNACK and SUBACK whose property length is missing: the frames are complete.
        for bytes in [&[0x20, 0x02, 0x00, 0x00][..], &[0x90, 0x02, 0x00, 0x01][..]] {
            assert!(matches!(
                mb_read(bytes),
                Err(mqttbytes::Error::InsufficientBytes(_))
            ));
            assert!(matches!(decode_all(bytes), Err(DecodeError::Packet { .. })));
        }
    }

    /// Defect 3: mqttbytes' CONNECT writer patches the flags at an absolute offset, so a CONNECT
    /// written after another packet is corrupt; ours can be appended anywhere.
    #[test]
    fn defect_3_connect_in_a_non_empty_buffer() {
        let mut connect = mb::Connect::new("c");
        connect.clean_session = true;
        let mut fresh = BytesMut::new();
        connect.write(&mut fresh).unwrap();
        let mut shared = BytesMut::from(&[0xC0, 0x00][..]);
        connect.write(&mut shared).unwrap();
        assert_ne!(
            &shared[2..],
            &fresh[..],
            "mqttbytes defect 3 is fixed upstream"
        );

        let fields = ConnectFields {
            client_id: "c",
            clean_start: true,
            keep_alive_secs: 60,
            session_expiry: 0,
            username: Some("u"),
            password: Some(b"p"),
            authentication_method: None,
            authentication_data: None,
            maximum_packet_size: 1000,
        };
        let mut ours_fresh = BytesMut::new();
        encode_connect(&mut ours_fresh, &fields).unwrap();
        let mut ours_shared = BytesMut::from(&[0xC0, 0x00][..]);
        encode_connect(&mut ours_shared, &fields).unwrap();
        assert_eq!(&ours_shared[2..], &ours_fresh[..]);

        // An independent decoder (mqttbytes' CONNECT reader) agrees with our encoding.
        let Ok(mb::Packet::Connect(read)) = mb_read(&ours_fresh) else {
            panic!("our CONNECT does not decode");
        };
        assert_eq!(read.client_id, "c");
        assert!(read.clean_session);
        assert_eq!(read.keep_alive, 60);
        assert_eq!(read.login, Some(mb::Login::new("u", "p")));
        let props = read.properties.unwrap();
        assert_eq!(props.receive_maximum, Some(RECEIVE_MAXIMUM));
        assert_eq!(props.max_packet_size, Some(1000));
        assert_eq!(props.topic_alias_max, Some(0));
        assert_eq!(props.request_problem_info, Some(1));
    }

    /// Defect 4: mqttbytes' UNSUBSCRIBE decoder prints with `dbg!`. A client never receives an
    /// UNSUBSCRIBE: we report it as unexpected without handing it to mqttbytes.
    #[test]
    fn defect_4_unsubscribe_never_reaches_mqttbytes() {
        let unsubscribe = [0xA2, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'];
        assert_eq!(decode_all(&unsubscribe), Ok(Inbound::Unexpected(10)));
    }

    /// Defect 5: mqttbytes accepts a property that overruns its block, eating into the payload.
    #[test]
    fn defect_5_property_overrunning_its_block() {
        // Property length 1, but Message Expiry Interval takes 5 bytes.
        let bytes = [0x30, 0x0A, 0, 1, b't', 0x01, 0x02, 0, 0, 0, 9, b'x'];
        let Ok(mb::Packet::Publish(publish)) = mb_read(&bytes) else {
            panic!("mqttbytes defect 5 is fixed upstream");
        };
        assert_eq!(&publish.payload[..], b"x", "the expiry ate the payload");
        assert!(matches!(
            decode_all(&bytes),
            Err(DecodeError::Packet {
                packet: "PUBLISH",
                ..
            })
        ));
        // Unknown property, property past the packet, trailing bytes after CONNACK properties.
        assert!(decode_all(&[0x30, 0x06, 0, 1, b't', 0x02, 0x7F, 0]).is_err());
        assert!(decode_all(&[0x30, 0x05, 0, 1, b't', 0x05, 0x02]).is_err());
        assert!(decode_all(&[0x20, 0x04, 0, 0, 0, 0]).is_err());
        assert!(decode_all(&[0x40, 0x05, 0, 1, 0x10, 0, 0]).is_err());
    }

    /// Decoding never panics and never asks for more bytes once a frame is complete.
    #[test]
    fn random_complete_frames_decode_or_fail_cleanly() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        };
        for _ in 0..50_000 {
            let first = next();
            let len = usize::from(next() % 40);
            let mut bytes = vec![first, len as u8];
            // Mostly well-formed starts: a plausible property length after the usual fields.
            bytes.extend((0..len).map(|i| if i < 6 && next() % 2 == 0 { 0 } else { next() }));
            if let Ok(Some(frame)) = frame(&bytes, 1 << 20) {
                let _ = decode(Bytes::from(bytes), frame, &mut SharedStr::default(), None);
            }
        }
    }

    #[test]
    fn puback_with_and_without_reason_and_properties() {
        let ack = |reason| {
            Ok(Inbound::PubAck {
                packet_id: 7,
                reason,
            })
        };
        assert_eq!(decode_all(&[0x40, 0x02, 0, 7]), ack(PubAckReason::Success));
        assert_eq!(
            decode_all(&[0x40, 0x03, 0, 7, 0x10]),
            ack(PubAckReason::NoMatchingSubscribers)
        );
        assert_eq!(
            decode_all(&[0x40, 0x04, 0, 7, 0x87, 0x00]),
            ack(PubAckReason::NotAuthorized)
        );
        assert_eq!(
            decode_all(&[0x40, 0x08, 0, 7, 0x97, 0x04, 0x1F, 0, 1, b'q']),
            ack(PubAckReason::QuotaExceeded)
        );
        assert!(decode_all(&[0x40, 0x02, 0, 0]).is_err());
        assert!(decode_all(&[0x40, 0x01, 0]).is_err());
        assert!(decode_all(&[0x40, 0x03, 0, 7, 0x42]).is_err());
    }

    #[test]
    fn suback_with_and_without_properties() {
        let expected = Ok(Inbound::SubAck {
            packet_id: 1,
            results: vec![
                Ok(QoS::AtLeastOnce),
                Ok(QoS::AtMostOnce),
                Err(SubscribeFailure::NotAuthorized),
            ],
            granted_exactly_once: false,
        });
        assert_eq!(decode_all(&[0x90, 0x06, 0, 1, 0, 1, 0, 0x87]), expected);
        assert_eq!(
            decode_all(&[0x90, 0x0A, 0, 1, 4, 0x1F, 0, 1, b'r', 1, 0, 0x87]),
            expected
        );
        assert!(decode_all(&[0x90, 0x03, 0, 1, 0]).is_err());
    }

    #[test]
    fn connack_with_and_without_properties() {
        assert_eq!(
            decode_all(&[0x20, 0x03, 0x01, 0x00, 0x00]),
            Ok(Inbound::ConnAck(ConnAck {
                session_present: true,
                ..ConnAck::default()
            }))
        );
        let with_props = [
            0x20, 0x12, 0x00, 0x00, 0x0F, 0x21, 0x00, 0x05, 0x27, 0x00, 0x00, 0x10, 0x00, 0x13,
            0x00, 0x1E, 0x12, 0x00, 0x01, b'z',
        ];
        assert_eq!(
            decode_all(&with_props),
            Ok(Inbound::ConnAck(ConnAck {
                session_present: false,
                refused: None,
                receive_maximum: Some(5),
                maximum_packet_size: Some(4096),
                server_keep_alive: Some(30),
                assigned_client_id: Some("z".into()),
                maximum_qos: None,
            }))
        );
        // Refusals, including a code mqttbytes does not know.
        for (code, reason) in [
            (0x87, ConnectReason::NotAuthorized),
            (0x8C, ConnectReason::BadAuthenticationMethod),
            (0xF0, ConnectReason::Other(0xF0)),
        ] {
            assert_eq!(
                decode_all(&[0x20, 0x03, 0x00, code, 0x00]),
                Ok(Inbound::ConnAck(ConnAck {
                    refused: Some(reason),
                    ..ConnAck::default()
                }))
            );
        }
        assert!(decode_all(&[0x20, 0x03, 0x02, 0x00, 0x00]).is_err());
        assert!(decode_all(&[0x20, 0x01, 0x00]).is_err());
    }

    #[test]
    fn message_properties_round_trip() {
        let message = Message {
            topic: "state/req".into(),
            payload: Bytes::from_static(b"*1\r\n"),
            qos: QoS::AtLeastOnce,
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            response_topic: Some("state/resp".into()),
            message_expiry: Some(10),
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![("__ts".into(), "1:0:c".into()), ("a".into(), "".into())],
        };
        let encoded = encoded_publish(&message, 42, true).unwrap();
        assert_eq!(encoded[0], 0x3A, "QoS 1 with DUP");
        let Ok(Inbound::Publish(publish)) = decode_all(&encoded) else {
            panic!("does not decode");
        };
        assert_eq!(publish.packet_id, 42);
        assert_eq!(publish.topic_alias, None);
        assert_eq!(publish.message, message);

        let plain = Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            ..Message::default()
        };
        let encoded = encoded_publish(&plain, 42, true).unwrap();
        assert_eq!(&encoded[..], &[0x30, 0x05, 0, 1, b't', 0, b'x']);
        let Ok(Inbound::Publish(publish)) = decode_all(&encoded) else {
            panic!("does not decode");
        };
        assert_eq!(publish.message, plain);
    }

    #[test]
    fn inbound_publish_flags() {
        // QoS 2.
        let Ok(Inbound::Publish(p)) = decode_all(&[0x34, 0x06, 0, 1, b't', 0, 9, 0]) else {
            panic!()
        };
        assert!(p.exactly_once);
        // Topic alias 1.
        let Ok(Inbound::Publish(p)) = decode_all(&[0x30, 0x07, 0, 1, b't', 3, 0x23, 0, 1]) else {
            panic!()
        };
        assert_eq!(p.topic_alias, Some(1));
        // QoS 3 and packet id 0 are malformed.
        assert!(decode_all(&[0x36, 0x06, 0, 1, b't', 0, 9, 0]).is_err());
        assert!(decode_all(&[0x32, 0x06, 0, 1, b't', 0, 0, 0]).is_err());
        // DUP on QoS 0.
        assert!(decode_all(&[0x38, 0x04, 0, 1, b't', 0]).is_err());
        // Topic length past the frame.
        assert!(decode_all(&[0x30, 0x03, 0, 9, b't']).is_err());
    }

    #[test]
    fn oversized_fields_are_refused_not_truncated() {
        let message = Message {
            topic: "t".repeat(70_000).into(),
            ..Message::default()
        };
        assert_eq!(
            encoded_publish(&message, 1, false).unwrap_err(),
            EncodeError::FieldTooLong("topic")
        );
        let long = "f".repeat(70_000);
        assert_eq!(
            encode_subscribe(1, &[(&long, QoS::AtLeastOnce)]).unwrap_err(),
            EncodeError::FieldTooLong("topic filter")
        );
    }

    #[test]
    fn outbound_fixed_packets() {
        let mut out = BytesMut::new();
        encode_puback(&mut out, 0x1234);
        encode_pingreq(&mut out);
        encode_disconnect(&mut out, DisconnectReason::NormalDisconnection);
        encode_disconnect(&mut out, DisconnectReason::MalformedPacket);
        assert_eq!(
            &out[..],
            &[0x40, 2, 0x12, 0x34, 0xC0, 0, 0xE0, 0, 0xE0, 1, 0x81]
        );
        assert_eq!(
            &encode_subscribe(1, &[("a", QoS::AtLeastOnce), ("b", QoS::AtMostOnce)]).unwrap()[..],
            &[0x82, 0x0B, 0, 1, 0, 0, 1, b'a', 1, 0, 1, b'b', 0]
        );
    }
}
