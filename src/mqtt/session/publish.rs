//! Publishing: QoS 0 at once, QoS 1 through the in-flight window and its packet identifiers.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Event, PublishError, PublishId, Session, State};
use crate::mqtt::codec::{self, EncodeError};
use crate::{Message, QoS};

/// A QoS 1 publish that has a packet identifier and is (or was) on the wire.
#[derive(Clone, Debug)]
pub(super) struct Inflight {
    pub(super) id: PublishId,
    pub(super) packet_id: u16,
    pub(super) message: Outgoing,
    pub(super) send_by: Option<Instant>,
}

/// A QoS 1 publish waiting for room in flight. `packet_id` is set when it was already sent on an
/// earlier connection (then it goes out again with DUP=1).
#[derive(Clone, Debug)]
pub(super) struct Waiting {
    pub(super) id: PublishId,
    pub(super) packet_id: Option<u16>,
    pub(super) message: Outgoing,
    /// After this instant it is dropped instead of written (see [`Session::publish_by`]).
    pub(super) send_by: Option<Instant>,
}

/// What a QoS 1 publish sends: a message, or a whole PUBLISH packet encoded by the caller.
#[derive(Clone, Debug)]
pub(super) enum Outgoing {
    Message(Message),
    /// A QoS 1 PUBLISH (DUP=0, RETAIN=0) whose packet identifier, two bytes at `id_at`, is filled
    /// in when it is sent.
    Packet {
        bytes: Bytes,
        id_at: usize,
    },
}

impl Outgoing {
    fn len(&self) -> Result<usize, EncodeError> {
        match self {
            Outgoing::Message(m) => codec::publish_len(m),
            Outgoing::Packet { bytes, .. } => Ok(bytes.len()),
        }
    }

    pub(super) fn write(&self, tx: &mut BytesMut, packet_id: u16, dup: bool) {
        match self {
            // Checked when published: the message encodes.
            Outgoing::Message(m) => {
                let _ = codec::encode_publish(tx, m, packet_id, dup);
            }
            Outgoing::Packet { bytes, id_at } => {
                let start = tx.len();
                codec::reserve_block(tx, bytes.len());
                tx.extend_from_slice(bytes);
                tx[start] |= u8::from(dup) << 3;
                tx[start + id_at..start + id_at + 2].copy_from_slice(&packet_id.to_be_bytes());
            }
        }
    }

    pub(super) fn into_message(self) -> Option<Message> {
        match self {
            Outgoing::Message(m) => Some(m),
            Outgoing::Packet { .. } => None,
        }
    }
}

/// The packet identifiers in use, one bit each.
#[derive(Debug)]
pub(super) struct PacketIds(Vec<u64>);

impl PacketIds {
    pub(super) fn new() -> Self {
        PacketIds(vec![0; 1024])
    }

    /// Marks `id` used; `false` if it already was.
    pub(super) fn insert(&mut self, id: u16) -> bool {
        let (word, bit) = (usize::from(id >> 6), 1u64 << (id & 63));
        let free = self.0[word] & bit == 0;
        self.0[word] |= bit;
        free
    }

    pub(super) fn remove(&mut self, id: &u16) {
        self.0[usize::from(*id >> 6)] &= !(1u64 << (*id & 63));
    }
}

impl Session {
    /// Publishes a message. QoS 0 goes out at once (or fails when not connected). QoS 1 is queued
    /// and sent as soon as connected with room in flight; its outcome arrives as
    /// [`Event::PublishAcked`] or [`Event::PublishDropped`].
    pub fn publish(&mut self, now: Instant, message: Message) -> Result<PublishId, PublishError> {
        self.publish_until(now, message, None)
    }

    fn publish_until(
        &mut self,
        now: Instant,
        message: Message,
        send_by: Option<Instant>,
    ) -> Result<PublishId, PublishError> {
        // The same topic as the previous publish (the same memory: the request topic is one
        // shared string) was checked already.
        let topic = message.topic.as_bytes();
        if !std::ptr::eq(topic, self.checked_topic.as_bytes()) {
            if topic.is_empty() || topic.iter().any(|&b| matches!(b, b'+' | b'#' | 0)) {
                return Err(PublishError::InvalidTopic);
            }
            self.checked_topic = message.topic.clone();
        }
        if message.qos == QoS::AtLeastOnce && !self.limits.qos1 {
            return Err(PublishError::QoSNotSupported);
        }
        if message.qos == QoS::AtMostOnce && self.state != State::Connected {
            return Err(PublishError::NotConnected);
        }
        let size = codec::publish_len(&message).map_err(|e| match e {
            EncodeError::FieldTooLong(field) => PublishError::FieldTooLong(field),
            EncodeError::PacketTooLong => PublishError::TooLarge {
                size: usize::MAX,
                max: self.max_outbound(),
            },
        })?;
        let max = self.max_outbound();
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        match message.qos {
            QoS::AtMostOnce => {
                let id = PublishId(self.next_id);
                self.next_id += 1;
                // Checked above: the message encodes.
                let _ = codec::encode_publish(&mut self.tx, &message, 0, false);
                self.last_sent = Some(now);
                Ok(id)
            }
            QoS::AtLeastOnce => Ok(self.publish_qos1(now, Outgoing::Message(message), send_by)),
        }
    }

    /// Publishes a QoS 1 message that is worth sending only until `send_by`, like
    /// [`Session::publish`]: if at that instant it still waits to be written (not connected,
    /// or no room in flight), or it would be re-sent on a resumed session, it is dropped instead,
    /// with [`Event::PublishDropped`]. A request whose answer nobody waits for any more then
    /// never reaches the server. A QoS 0 message goes out at once or not at all, as with
    /// [`Session::publish`].
    pub fn publish_by(
        &mut self,
        now: Instant,
        message: Message,
        send_by: Instant,
    ) -> Result<PublishId, PublishError> {
        self.publish_until(now, message, Some(send_by))
    }

    /// Publishes a QoS 1 PUBLISH packet encoded by the caller (DUP=0, RETAIN=0, the two bytes at
    /// `id_at` left for the packet identifier), like [`Session::publish_by`].
    pub(crate) fn publish_packet(
        &mut self,
        now: Instant,
        bytes: Bytes,
        id_at: usize,
        send_by: Instant,
    ) -> Result<PublishId, PublishError> {
        debug_assert_eq!(bytes.first(), Some(&0x32));
        debug_assert!(id_at + 2 <= bytes.len());
        if !self.limits.qos1 {
            return Err(PublishError::QoSNotSupported);
        }
        let (size, max) = (bytes.len(), self.max_outbound());
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        Ok(self.publish_qos1(now, Outgoing::Packet { bytes, id_at }, Some(send_by)))
    }

    fn publish_qos1(
        &mut self,
        now: Instant,
        message: Outgoing,
        send_by: Option<Instant>,
    ) -> PublishId {
        let id = PublishId(self.next_id);
        self.next_id += 1;
        // Nothing queued before it and room in flight: straight out (the common case).
        if self.waiting.is_empty()
            && self.state == State::Connected
            && self.inflight.len() < self.inflight_limit()
        {
            if let Some(packet_id) = self.take_packet_id() {
                message.write(&mut self.tx, packet_id, false);
                self.last_sent = Some(now);
                self.inflight.push_back(Inflight {
                    id,
                    packet_id,
                    message,
                    send_by,
                });
                return id;
            }
        }
        self.waiting.push_back(Waiting {
            id,
            packet_id: None,
            message,
            send_by,
        });
        self.drain_soon(now);
        id
    }

    /// The monotonic clock stood still for `pause` (a suspended host), which the caller learned
    /// from its wall clock: every send-by instant ([`Session::publish_by`]) comes that much
    /// sooner, so that a publish whose time ran out during the pause is dropped, not sent, when
    /// the window or the connection lets it go.
    pub fn handle_clock_pause(&mut self, pause: Duration) {
        // `checked_sub` fails only before the clock's own origin, which no deadline comes near.
        let sooner = |by: &mut Option<Instant>| {
            if let Some(earlier) = by.and_then(|at| at.checked_sub(pause)) {
                *by = Some(earlier);
            }
        };
        self.waiting.iter_mut().for_each(|w| sooner(&mut w.send_by));
        self.inflight
            .iter_mut()
            .for_each(|i| sooner(&mut i.send_by));
    }

    /// Drops every QoS 1 publish not acknowledged yet, in flight or waiting, each with
    /// [`Event::PublishDropped`]: for a caller that gives up its publishes when a connection
    /// ends (the lock engine gives up its requests then, and a copy re-sent on a resumed session
    /// would reach the store unanswered). QoS 1 keeps no state at the server for a publish the
    /// client does not re-send, so nothing is left dangling there. Only between connections:
    /// while connected, a PUBACK may still come, and nothing is dropped.
    pub fn drop_unacknowledged(&mut self) {
        if self.state == State::Connected {
            return;
        }
        let inflight = std::mem::take(&mut self.inflight)
            .into_iter()
            .map(|i| Waiting {
                id: i.id,
                packet_id: Some(i.packet_id),
                message: i.message,
                send_by: i.send_by,
            });
        let waiting = std::mem::take(&mut self.waiting);
        for dropped in inflight.chain(waiting) {
            self.drop_waiting(dropped);
        }
    }

    /// Room in flight may have opened at `now`: the waiting publishes are looked at when the
    /// bytes are next taken.
    pub(super) fn drain_soon(&mut self, now: Instant) {
        if !self.waiting.is_empty() {
            self.drain_due = Some(self.drain_due.map_or(now, |due| due.max(now)));
        }
    }

    /// Sends waiting QoS 1 publishes while there is room in flight, those `wanted` still.
    pub(super) fn drain_waiting(
        &mut self,
        now: Instant,
        wanted: &mut impl FnMut(PublishId) -> bool,
    ) {
        if self.state != State::Connected {
            return;
        }
        let limit = self.inflight_limit();
        while self.inflight.len() < limit {
            let Some(next) = self.waiting.pop_front() else {
                crate::burst::shrink_after_burst(&mut self.waiting);
                return;
            };
            if next.send_by.is_some_and(|by| now >= by) || !wanted(next.id) {
                // Too late to be worth sending, or no longer wanted.
                self.drop_waiting(next);
                continue;
            }
            let (packet_id, dup) = match next.packet_id {
                Some(packet_id) => (packet_id, true),
                None => match self.take_packet_id() {
                    Some(packet_id) => (packet_id, false),
                    None => {
                        self.waiting.push_front(next);
                        return;
                    }
                },
            };
            let fits = next.message.len().is_ok_and(|n| n <= self.max_outbound());
            match fits {
                true => {
                    next.message.write(&mut self.tx, packet_id, dup);
                    self.last_sent = Some(now);
                    self.inflight.push_back(Inflight {
                        id: next.id,
                        packet_id,
                        message: next.message,
                        send_by: next.send_by,
                    });
                }
                // Only possible when a new CONNACK lowered the server's Maximum Packet Size.
                false => self.drop_waiting(Waiting {
                    packet_id: Some(packet_id),
                    ..next
                }),
            }
        }
    }

    /// Gives up a publish that will not be written, freeing its packet identifier.
    fn drop_waiting(&mut self, waiting: Waiting) {
        if let Some(packet_id) = waiting.packet_id {
            self.used_packet_ids.remove(&packet_id);
        }
        self.push_event(Event::PublishDropped {
            id: waiting.id,
            message: waiting.message.into_message(),
        });
    }

    /// How many QoS 1 publishes may await their PUBACK at once.
    fn inflight_limit(&self) -> usize {
        usize::from(
            self.options
                .max_inflight
                .min(self.limits.receive_maximum)
                .max(1),
        )
    }

    /// Takes a packet identifier not used by any publish or subscribe awaiting its
    /// acknowledgement: the next one after the last taken, wrapping from 65 535 to 1.
    pub(super) fn take_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if self.used_packet_ids.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }
}
