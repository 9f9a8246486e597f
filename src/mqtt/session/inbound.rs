//! Inbound bytes: framing, decoding, and what each packet from the server does.

use std::time::Instant;

use bytes::Bytes;

use super::{DisconnectCause, Event, Queued, Session, State};
use crate::mqtt::codec::{self, DecodeError, Inbound};
use crate::mqtt::reason::DisconnectReason;
use crate::QoS;

impl Session {
    /// Bytes received from the transport, in any split. Ignored while not connecting or connected.
    /// A PUBACK or SUBACK for a packet identifier we are not waiting on is ignored; a malformed or
    /// oversized packet, or a protocol violation, ends the connection (DISCONNECT sent).
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        let mut bytes = bytes;
        let max = self.max_inbound() as usize;
        // Whole packets straight from the input while nothing is buffered: a PUBACK is read in
        // place, any other packet copied once into a buffer of its own.
        while self.rx.is_empty() && self.state != State::Idle {
            let frame = match codec::frame(bytes, max) {
                Err(e) => return self.fail_malformed(e),
                Ok(Some(frame)) if bytes.len() >= frame.len => frame,
                Ok(_) => break,
            };
            let (packet, rest) = bytes.split_at(frame.len);
            bytes = rest;
            let inbound = if packet[0] == 0x40 {
                codec::decode_puback(&packet[frame.header_len..])
            } else {
                let packet = self.copy_packet(packet, frame.header_len);
                codec::decode(
                    packet,
                    frame,
                    &mut self.topic_cache,
                    self.raw_topic.as_ref(),
                )
            };
            match inbound {
                Ok(inbound) => self.handle_packet(now, inbound),
                Err(e) => return self.fail_malformed(e),
            }
        }
        while self.state != State::Idle {
            // Buffer no more than the rest of the current frame, so that the buffer stays bounded
            // by the maximum packet size and the fixed header is checked before the body arrives.
            let want = match codec::frame(&self.rx, max) {
                Err(e) => return self.fail_malformed(e),
                Ok(Some(frame)) if self.rx.len() >= frame.len => {
                    let packet = self.rx.split_to(frame.len).freeze();
                    match codec::decode(
                        packet,
                        frame,
                        &mut self.topic_cache,
                        self.raw_topic.as_ref(),
                    ) {
                        Ok(inbound) => self.handle_packet(now, inbound),
                        Err(e) => return self.fail_malformed(e),
                    }
                    continue;
                }
                Ok(Some(frame)) => frame.len - self.rx.len(),
                Ok(None) => 1,
            };
            if bytes.is_empty() {
                return;
            }
            let take = want.min(bytes.len());
            self.rx.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    /// An inbound packet, copied out of the caller's buffer. A PUBLISH on the raw topic (a
    /// response: read and dropped at once) is cut from a shared block, one allocation for many;
    /// any other packet gets a buffer of its exact size, since what it carries may be kept.
    fn copy_packet(&mut self, packet: &[u8], header_len: usize) -> Bytes {
        let raw = packet[0] >> 4 == 3
            && self.raw_topic.as_ref().is_some_and(|topic| {
                let t = topic.as_bytes();
                let len = (t.len() as u16).to_be_bytes();
                packet.get(header_len..header_len + 2) == Some(&len[..])
                    && packet.get(header_len + 2..header_len + 2 + t.len()) == Some(t)
            });
        if !raw {
            return Bytes::copy_from_slice(packet);
        }
        self.rx_blocks.copy(packet)
    }

    fn handle_packet(&mut self, now: Instant, inbound: Inbound) {
        self.last_received = Some(now);
        if let State::Connecting { .. } = self.state {
            return match inbound {
                Inbound::ConnAck(ack) => self.handle_connack(now, ack),
                Inbound::Auth(auth) => self.handle_auth(auth),
                Inbound::Disconnect(reason) => self.end(DisconnectCause::ByServer(reason), None),
                _ => self.violation("packet before CONNACK", DisconnectReason::ProtocolError),
            };
        }
        match inbound {
            Inbound::ConnAck(_) => {
                self.violation("second CONNACK", DisconnectReason::ProtocolError)
            }
            Inbound::Publish(publish) => {
                if self.accept_publish(
                    now,
                    publish.exactly_once,
                    publish.topic_alias,
                    publish.message.topic.is_empty(),
                    publish.message.qos,
                    publish.packet_id,
                ) {
                    self.push_event(Event::Message(publish.message));
                }
            }
            Inbound::RawPublish(raw) => {
                if self.accept_publish(
                    now,
                    raw.exactly_once,
                    raw.topic_alias,
                    raw.topic.is_empty(),
                    raw.qos,
                    raw.packet_id,
                ) {
                    self.events.push_back(Queued::Raw(raw));
                }
            }
            Inbound::PubAck { packet_id, reason } => {
                if let Some(pos) = self.inflight.iter().position(|p| p.packet_id == packet_id) {
                    if let Some(done) = self.inflight.remove(pos) {
                        self.used_packet_ids.remove(&packet_id);
                        self.push_event(Event::PublishAcked {
                            id: done.id,
                            reason,
                            message: done.message.into_message(),
                        });
                    }
                    self.drain_soon(now);
                }
            }
            Inbound::SubAck {
                packet_id,
                results,
                granted_exactly_once,
            } => {
                let Some(pos) = self.subscribes.iter().position(|s| s.0 == packet_id) else {
                    return;
                };
                let expected = self.subscribes[pos].2;
                if granted_exactly_once || results.len() != expected {
                    return self.violation(
                        "SUBACK does not answer our SUBSCRIBE",
                        DisconnectReason::ProtocolError,
                    );
                }
                if let Some((_, id, _)) = self.subscribes.remove(pos) {
                    self.used_packet_ids.remove(&packet_id);
                    self.push_event(Event::Subscribed { id, results });
                }
            }
            Inbound::PingResp => self.ping_deadline = None,
            Inbound::Disconnect(reason) => self.end(DisconnectCause::ByServer(reason), None),
            Inbound::Auth(auth) => self.handle_auth(auth),
            Inbound::Unexpected(packet_type) => self.violation(
                &format!("unexpected packet type {packet_type}"),
                DisconnectReason::ProtocolError,
            ),
        }
    }

    /// Checks an inbound PUBLISH and acknowledges it (QoS 1); `false` when it ended the session.
    fn accept_publish(
        &mut self,
        now: Instant,
        exactly_once: bool,
        topic_alias: Option<u16>,
        topic_empty: bool,
        qos: QoS,
        packet_id: u16,
    ) -> bool {
        if exactly_once {
            self.violation(
                "QoS 2 PUBLISH on a QoS 1 subscription",
                DisconnectReason::QoSNotSupported,
            );
            return false;
        }
        if topic_alias.is_some() {
            self.violation(
                "Topic Alias above our maximum of 0",
                DisconnectReason::TopicAliasInvalid,
            );
            return false;
        }
        if topic_empty {
            self.violation(
                "PUBLISH without a topic name",
                DisconnectReason::ProtocolError,
            );
            return false;
        }
        if qos == QoS::AtLeastOnce {
            codec::encode_puback(&mut self.tx, packet_id);
            self.last_sent = Some(now);
        }
        true
    }

    fn fail_malformed(&mut self, error: DecodeError) {
        let reason = match error {
            DecodeError::TooLarge { .. } => DisconnectReason::PacketTooLarge,
            _ => DisconnectReason::MalformedPacket,
        };
        self.end(DisconnectCause::Malformed(error), Some(reason));
    }
}
