//! The PUBLISH packets of state-store requests, written straight from a per-client template.
//!
//! Every request of a client shares its topic, content type, response topic and four of its user
//! properties; [`RequestTemplate`] encodes those once, and [`RequestTemplate::write`] adds what
//! differs (message expiry, correlation data, `__ts`, `__ft`, the RESP payload). The bytes are
//! exactly those of [`Request::to_message`] encoded by the MQTT session, without building the
//! message.

use bytes::{BufMut, Bytes, BytesMut};

use crate::block::Blocks;
use crate::hlc::{text_prefix, FencingToken};
use crate::lock;
use crate::mqtt::codec::{put_varint, varint_len, MAX_REMAINING_LENGTH};
use crate::mqtt::PublishError;
#[cfg(test)]
use crate::store::Request;
use crate::store::{
    Command, RequestSender, CONTENT_TYPE, PROP_FENCING_TOKEN, PROP_HIGH_PRIORITY, PROP_PARTITION,
    PROP_PROTOCOL_VERSION, PROP_SOURCE_ID, PROP_TIMESTAMP, PROTOCOL_VERSION, REQUEST_TOPIC,
};

/// The bytes every request of one client shares.
#[derive(Debug, Clone)]
struct RequestTemplate {
    /// Topic name with its length prefix.
    topic: Vec<u8>,
    /// Content type and response topic properties.
    head: Vec<u8>,
    /// The `__srcId` user property, then the start of `__ts` (its id and name).
    source: Vec<u8>,
    /// `__protVer`, `$partition` and `$high_priority`.
    tail: Vec<u8>,
    /// The client id: the node of its own timestamps.
    node: Vec<u8>,
}

/// The size of the blocks request packets are written into.
const PACKET_BLOCK: usize = 8192;

/// Writes a client's requests as PUBLISH packets, cut from shared blocks (one allocation for
/// many packets).
#[derive(Debug)]
pub(super) struct RequestWriter {
    template: RequestTemplate,
    blocks: Blocks,
}

impl RequestWriter {
    /// The writer for `sender`'s requests; `None` when one of its strings is too long for MQTT.
    pub(super) fn new(sender: &RequestSender) -> Option<Self> {
        Some(RequestWriter {
            template: RequestTemplate::new(sender)?,
            blocks: Blocks::new(PACKET_BLOCK),
        })
    }

    /// The QoS 1 PUBLISH of `request` with packet identifier 0, and the offset of that
    /// identifier in the packet.
    pub(super) fn write(
        &mut self,
        request: &lock::Request,
    ) -> Result<(Bytes, usize), PublishError> {
        let ts = (request.timestamp.wall_ms, request.timestamp.counter);
        // Most requests fit in what is left of the block; the template reserves what it needs.
        let (packet, written) = self.blocks.write(512, |out| {
            self.template.write_parts(
                &request.command,
                ts,
                request.fencing_token.as_ref(),
                u128::from_be_bytes(request.correlation_data),
                request.message_expiry(),
                out,
            )
        });
        match written {
            Ok(id_at) => Ok((packet, id_at)),
            Err(TooLarge { size }) => Err(PublishError::TooLarge {
                size,
                max: MAX_PACKET,
            }),
        }
    }
}

/// The largest MQTT packet (a remaining length of 268 435 455 and its 5-byte header).
const MAX_PACKET: usize = 268_435_460;

/// Why a request does not fit in a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TooLarge {
    /// The size it would have.
    pub size: usize,
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Option<()> {
    out.put_u16(u16::try_from(s.len()).ok()?);
    out.put_slice(s);
    Some(())
}

fn user_property(out: &mut Vec<u8>, name: &str, value: &[u8]) -> Option<()> {
    out.put_u8(0x26);
    put_str(out, name.as_bytes())?;
    put_str(out, value)
}

/// One user property whose value is an HLC: id, name, and the value's length prefix.
fn hlc_property_len(name: &str, text_len: usize) -> usize {
    1 + 2 + name.len() + 2 + text_len
}

impl RequestTemplate {
    /// The template for `sender`; `None` when one of its strings is too long for MQTT.
    fn new(sender: &RequestSender) -> Option<Self> {
        let client_id = sender.client_id().as_bytes();
        let mut topic = Vec::new();
        put_str(&mut topic, REQUEST_TOPIC.as_bytes())?;
        let mut head = vec![0x03];
        put_str(&mut head, CONTENT_TYPE.as_bytes())?;
        head.put_u8(0x08);
        put_str(&mut head, sender.response_topic().as_bytes())?;
        let mut source = Vec::new();
        user_property(&mut source, PROP_SOURCE_ID, client_id)?;
        source.put_u8(0x26);
        put_str(&mut source, PROP_TIMESTAMP.as_bytes())?;
        let mut tail = Vec::new();
        user_property(
            &mut tail,
            PROP_PROTOCOL_VERSION,
            PROTOCOL_VERSION.as_bytes(),
        )?;
        user_property(&mut tail, PROP_PARTITION, client_id)?;
        user_property(&mut tail, PROP_HIGH_PRIORITY, b"")?;
        Some(RequestTemplate {
            topic,
            head,
            source,
            tail,
            node: client_id.to_vec(),
        })
    }

    /// Appends the QoS 1 PUBLISH of `request` to `out`, with packet identifier 0; returns the
    /// offset of the packet identifier in the packet. The request's key must not be empty.
    #[cfg(test)]
    fn write(
        &self,
        request: &Request,
        correlation: u128,
        expiry_seconds: u32,
        out: &mut BytesMut,
    ) -> Result<usize, TooLarge> {
        debug_assert_eq!(request.timestamp.node_id.as_bytes(), &self.node[..]);
        let ts = (request.timestamp.wall_ms, request.timestamp.counter);
        let ft = request.fencing_token.as_ref();
        self.write_parts(&request.command, ts, ft, correlation, expiry_seconds, out)
    }

    /// [`RequestTemplate::write`] from the parts of a request: its command, the wall clock and
    /// counter of its timestamp (whose node is the client), its fencing token.
    fn write_parts(
        &self,
        command: &Command,
        (wall_ms, counter): (u64, u64),
        fencing_token: Option<&FencingToken>,
        correlation: u128,
        expiry_seconds: u32,
        out: &mut BytesMut,
    ) -> Result<usize, TooLarge> {
        let ts = text_prefix(wall_ms, counter);
        let ts_len = ts.1 + self.node.len();
        let ft = fencing_token.map(|ft| {
            let prefix = ft.as_hlc().text_prefix();
            (prefix, ft.as_hlc().node_id.as_bytes())
        });
        let ft_len = ft.as_ref().map(|((_, len), node)| len + node.len());
        let payload_len = command.encoded_len();
        if ts_len > usize::from(u16::MAX) || ft_len.is_some_and(|n| n > usize::from(u16::MAX)) {
            return Err(TooLarge { size: usize::MAX });
        }
        let props = 5
            + self.head.len()
            + 3
            + 16
            + self.source.len()
            + 2
            + ts_len
            + self.tail.len()
            + ft_len.map_or(0, |n| hlc_property_len(PROP_FENCING_TOKEN, n));
        let remaining = self.topic.len() + 2 + varint_len(props) + props + payload_len;
        let size = 1 + varint_len(remaining) + remaining;
        if remaining > MAX_REMAINING_LENGTH {
            return Err(TooLarge { size });
        }
        out.reserve(size);
        out.put_u8(0x32);
        put_varint(out, remaining);
        out.put_slice(&self.topic);
        let id_at = 1 + varint_len(remaining) + self.topic.len();
        out.put_u16(0);
        put_varint(out, props);
        out.put_u8(0x02);
        out.put_u32(expiry_seconds);
        out.put_slice(&self.head);
        out.put_u8(0x09);
        out.put_u16(16);
        out.put_u128(correlation);
        out.put_slice(&self.source);
        out.put_u16(ts_len as u16);
        out.put_slice(&ts.0[..ts.1]);
        out.put_slice(&self.node);
        out.put_slice(&self.tail);
        if let (Some(((prefix, len), node)), Some(ft_len)) = (ft, ft_len) {
            out.put_u8(0x26);
            out.put_u16(PROP_FENCING_TOKEN.len() as u16);
            out.put_slice(PROP_FENCING_TOKEN.as_bytes());
            out.put_u16(ft_len as u16);
            out.put_slice(&prefix[..len]);
            out.put_slice(node);
        }
        command.write(out); // `out` has room: reserved above
        Ok(id_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::{FencingToken, Hlc};
    use crate::store::{Command, SetCondition, SetOptions};
    use bytes::Bytes;
    use std::num::NonZeroU64;
    use std::time::Duration;

    /// The packet the generic path makes: the request as a message, encoded by the session's codec.
    fn via_message(sender: &RequestSender, r: &Request, corr: u128, timeout: Duration) -> Vec<u8> {
        let m = r
            .to_message(sender, Bytes::copy_from_slice(&corr.to_be_bytes()), timeout)
            .unwrap();
        let mut out = BytesMut::new();
        crate::mqtt::codec::encode_publish(&mut out, &m, 0x1234, false).unwrap();
        out.to_vec()
    }

    #[test]
    fn the_template_writes_the_bytes_of_the_message_path() {
        let long = "k".repeat(300);
        let huge = Bytes::from(vec![b'v'; 20_000]);
        let commands = [
            Command::Get {
                key: Bytes::from_static(b"lock"),
            },
            Command::VDel {
                key: Bytes::from(long.clone()),
                value: Bytes::from_static(b"me"),
            },
            Command::Set {
                key: Bytes::from_static(b"lock"),
                value: huge,
                options: SetOptions {
                    condition: SetCondition::NotExistsOrEqual,
                    expiry: NonZeroU64::new(30_000),
                },
            },
            Command::KeyNotifyStop {
                key: Bytes::from_static(b"x"),
            },
        ];
        for client_id in ["c", "a-much-longer-client-identifier-0123456789", &long] {
            let sender = RequestSender::new(client_id).unwrap();
            let template = RequestTemplate::new(&sender).unwrap();
            for command in &commands {
                for ft in [None, Some(FencingToken::new(Hlc::new(17, 3, "store")))] {
                    let r = Request {
                        command: command.clone(),
                        timestamp: Hlc::new(1_700_000_000_123, 42, client_id),
                        fencing_token: ft,
                    };
                    let corr = 0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10;
                    let timeout = Duration::from_millis(2500);
                    let mut out = BytesMut::from(&b"before"[..]);
                    let expiry = crate::store::expiry_seconds(timeout);
                    let id_at = template.write(&r, corr, expiry, &mut out).unwrap();
                    let mut packet = out.split_off(6).to_vec();
                    assert_eq!(&packet[id_at..id_at + 2], &[0, 0]);
                    packet[id_at..id_at + 2].copy_from_slice(&0x1234u16.to_be_bytes());
                    assert_eq!(packet, via_message(&sender, &r, corr, timeout));
                }
            }
        }
    }
}
