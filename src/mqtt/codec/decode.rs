//! Framing of inbound packets, and the decoding of every packet a client receives but PUBLISH
//! (see `publish`).

use bytes::Bytes;
use mqttbytes::v5 as mb;

use super::property::{self, check_properties, prefixed};
use super::publish::{decode_publish, InboundPublish, RawPublish};
use super::varint::read_varint;
use super::{from_mb, malformed, DecodeError};
use crate::mqtt::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{QoS, SharedStr};

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
        let Some(size) = prefixed(tail, if id == property::USER_PROPERTY { 2 } else { 1 }) else {
            return bad("property runs past the packet");
        };
        let Some(value) = tail.get(2..size) else {
            return bad("property runs past the packet");
        };
        match id {
            property::AUTHENTICATION_METHOD if auth.method.is_none() => {
                match std::str::from_utf8(value) {
                    Ok(method) => auth.method = Some(method.to_owned()),
                    Err(_) => return bad("authentication method is not UTF-8"),
                }
            }
            property::AUTHENTICATION_DATA if auth.data.is_none() => {
                auth.data = Some(Bytes::copy_from_slice(value))
            }
            property::AUTHENTICATION_METHOD | property::AUTHENTICATION_DATA => {
                return bad("authentication method or data repeated")
            }
            property::REASON_STRING | property::USER_PROPERTY => {}
            _ => return bad("unknown or unexpected property"),
        }
        block = &tail[size..];
    }
    Ok(auth)
}
