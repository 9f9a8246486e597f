//! The engine's typed requests as PUBLISH packets, written from a per-client template.
//!
//! Every request of a client shares its topic, content type, response topic and four of its user
//! properties (`docs/PROTOCOL.md` §1). The template is made once from a sample request as the
//! store layer lays it out ([`store::Request::to_message`]), with `__ts` and `__ft` as the
//! user properties that vary; the MQTT layer's [`PublishTemplate`] then writes each request from
//! what differs (expiry, correlation data, `__ts`, `__ft`, the RESP payload). The bytes are exactly
//! those of the request's message encoded by the session, without building the message.

use crate::block::Blocks;
use crate::hlc::{text_prefix, FencingToken, Hlc};
use crate::lock;
use crate::mqtt::template::{PublishTemplate, TooLarge};
use crate::mqtt::PublishError;
use crate::store::{self, Command, RequestSender, PROP_FENCING_TOKEN, PROP_TIMESTAMP};
use bytes::Bytes;
use std::time::Duration;

/// The size of the blocks request packets are written into.
const PACKET_BLOCK: usize = 8192;

/// The largest MQTT packet (a remaining length of 268 435 455 and its 5-byte header).
const MAX_PACKET: usize = 268_435_460;

/// Writes a client's requests as PUBLISH packets, cut from shared blocks (one allocation for
/// many packets).
#[derive(Debug)]
pub(super) struct RequestWriter {
    template: PublishTemplate,
    /// The client id: the node of its own timestamps.
    node: Box<[u8]>,
    blocks: Blocks,
}

impl RequestWriter {
    /// The writer for `sender`'s requests; `None` when one of its strings is too long for MQTT.
    pub(super) fn new(sender: &RequestSender) -> Option<Self> {
        // Any request of this client, with a token, lays out every property of them all.
        let sample = store::Request {
            command: Command::Get {
                key: Bytes::from_static(b"k"),
            },
            timestamp: Hlc::new(0, 0, sender.client_id().clone()),
            fencing_token: Some(FencingToken::new(Hlc::new(0, 0, "store"))),
        }
        .to_message(sender, Bytes::from_static(&[0; 16]), Duration::from_secs(1))
        .ok()?;
        Some(RequestWriter {
            template: PublishTemplate::new(&sample, &[PROP_TIMESTAMP, PROP_FENCING_TOKEN])?,
            node: sender.client_id().as_bytes().into(),
            blocks: Blocks::new(PACKET_BLOCK),
        })
    }

    /// The QoS 1 PUBLISH of `request` with packet identifier 0, and the offset of that
    /// identifier in the packet.
    pub(super) fn write(
        &mut self,
        request: &lock::Request,
    ) -> Result<(Bytes, usize), PublishError> {
        let (ts, ts_len) = text_prefix(request.timestamp.wall_ms, request.timestamp.counter);
        let ts_parts: [&[u8]; 2] = [&ts[..ts_len], &self.node];
        let ft = request.fencing_token.as_ref().map(|ft| {
            let hlc = ft.as_hlc();
            (hlc.text_prefix(), hlc.node_id.as_bytes())
        });
        let ft_parts = ft
            .as_ref()
            .map(|((prefix, len), node)| [&prefix[..*len], *node]);
        let values = [Some(&ts_parts[..]), ft_parts.as_ref().map(|p| &p[..])];
        let command = &request.command;
        // Most requests fit in what is left of the block; the template reserves what it needs.
        let (packet, written) = self.blocks.write(512, |out| {
            self.template.write(
                Some(request.message_expiry()),
                Some(&request.correlation_data),
                &values,
                command.encoded_len(),
                |payload| command.write(payload),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SetCondition, SetOptions};
    use bytes::BytesMut;
    use std::num::NonZeroU64;

    /// The packet the generic path makes: the request as a message, encoded by the session's codec.
    fn via_message(sender: &RequestSender, r: &lock::Request) -> Vec<u8> {
        let m = store::Request {
            command: r.command.clone(),
            timestamp: r.timestamp.clone(),
            fencing_token: r.fencing_token.clone(),
        }
        .to_message(
            sender,
            Bytes::copy_from_slice(&r.correlation_data),
            r.timeout,
        )
        .unwrap();
        let mut out = BytesMut::new();
        crate::mqtt::codec::encode_publish(&mut out, &m, 0x1234, false).unwrap();
        out.to_vec()
    }

    #[test]
    fn requests_are_written_as_the_bytes_of_their_message() {
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
            let mut writer = RequestWriter::new(&sender).unwrap();
            for command in &commands {
                for ft in [None, Some(FencingToken::new(Hlc::new(17, 3, "store")))] {
                    for timeout in [Duration::from_millis(2500), Duration::from_secs(10)] {
                        let r = lock::Request {
                            correlation_data: 0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10u128
                                .to_be_bytes(),
                            command: command.clone(),
                            timestamp: Hlc::new(1_700_000_000_123, 42, client_id),
                            fencing_token: ft.clone(),
                            timeout,
                        };
                        let (packet, id_at) = writer.write(&r).unwrap();
                        let mut packet = packet.to_vec();
                        assert_eq!(&packet[id_at..id_at + 2], &[0, 0]);
                        packet[id_at..id_at + 2].copy_from_slice(&0x1234u16.to_be_bytes());
                        assert_eq!(packet, via_message(&sender, &r));
                    }
                }
            }
        }
    }

    #[test]
    fn a_request_too_large_for_mqtt_is_refused_without_writing() {
        let sender = RequestSender::new("c").unwrap();
        let mut writer = RequestWriter::new(&sender).unwrap();
        let r = lock::Request {
            correlation_data: [1; 16],
            command: Command::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![0u8; 268_435_455]),
                options: SetOptions::default(),
            },
            timestamp: Hlc::new(1, 0, "c"),
            fencing_token: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            writer.write(&r),
            Err(PublishError::TooLarge {
                max: MAX_PACKET,
                ..
            })
        ));
    }
}
