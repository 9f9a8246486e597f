//! Subscribing: SUBSCRIBE out; its SUBACK is matched in `inbound`.

use std::time::Instant;

use super::{Session, State, SubscribeError, SubscribeId};
use crate::mqtt::codec::{self, EncodeError};
use crate::QoS;

#[cfg(doc)]
use super::Event;

impl Session {
    /// Subscribes to topic filters; the SUBACK arrives as [`Event::Subscribed`]. Only while
    /// connected: a connection lost before the SUBACK voids the request.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: &[(&str, QoS)],
    ) -> Result<SubscribeId, SubscribeError> {
        if self.state != State::Connected {
            return Err(SubscribeError::NotConnected);
        }
        if filters.is_empty()
            || filters
                .iter()
                .any(|(f, _)| f.is_empty() || f.contains('\0'))
        {
            return Err(SubscribeError::InvalidFilter);
        }
        // Encoded with a stand-in packet id first: a refused request must not hold an id.
        let encoded = codec::encode_subscribe(1, filters).map_err(|e| match e {
            EncodeError::FieldTooLong(field) => SubscribeError::FieldTooLong(field),
            EncodeError::PacketTooLong => SubscribeError::TooLarge {
                size: usize::MAX,
                max: self.max_outbound(),
            },
        })?;
        let max = self.max_outbound();
        if encoded.len() > max {
            return Err(SubscribeError::TooLarge {
                size: encoded.len(),
                max,
            });
        }
        let packet_id = self.take_packet_id().ok_or(SubscribeError::NoPacketId)?;
        let encoded = codec::encode_subscribe(packet_id, filters).map_err(|_| {
            self.used_packet_ids.remove(&packet_id);
            SubscribeError::NoPacketId
        })?;
        let id = SubscribeId(self.next_id);
        self.next_id += 1;
        self.subscribes.push_back((packet_id, id, filters.len()));
        self.send(now, &encoded);
        Ok(id)
    }

    pub(super) fn clear_subscribes(&mut self) {
        for (packet_id, _, _) in self.subscribes.drain(..) {
            self.used_packet_ids.remove(&packet_id);
        }
    }
}
