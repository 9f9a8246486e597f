//! Decoding of an inbound PUBLISH: into a [`Message`] without copying, or, on the raw topic,
//! checked and left as bytes ([`RawPublish`]).

use bytes::Bytes;

use super::decode::{Frame, Inbound};
use super::property::{self, Properties};
use super::varint::read_varint;
use super::{malformed, DecodeError};
use crate::{Message, QoS, SharedStr};

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

/// Decodes a PUBLISH without copying: topic, property strings and payload are slices of `bytes`.
/// `topic_cache` holds the topic of the previous PUBLISH: the same topic again (every response
/// comes on one) is shared, not allocated. A PUBLISH on `raw_topic` is checked the same way but
/// left as bytes ([`Inbound::RawPublish`]).
pub(super) fn decode_publish(
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
            property::PAYLOAD_FORMAT_INDICATOR => r.u8().is_some(),
            property::MESSAGE_EXPIRY_INTERVAL => match (r.u32(), message.as_deref_mut()) {
                (Some(v), Some(m)) => {
                    m.message_expiry = Some(v);
                    true
                }
                (v, _) => v.is_some(),
            },
            property::CONTENT_TYPE | property::RESPONSE_TOPIC => {
                match (string(r, keep), message.as_deref_mut()) {
                    (Some(Some(v)), Some(m)) if id == property::CONTENT_TYPE => {
                        m.content_type = Some(v);
                        true
                    }
                    (Some(Some(v)), Some(m)) => {
                        m.response_topic = Some(v);
                        true
                    }
                    (v, _) => v.is_some(),
                }
            }
            property::CORRELATION_DATA => match (r.binary(), message.as_deref_mut()) {
                (Some(v), Some(m)) => {
                    m.correlation_data = Some(v);
                    true
                }
                (v, _) => v.is_some(),
            },
            property::SUBSCRIPTION_IDENTIFIER => match read_varint(&r.buf[r.at..]) {
                Some((n, _)) => {
                    r.at += n;
                    true
                }
                None => false,
            },
            property::TOPIC_ALIAS => r.u16().map(|v| topic_alias = Some(v)).is_some(),
            property::USER_PROPERTY => {
                match (string(r, keep), string(r, keep), message.as_deref_mut()) {
                    (Some(Some(k)), Some(Some(v)), Some(m)) => {
                        m.user_properties.push((k, v));
                        true
                    }
                    (k, v, _) => k.is_some() && v.is_some(),
                }
            }
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

    /// Its properties, read in place.
    pub(crate) fn properties(&self) -> Properties<'_> {
        Properties::new(self.packet.get(self.props.clone()).unwrap_or_default())
    }

    /// Its payload, in place.
    pub(crate) fn payload(&self) -> &[u8] {
        self.packet.get(self.payload.clone()).unwrap_or_default()
    }
}

/// Whether every byte is in 1..=0x7F, eight bytes at a time.
pub(super) fn is_ascii_without_nul(bytes: &[u8]) -> bool {
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
