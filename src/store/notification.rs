//! Key notifications (docs/PROTOCOL.md §6): [`Message`] ⇄ [`Notification`].

use bytes::{Bytes, BytesMut};

use super::request::PROP_TIMESTAMP;
use super::{notification_topic, parse_notification_topic};
use crate::hlc::Hlc;
use crate::resp::{self, DecodeError};
use crate::{Message, QoS, SharedStr};

/// What happened to the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationOp {
    /// The key was set to this value.
    Set(Bytes),
    /// The key was deleted (also on expiry).
    Delete,
}

/// A key notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The key (from the topic).
    pub key: Bytes,
    /// What happened.
    pub op: NotificationOp,
    /// `__ts`: the key version, when the broker sends one and it is a valid HLC.
    pub version: Option<Hlc>,
}

/// Why a message is not a notification.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NotificationError {
    /// The topic is not a notification topic (or its hex is not strict upper case).
    #[error("not a notification topic: {0:?}")]
    BadTopic(String),
    /// The payload is not a RESP array of blob strings.
    #[error("bad notification payload: {0}")]
    Payload(#[from] DecodeError),
    /// The payload is an array, but neither `NOTIFY SET VALUE <v>` nor `NOTIFY DELETE`.
    #[error("unknown notification payload")]
    UnknownPayload,
}

/// Parses a notification message.
///
/// The key comes from the topic; the payload must be `NOTIFY SET VALUE <v>` or `NOTIFY DELETE`
/// (words matched case-insensitively). `__ts` never makes a notification fail: when absent or not an
/// HLC, `version` is `None`.
pub fn parse_notification(msg: &Message) -> Result<Notification, NotificationError> {
    let (_client_id, key) = parse_notification_topic(&msg.topic)
        .ok_or_else(|| NotificationError::BadTopic(msg.topic.to_string()))?;
    let args = resp::decode_array(&msg.payload)?;
    let is = |a: &Bytes, w: &[u8]| a.eq_ignore_ascii_case(w);
    let op = match args.as_slice() {
        [n, s, v, value] if is(n, b"NOTIFY") && is(s, b"SET") && is(v, b"VALUE") => {
            NotificationOp::Set(value.clone())
        }
        [n, d] if is(n, b"NOTIFY") && is(d, b"DELETE") => NotificationOp::Delete,
        _ => return Err(NotificationError::UnknownPayload),
    };
    let version = msg
        .user_property(PROP_TIMESTAMP)
        .and_then(|ts| ts.parse().ok());
    Ok(Notification { key, op, version })
}

impl Notification {
    /// The RESP payload of this notification.
    pub fn to_payload(&self) -> Bytes {
        let mut out = BytesMut::new();
        match &self.op {
            NotificationOp::Set(v) => {
                resp::encode_array([&b"NOTIFY"[..], b"SET", b"VALUE", v], &mut out)
            }
            NotificationOp::Delete => resp::encode_array([&b"NOTIFY"[..], b"DELETE"], &mut out),
        }
        out.freeze()
    }
}

/// The message the service sends `client_id` for `n` (for an emulator): QoS 1, `__ts` when `n`
/// has a version.
pub fn notification_message(client_id: &str, n: &Notification) -> Message {
    Message {
        topic: notification_topic(client_id, &n.key).into(),
        payload: n.to_payload(),
        qos: QoS::AtLeastOnce,
        user_properties: n
            .version
            .iter()
            .map(|v| (SharedStr::from_static(PROP_TIMESTAMP), v.to_string().into()))
            .collect(),
        ..Message::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(op: NotificationOp, version: Option<Hlc>) -> Notification {
        Notification {
            key: Bytes::from_static(b"SOMEKEY"),
            op,
            version,
        }
    }

    #[test]
    fn round_trip() {
        for n in [
            note(NotificationOp::Delete, None),
            note(NotificationOp::Set(Bytes::new()), Some(Hlc::new(1, 2, "s"))),
            note(NotificationOp::Set(Bytes::from_static(b"v\r\n")), None),
        ] {
            let m = notification_message("client-id1", &n);
            assert_eq!(parse_notification(&m), Ok(n));
        }
    }

    #[test]
    fn bad_timestamp_keeps_the_notification() {
        let mut m = notification_message("c", &note(NotificationOp::Delete, None));
        m.user_properties.push(("__ts".into(), "garbage".into()));
        assert_eq!(
            parse_notification(&m),
            Ok(note(NotificationOp::Delete, None))
        );
    }

    #[test]
    fn rejects() {
        let good = notification_message("c", &note(NotificationOp::Delete, None));
        let with = |topic: &str, payload: &'static [u8]| Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            ..good.clone()
        };
        assert!(matches!(
            parse_notification(&with("x/y", b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n")),
            Err(NotificationError::BadTopic(_))
        ));
        for payload in [
            &b"*2\r\n$6\r\nNOTIFY\r\n$3\r\nDEL\r\n"[..],
            b"*3\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n",
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$3\r\nVAL\r\n$0\r\n\r\n",
            b"*0\r\n",
        ] {
            let payload = Bytes::copy_from_slice(payload);
            let m = Message {
                payload,
                ..good.clone()
            };
            assert_eq!(
                parse_notification(&m),
                Err(NotificationError::UnknownPayload)
            );
        }
        assert_eq!(
            parse_notification(&with(&good.topic, b"+OK\r\n")),
            Err(NotificationError::Payload(DecodeError::UnexpectedType {
                at: 0,
                found: b'+'
            }))
        );
        let lower = with(&good.topic, b"*2\r\n$6\r\nnotify\r\n$6\r\ndelete\r\n");
        assert_eq!(
            parse_notification(&lower).map(|n| n.op),
            Ok(NotificationOp::Delete)
        );
    }
}
