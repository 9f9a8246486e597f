//! What can be delivered: the packet limits of the broker and of each client, and the 413
//! answer to a request whose answer or notifications could not be delivered
//! (`docs/PROTOCOL.md` §9).

use super::{Emulator, ProtocolError};
use crate::hlc::Hlc;
use crate::mqtt::codec::{publish_len, EncodeError};
use crate::store::{self, Notification, NotificationOp};
use crate::{Message, Now};
use bytes::Bytes;

/// The largest MQTT packet, in bytes: a 5-byte fixed header and the largest remaining length
/// (268 435 455). The default of [`EmulatorConfig::max_packet_size`](super::EmulatorConfig::max_packet_size).
pub const MAX_PACKET_SIZE: usize = 268_435_460;

/// `__stat` of a request refused because its answer or a notification it causes would be larger
/// than can be delivered (`docs/PROTOCOL.md` §9).
pub const STATUS_TOO_LARGE: u16 = 413;

impl Emulator {
    /// The broker accepts PUBLISH packets of at most `size` bytes from the store (the Maximum
    /// Packet Size of its CONNACK; [`MAX_PACKET_SIZE`] when it sets none): from now on requests
    /// whose answer would be larger are refused with status 413.
    pub fn set_max_packet_size(&mut self, size: usize) {
        self.config.max_packet_size = size.clamp(1, MAX_PACKET_SIZE);
    }

    /// The broker dropped a PUBLISH to `client_id` because it was larger than the Maximum Packet
    /// Size that client advertised; `size` is the size of that packet (mosquitto logs "Dropping
    /// too large outgoing PUBLISH for X (N bytes)" with N its remaining length: pass
    /// N + 1 + the length of N as a variable byte integer, see [`mqtt_packet_size`]). Until the
    /// client disconnects, answers and notifications to it of `size` bytes or more are refused
    /// with status 413 instead of being dropped again.
    pub fn handle_client_packet_dropped(&mut self, now: Now, client_id: &str, size: usize) {
        self.handle_timeout(now);
        let limit = size.saturating_sub(1);
        self.client_limits
            .entry(client_id.to_owned())
            .and_modify(|l| *l = (*l).min(limit))
            .or_insert(limit);
    }

    /// The largest packet known to reach `client_id`: the learned limit, if any (see
    /// [`Emulator::handle_client_packet_dropped`]).
    pub fn client_packet_limit(&self, client_id: &str) -> Option<usize> {
        self.client_limits.get(client_id).copied()
    }

    /// The largest packet that can be delivered to `client_id`.
    pub(super) fn limit_for(&self, client_id: &str) -> usize {
        self.client_limits
            .get(client_id)
            .map_or(self.config.max_packet_size, |&l| {
                l.min(self.config.max_packet_size)
            })
    }

    /// `Ok` when `msg` (`what`, for the error text) can be published and delivered to
    /// `client_id`; else the 413 error that refuses the request.
    pub(super) fn fits(
        &self,
        client_id: &str,
        msg: &Message,
        what: &str,
    ) -> Result<(), ProtocolError> {
        let limit = self.limit_for(client_id);
        let problem = match publish_len(msg) {
            Ok(size) if size <= limit => return Ok(()),
            Ok(size) => format!(
                "{what} would be a packet of {size} bytes, more than the {limit} bytes that can be delivered to {client_id:?}"
            ),
            Err(EncodeError::FieldTooLong(field)) => {
                format!("{what} cannot be sent: its {field} would be longer than 65535 bytes")
            }
            Err(EncodeError::PacketTooLong) => {
                format!("{what} would be larger than the largest MQTT packet")
            }
        };
        Err(ProtocolError {
            status: STATUS_TOO_LARGE,
            message: Some(problem.into()),
            ..ProtocolError::default()
        })
    }

    /// The notification `n` for `client_id`, or the 413 error when it cannot be delivered.
    pub(super) fn notification_to(
        &self,
        client_id: &str,
        n: &Notification,
    ) -> Result<Message, ProtocolError> {
        let m = store::notification_message(client_id, n);
        self.fits(client_id, &m, "a notification of this key")?;
        Ok(m)
    }

    /// The notifications of `op` on `key` (at `version`) for every observer of the key, or the
    /// 413 error of the first that cannot be delivered.
    pub(super) fn notifications(
        &self,
        key: &Bytes,
        op: NotificationOp,
        version: &Hlc,
    ) -> Result<Vec<Message>, ProtocolError> {
        let Some(clients) = self.observers.get(key) else {
            return Ok(Vec::new());
        };
        let n = Notification {
            key: key.clone(),
            op,
            version: Some(version.clone()),
        };
        clients
            .iter()
            .map(|client| self.notification_to(client, &n))
            .collect()
    }
}

/// The size of a whole MQTT packet whose remaining length is `remaining_length`: the first byte,
/// the length as a variable byte integer, and the rest. (mosquitto reports the remaining length
/// of the packets it drops.)
pub fn mqtt_packet_size(remaining_length: usize) -> usize {
    let varint = match remaining_length {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + remaining_length
}
