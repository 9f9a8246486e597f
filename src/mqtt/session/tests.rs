use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::mqtt::codec::DecodeError;
use crate::mqtt::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{Message, QoS};

#[allow(clippy::disallowed_methods)] // tests make up their own time origin
fn t0() -> Instant {
    Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn tx(s: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = s.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

const CONNACK: [u8; 5] = [0x20, 0x03, 0x00, 0x00, 0x00];
const CONNACK_RESUMED: [u8; 5] = [0x20, 0x03, 0x01, 0x00, 0x00];

/// A session connected at `t0` with `options`, its CONNECT drained.
fn connected(options: Options, now: Instant) -> Session {
    let mut s = Session::new(options);
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    s
}

fn message(topic: &str, payload: &'static [u8]) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        ..Message::default()
    }
}

/// The PUBLISH bytes of `message("t", b"x")` with a packet id and DUP flag.
fn publish_t_x(packet_id: u16, dup: bool) -> Vec<u8> {
    let [hi, lo] = packet_id.to_be_bytes();
    vec![
        if dup { 0x3A } else { 0x32 },
        7,
        0,
        1,
        b't',
        hi,
        lo,
        0,
        b'x',
    ]
}

#[test]
fn connect_and_connack_success() {
    let now = t0();
    let mut s = Session::new(Options::new("c"));
    assert!(!s.is_connected());
    assert_eq!(s.poll_timeout(), None);
    s.connect(now);
    #[rustfmt::skip]
    let connect = [
        0x10, 0x20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60,
        0x12, 0x11, 0, 0, 0x0E, 0x10, 0x21, 0xFF, 0xFF, 0x27, 0, 0x10, 0, 0, 0x22, 0, 0,
        0x17, 1,
        0, 1, b'c',
    ];
    assert_eq!(tx(&mut s), connect);
    assert_eq!(s.poll_timeout(), Some(now + secs(30)));
    s.handle_bytes(now, &CONNACK);
    assert!(s.is_connected());
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    assert_eq!(tx(&mut s), [0u8; 0]);
}

#[test]
fn connect_carries_credentials_and_authentication() {
    let mut options = Options::new("c");
    options.username = Some("u".into());
    options.password = Some(Bytes::from_static(&[0xFF, 0x00]));
    options.authentication_method = Some("K8S-SAT".into());
    options.authentication_data = Some(Bytes::from_static(b"tok"));
    options.session_expiry = 0;
    options.keep_alive = Duration::ZERO;
    let mut s = Session::new(options);
    s.connect(t0());
    let bytes = tx(&mut s);
    assert_eq!(
        bytes[9],
        0x80 | 0x40 | 0x02,
        "username, password, clean start"
    );
    assert_eq!(&bytes[10..12], &[0, 0], "keep-alive off");
    let tail = [0, 1, b'c', 0, 1, b'u', 0, 2, 0xFF, 0x00];
    assert!(bytes.ends_with(&tail));
    let method = [0x15, 0, 7, b'K', b'8', b'S', b'-', b'S', b'A', b'T'];
    assert!(bytes.windows(method.len()).any(|w| w == method));
    let data = [0x16, 0, 3, b't', b'o', b'k'];
    assert!(bytes.windows(data.len()).any(|w| w == data));
}

#[test]
fn connack_refused_with_reason() {
    let now = t0();
    let mut s = Session::new(Options::new("c"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x87, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::ConnectFailed(ConnectReason::NotAuthorized)]
    );
    assert!(!s.is_connected());
    assert_eq!(s.poll_timeout(), None);
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &[0x20, 0x03, 0x00, 0xF3, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::ConnectFailed(ConnectReason::Other(0xF3))]
    );
}

#[test]
fn session_present_after_clean_start_is_a_protocol_error() {
    let now = t0();
    let mut s = Session::new(Options::new("c"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK_RESUMED);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
}

#[test]
fn connack_limits_and_assigned_client_id() {
    let now = t0();
    let mut s = Session::new(Options::new(""));
    s.connect(now);
    tx(&mut s);
    // Server Keep Alive 5 s, Maximum Packet Size 16, Assigned Client Identifier "abc".
    s.handle_bytes(
        now,
        &[
            0x20, 0x11, 0, 0, 0x0E, 0x13, 0, 5, 0x27, 0, 0, 0, 16, 0x12, 0, 3, b'a', b'b', b'c',
        ],
    );
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    assert_eq!(s.client_id(), "abc");
    assert_eq!(s.poll_timeout(), Some(now + secs(5)));
    assert_eq!(s.publish(now, message("t", b"x")), Ok(PublishId(0)));
    assert_eq!(s.publish(now, message("t", &[0; 8])), Ok(PublishId(1)));
    assert_eq!(
        s.publish(now, message("t", &[0; 9])),
        Err(PublishError::TooLarge { size: 17, max: 16 })
    );
    // The reconnect resumes with the assigned id.
    s.handle_transport_closed(now);
    s.connect(now);
    let connect = tx(&mut s);
    assert_eq!(connect[9], 0x00, "clean start off on a reconnect");
    assert!(connect.ends_with(&[0, 3, b'a', b'b', b'c']));
}

#[test]
fn packets_before_connack_are_a_protocol_error() {
    let now = t0();
    let mut s = Session::new(Options::new("c"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
}

#[test]
fn publish_and_puback() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    let a = s.publish(now, message("t", b"x")).unwrap();
    let b = s.publish(now, message("t", b"x")).unwrap();
    let c = s.publish(now, message("t", b"x")).unwrap();
    let expected: Vec<u8> = [
        publish_t_x(1, false),
        publish_t_x(2, false),
        publish_t_x(3, false),
    ]
    .concat();
    assert_eq!(tx(&mut s), expected);
    s.handle_bytes(now, &[0x40, 0x02, 0, 2, 0x40, 0x03, 0, 1, 0x10]);
    s.handle_bytes(now, &[0x40, 0x04, 0, 3, 0x87, 0x00]);
    assert_eq!(
        events(&mut s),
        [
            Event::PublishAcked {
                id: b,
                reason: PubAckReason::Success,
                message: Some(message("t", b"x")),
            },
            Event::PublishAcked {
                id: a,
                reason: PubAckReason::NoMatchingSubscribers,
                message: Some(message("t", b"x")),
            },
            Event::PublishAcked {
                id: c,
                reason: PubAckReason::NotAuthorized,
                message: Some(message("t", b"x")),
            },
        ]
    );
    // A QoS 0 publish goes out without a packet id and is never acknowledged.
    let mut m = message("t", b"x");
    m.qos = QoS::AtMostOnce;
    s.publish(now, m).unwrap();
    assert_eq!(tx(&mut s), [0x30, 5, 0, 1, b't', 0, b'x']);
}

#[test]
fn publish_errors() {
    let now = t0();
    let mut s = Session::new(Options::new("c"));
    let mut m = message("t", b"x");
    m.qos = QoS::AtMostOnce;
    assert_eq!(s.publish(now, m), Err(PublishError::NotConnected));
    assert_eq!(
        s.publish(now, message("a/+", b"x")),
        Err(PublishError::InvalidTopic)
    );
    assert_eq!(
        s.publish(now, message("", b"x")),
        Err(PublishError::InvalidTopic)
    );
    assert_eq!(
        s.subscribe(now, &[("a", QoS::AtLeastOnce)]),
        Err(SubscribeError::NotConnected)
    );
    // QoS 1 while disconnected is queued, and sent once connected.
    let id = s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(tx(&mut s), [0u8; 0]);
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK);
    assert_eq!(tx(&mut s), publish_t_x(1, false));
    s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
    assert_eq!(
        events(&mut s)[1],
        Event::PublishAcked {
            id,
            reason: PubAckReason::Success,
            message: Some(message("t", b"x")),
        }
    );
}

#[test]
fn encoded_packets_get_their_packet_id_and_dup_when_sent_again() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    let packet = || Bytes::from_static(&[0x32, 7, 0, 1, b't', 0, 0, 0, b'x']);
    let a = s.publish_packet(now, packet(), 5, now + secs(60)).unwrap();
    let b = s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(
        tx(&mut s),
        [publish_t_x(1, false), publish_t_x(2, false)].concat()
    );
    s.handle_transport_closed(now);
    events(&mut s);
    let c = s.publish_packet(now, packet(), 5, now + secs(60)).unwrap(); // queued while disconnected
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK_RESUMED);
    events(&mut s);
    assert_eq!(
        tx(&mut s),
        [
            publish_t_x(1, true),
            publish_t_x(2, true),
            publish_t_x(3, false)
        ]
        .concat()
    );
    s.handle_bytes(
        now,
        &[0x40, 0x02, 0, 1, 0x40, 0x02, 0, 2, 0x40, 0x03, 0, 3, 0x10],
    );
    assert_eq!(
        events(&mut s),
        [
            Event::PublishAcked {
                id: a,
                reason: PubAckReason::Success,
                message: None
            },
            Event::PublishAcked {
                id: b,
                reason: PubAckReason::Success,
                message: Some(message("t", b"x"))
            },
            Event::PublishAcked {
                id: c,
                reason: PubAckReason::NoMatchingSubscribers,
                message: None
            },
        ]
    );
    // A packet over the server's maximum packet size is refused before it takes an id.
    s.limits.maximum_packet_size = Some(8);
    assert_eq!(
        s.publish_packet(now, packet(), 5, now + secs(60)),
        Err(PublishError::TooLarge { size: 9, max: 8 })
    );
}

#[test]
fn resume_resends_unacked_with_dup() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.publish(now, message("t", b"x")).unwrap();
    let b = s.publish(now, message("t", b"x")).unwrap();
    tx(&mut s);
    s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
    events(&mut s);
    s.handle_transport_closed(now);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::TransportClosed)]
    );
    s.handle_transport_closed(now);
    assert_eq!(events(&mut s), []);
    let c = s.publish(now, message("t", b"x")).unwrap();
    s.connect(now);
    assert_eq!(tx(&mut s)[9], 0x00, "resume: clean start off");
    s.handle_bytes(now, &CONNACK_RESUMED);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: true
        }]
    );
    assert_eq!(
        tx(&mut s),
        [publish_t_x(2, true), publish_t_x(3, false)].concat()
    );
    s.handle_bytes(now, &[0x40, 0x02, 0, 2, 0x40, 0x02, 0, 3]);
    let acked: Vec<_> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Event::PublishAcked { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acked, [b, c]);
}

#[test]
fn session_not_present_drops_unacked_and_sends_waiting() {
    let now = t0();
    let mut options = Options::new("c");
    options.max_inflight = 2;
    let mut s = connected(options, now);
    let a = s.publish(now, message("t", b"x")).unwrap();
    let b = s.publish(now, message("t", b"x")).unwrap();
    let c = s.publish(now, message("t", b"x")).unwrap(); // waits: in flight is full
    tx(&mut s);
    s.handle_bytes(now, &[0xE0, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::ByServer(
            DisconnectReason::NormalDisconnection
        ))]
    );
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK);
    assert_eq!(
        events(&mut s),
        [
            Event::Connected {
                session_present: false
            },
            Event::PublishDropped {
                id: a,
                message: Some(message("t", b"x"))
            },
            Event::PublishDropped {
                id: b,
                message: Some(message("t", b"x"))
            },
        ]
    );
    // The one never sent goes out normally, with a fresh packet id.
    assert_eq!(tx(&mut s), publish_t_x(3, false));
    s.handle_bytes(now, &[0x40, 0x02, 0, 3]);
    assert_eq!(
        events(&mut s),
        [Event::PublishAcked {
            id: c,
            reason: PubAckReason::Success,
            message: Some(message("t", b"x")),
        }]
    );
}

#[test]
fn inflight_limit_queues_and_drains_in_order() {
    let now = t0();
    let mut options = Options::new("c");
    options.max_inflight = 3;
    let mut s = Session::new(options);
    s.connect(now);
    tx(&mut s);
    // The server's Receive Maximum (2) is below ours (3).
    s.handle_bytes(now, &[0x20, 0x06, 0, 0, 0x03, 0x21, 0, 2]);
    events(&mut s);
    let ids: Vec<_> = (0..4)
        .map(|_| s.publish(now, message("t", b"x")).unwrap())
        .collect();
    assert_eq!(
        tx(&mut s),
        [publish_t_x(1, false), publish_t_x(2, false)].concat()
    );
    s.handle_bytes(now, &[0x40, 0x02, 0, 2]);
    assert_eq!(tx(&mut s), publish_t_x(3, false));
    s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
    assert_eq!(tx(&mut s), publish_t_x(4, false));
    s.handle_bytes(now, &[0x40, 0x02, 0, 3, 0x40, 0x02, 0, 4]);
    assert_eq!(tx(&mut s), [0u8; 0]);
    let acked: Vec<_> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Event::PublishAcked { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acked, [ids[1], ids[0], ids[2], ids[3]]);
}

#[test]
fn packet_ids_wrap_skip_zero_and_ids_in_use() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.next_packet_id = 65534;
    s.publish(now, message("t", b"x")).unwrap(); // 65534, stays in flight
    s.subscribe(now, &[("a", QoS::AtLeastOnce)]).unwrap(); // 65535, no SUBACK yet
    s.publish(now, message("t", b"x")).unwrap(); // wraps to 1
    let out = tx(&mut s);
    assert!(out.starts_with(&publish_t_x(65534, false)));
    assert!(out.ends_with(&publish_t_x(1, false)));
    // The counter comes round again: 65534, 65535 and 1 are still in use.
    s.next_packet_id = 65534;
    s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(tx(&mut s), publish_t_x(2, false));
    // Once acknowledged, an id is free again.
    s.handle_bytes(now, &[0x40, 0x02, 0xFF, 0xFE]);
    s.next_packet_id = 65534;
    s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(tx(&mut s), publish_t_x(65534, false));
}

#[test]
fn subscribe_and_suback_with_mixed_results() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    let id = s
        .subscribe(
            now,
            &[
                ("a", QoS::AtLeastOnce),
                ("b", QoS::AtMostOnce),
                ("c", QoS::AtLeastOnce),
            ],
        )
        .unwrap();
    assert_eq!(
        tx(&mut s),
        [0x82, 0x0F, 0, 1, 0, 0, 1, b'a', 1, 0, 1, b'b', 0, 0, 1, b'c', 1]
    );
    s.handle_bytes(now, &[0x90, 0x06, 0, 1, 0, 1, 0, 0x87]);
    assert_eq!(
        events(&mut s),
        [Event::Subscribed {
            id,
            results: vec![
                Ok(QoS::AtLeastOnce),
                Ok(QoS::AtMostOnce),
                Err(SubscribeFailure::NotAuthorized)
            ]
        }]
    );
    assert_eq!(s.subscribe(now, &[]), Err(SubscribeError::InvalidFilter));
    // A SUBACK with the wrong number of results is a protocol violation.
    s.subscribe(now, &[("a", QoS::AtLeastOnce)]).unwrap();
    tx(&mut s);
    s.handle_bytes(now, &[0x90, 0x05, 0, 2, 0, 1, 1]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
}

#[test]
fn incoming_qos1_publish_is_acknowledged() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(
        now,
        &[0x32, 0x0A, 0, 3, b'a', b'/', b'b', 0, 7, 0, b'h', b'i'],
    );
    assert_eq!(tx(&mut s), [0x40, 0x02, 0, 7]);
    assert_eq!(
        events(&mut s),
        [Event::Message(Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            ..Message::default()
        })]
    );
    // QoS 0: no acknowledgement.
    s.handle_bytes(now, &[0x30, 0x04, 0, 1, b'a', 0]);
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn incoming_qos2_and_topic_alias_are_protocol_errors() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(now, &[0x34, 0x06, 0, 1, b't', 0, 9, 0]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x9B]);

    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(now, &[0x30, 0x07, 0, 1, b't', 3, 0x23, 0, 1]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x94]);
}

#[test]
fn keep_alive_ping_and_late_pingresp() {
    let now = t0();
    let mut options = Options::new("c");
    options.keep_alive = secs(10);
    let mut s = connected(options, now);
    assert_eq!(s.poll_timeout(), Some(now + secs(10)));
    s.handle_timeout(now + secs(5));
    assert_eq!(tx(&mut s), [0u8; 0]);
    s.handle_timeout(now + secs(10));
    assert_eq!(tx(&mut s), [0xC0, 0x00]);
    s.handle_timeout(now + secs(10));
    assert_eq!(tx(&mut s), [0u8; 0], "one PINGREQ at a time");
    assert_eq!(s.poll_timeout(), Some(now + secs(15)));
    s.handle_bytes(now + secs(11), &[0xD0, 0x00]);
    assert_eq!(s.poll_timeout(), Some(now + secs(20)));
    // Sending postpones the next PINGREQ only as long as something was received lately too.
    s.publish(now + secs(12), message("t", b"x")).unwrap();
    tx(&mut s);
    assert_eq!(
        s.poll_timeout(),
        Some(now + secs(21)),
        "10 s after the PINGRESP"
    );
    s.handle_bytes(now + secs(13), &[0x40, 0x02, 0x00, 0x01]); // its PUBACK
    assert_eq!(
        s.poll_timeout(),
        Some(now + secs(22)),
        "10 s after the last send"
    );
    s.handle_timeout(now + secs(22));
    assert_eq!(tx(&mut s), [0xC0, 0x00]);
    s.handle_timeout(now + secs(27));
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Disconnected(DisconnectCause::KeepAliveTimeout))
    );
    assert!(!s.is_connected());
    assert_eq!(s.poll_timeout(), None);
    // Late PINGRESP and repeated timeouts change nothing.
    s.handle_bytes(now + secs(28), &[0xD0, 0x00]);
    s.handle_timeout(now + secs(28));
    assert_eq!(events(&mut s), []);
    assert_eq!(tx(&mut s), [0u8; 0]);
}

#[test]
fn a_broker_that_sends_nothing_is_noticed_while_the_client_keeps_sending() {
    let now = t0();
    let mut options = Options::new("c");
    options.keep_alive = secs(10);
    let mut s = connected(options, now);
    // Steady publishes (renewals, say) every 4 s; the broker answers nothing, not even PUBACKs.
    let mut ended = None;
    for second in 1..=40 {
        let t = now + secs(second);
        s.handle_timeout(t);
        if !s.is_connected() {
            ended = Some(second);
            break;
        }
        if second % 4 == 0 {
            s.publish(t, message("t", b"x")).unwrap();
        }
        tx(&mut s);
    }
    assert_eq!(
        ended,
        Some(15),
        "closed 1.5 × keep-alive after the last packet received (the CONNACK)"
    );
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Disconnected(DisconnectCause::KeepAliveTimeout))
    );
}

#[test]
fn connect_timeout() {
    let now = t0();
    let mut options = Options::new("c");
    options.connect_timeout = secs(5);
    let mut s = Session::new(options);
    s.connect(now);
    tx(&mut s);
    assert_eq!(s.poll_timeout(), Some(now + secs(5)));
    s.handle_timeout(now + secs(4));
    assert_eq!(events(&mut s), []);
    s.handle_timeout(now + secs(5));
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::ConnectTimeout)]
    );
    s.handle_timeout(now + secs(6));
    s.handle_bytes(now + secs(6), &CONNACK);
    assert_eq!(events(&mut s), []);
    assert!(!s.is_connected());
}

#[test]
fn server_disconnect_with_reason_code_and_no_properties() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(now, &[0xE0, 0x01, 0x8E]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::ByServer(
            DisconnectReason::SessionTakenOver
        ))]
    );
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert!(!s.is_connected());
}

/// The events of `a` (`message("t", b"x")`) acknowledged, then of `b` dropped unsent.
fn acked_then_dropped(a: PublishId, b: PublishId) -> [Event; 2] {
    [
        Event::PublishAcked {
            id: a,
            reason: PubAckReason::Success,
            message: Some(message("t", b"x")),
        },
        Event::PublishDropped {
            id: b,
            message: Some(message("t", b"x")),
        },
    ]
}

#[test]
fn a_waiting_publish_goes_only_if_still_wanted_when_it_would_be_written() {
    let now = t0();
    let mut options = Options::new("c");
    options.max_inflight = 1;
    let mut s = connected(options, now);
    let a = s.publish(now, message("t", b"x")).unwrap();
    let b = s.publish(now, message("t", b"x")).unwrap();
    let c = s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(tx(&mut s), publish_t_x(1, false));
    // a's PUBACK makes room; the caller gave b up since, and says so only now.
    s.handle_bytes(now, &[0x40, 0x02, 0, 1]);
    let mut asked = Vec::new();
    let out = s
        .poll_transmit_with(|id| {
            asked.push(id);
            id != b
        })
        .unwrap();
    assert_eq!(asked, [b, c], "asked in order, as each one's turn comes");
    assert_eq!(
        &out[..],
        publish_t_x(2, false),
        "c, with b's packet id unused"
    );
    assert_eq!(events(&mut s), acked_then_dropped(a, b));
}

#[test]
fn nothing_unwritten_goes_out_after_the_connection_ends() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.publish(now, message("t", b"x")).unwrap();
    // The server's DISCONNECT is read before the publish's bytes were written: the connection
    // is over, and they belong to it.
    s.handle_bytes(now, &[0xE0, 0x01, 0x8E]);
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert_eq!(s.publishes_in_flight(), 1, "kept for a resumed session");
    // Ended by the client: only its DISCONNECT goes out.
    let mut s = connected(Options::new("c"), now);
    s.publish(now, message("t", b"x")).unwrap();
    s.disconnect(now, DisconnectReason::NormalDisconnection);
    assert_eq!(tx(&mut s), [0xE0, 0x00]);
}

#[test]
fn client_disconnect() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.disconnect(now, DisconnectReason::NormalDisconnection);
    assert_eq!(tx(&mut s), [0xE0, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::ByClient)]
    );
    s.disconnect(now, DisconnectReason::NormalDisconnection);
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert_eq!(events(&mut s), []);
}

#[test]
fn split_delivery_gives_the_same_result() {
    let now = t0();
    let mut transcript = CONNACK.to_vec();
    transcript.extend_from_slice(&[0x90, 0x04, 0, 1, 0, 1]); // SUBACK
    transcript.extend_from_slice(&[0x32, 0x0A, 0, 3, b'a', b'/', b'b', 0, 7, 0, b'h', b'i']);
    transcript.extend_from_slice(&[0x40, 0x02, 0, 2]); // PUBACK
    transcript.extend_from_slice(&[0xE0, 0x01, 0x8E]); // DISCONNECT

    let run = |chunk: usize| {
        let mut s = Session::new(Options::new("c"));
        s.connect(now);
        tx(&mut s);
        let mut out = Vec::new();
        let mut evs = Vec::new();
        let mut subscribed = false;
        for piece in transcript.chunks(chunk) {
            s.handle_bytes(now, piece);
            if s.is_connected() && !subscribed {
                subscribed = true;
                s.subscribe(now, &[("a/#", QoS::AtLeastOnce)]).unwrap();
                s.publish(now, message("t", b"x")).unwrap();
            }
            out.extend(tx(&mut s));
            evs.extend(events(&mut s));
        }
        (out, evs)
    };
    let whole = run(5); // the CONNACK alone first, then everything
    assert_eq!(whole.1.len(), 5, "{:?}", whole.1);
    // Packets whole or cut anywhere: read in place, or buffered until complete.
    for chunk in [1, 2, 3, 4, 6, 7] {
        assert_eq!(run(chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn malformed_remaining_length_ends_the_session() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(now, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::Malformed(
            DecodeError::RemainingLength
        ))]
    );
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x81]);
}

#[test]
fn malformed_complete_frame_ends_the_session() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    s.handle_bytes(now, &[0x90, 0x02, 0x00, 0x01]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::Malformed(
            DecodeError::Packet { .. }
        ))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x81]);
}

#[test]
fn oversized_packet_is_refused_before_its_body_arrives() {
    let now = t0();
    let mut options = Options::new("c");
    options.max_packet_size = 64;
    let mut s = connected(options, now);
    s.handle_bytes(now, &[0x30, 0x80, 0x01]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::Malformed(
            DecodeError::TooLarge { size: 131, max: 64 }
        ))]
    );
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x95]);
    assert!(s.rx.len() <= 64);
}

#[test]
fn message_properties_round_trip_through_the_session() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    let sent = Message {
        topic: "statestore/v1/x/command/invoke".into(),
        payload: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        qos: QoS::AtLeastOnce,
        correlation_data: Some(Bytes::from_static(&[7; 16])),
        response_topic: Some("clients/c/resp".into()),
        message_expiry: Some(10),
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![("__protVer".into(), "1.0".into()), ("$x".into(), "".into())],
    };
    s.publish(now, sent.clone()).unwrap();
    let bytes = tx(&mut s);
    // Feed our own PUBLISH back as if the server delivered it.
    s.handle_bytes(now, &bytes);
    assert_eq!(tx(&mut s), [0x40, 0x02, 0, 1]);
    assert_eq!(events(&mut s), [Event::Message(sent)]);
}

// Enhanced authentication transcripts: every byte we send and receive.

const METHOD: &[u8] = b"K8S-SAT";

fn sat_options(token: &'static [u8]) -> Options {
    let mut options = Options::new("c");
    options.authentication_method = Some("K8S-SAT".into());
    options.authentication_data = Some(Bytes::from_static(token));
    options
}

/// An AUTH packet: reason code, Authentication Method K8S-SAT, optional data.
fn auth(reason: u8, data: Option<&[u8]>) -> Vec<u8> {
    let mut props = vec![0x15, 0, METHOD.len() as u8];
    props.extend_from_slice(METHOD);
    if let Some(data) = data {
        props.extend_from_slice(&[0x16, 0, data.len() as u8]);
        props.extend_from_slice(data);
    }
    let mut packet = vec![0xF0, (props.len() + 2) as u8, reason, props.len() as u8];
    packet.extend_from_slice(&props);
    packet
}

/// A session that sent CONNECT with a SAT and got its CONNACK.
fn connected_with_sat(now: Instant) -> Session {
    let mut s = Session::new(sat_options(b"tok"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    s
}

#[test]
fn connect_carries_method_and_data() {
    let mut s = Session::new(sat_options(b"tok"));
    s.connect(t0());
    #[rustfmt::skip]
    let expected = [
        0x10, 0x30,                                 // CONNECT, 48 bytes
        0, 4, b'M', b'Q', b'T', b'T', 5, 0x02,      // MQTT 5, Clean Start
        0, 60,                                      // keep-alive
        0x22,                                       // 34 bytes of properties:
        0x11, 0, 0, 0x0E, 0x10,                     //   Session Expiry 3600
        0x21, 0xFF, 0xFF,                           //   Receive Maximum
        0x27, 0, 0x10, 0, 0,                        //   Maximum Packet Size 1 MiB
        0x22, 0, 0,                                 //   Topic Alias Maximum 0
        0x17, 1,                                    //   Request Problem Information
        0x15, 0, 7, b'K', b'8', b'S', b'-', b'S', b'A', b'T', // Authentication Method
        0x16, 0, 3, b't', b'o', b'k',               //   Authentication Data
        0, 1, b'c',                                 // client id
    ];
    assert_eq!(tx(&mut s), expected);
}

#[test]
fn challenge_before_connack_is_answered_then_connack() {
    let now = t0();
    let mut s = Session::new(sat_options(b"tok"));
    s.connect(now);
    tx(&mut s);
    assert_eq!(
        s.continue_authentication(now, Bytes::from_static(b"x")),
        Err(AuthError::NoChallenge)
    );
    s.handle_bytes(now, &auth(0x18, Some(b"ch")));
    assert_eq!(
        events(&mut s),
        [Event::AuthenticationChallenge {
            data: Some(Bytes::from_static(b"ch"))
        }]
    );
    assert!(!s.is_connected());
    s.continue_authentication(now, Bytes::from_static(b"resp"))
        .unwrap();
    assert_eq!(tx(&mut s), auth(0x18, Some(b"resp")));
    s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    assert_eq!(
        s.continue_authentication(now, Bytes::new()),
        Err(AuthError::NoChallenge)
    );
}

#[test]
fn reauthentication_succeeds_with_auth_success() {
    let now = t0();
    let mut s = connected_with_sat(now);
    assert_eq!(s.reauthenticate(now, Bytes::from_static(b"new")), Ok(true));
    assert_eq!(tx(&mut s), auth(0x19, Some(b"new")));
    assert_eq!(
        s.reauthenticate(now, Bytes::from_static(b"newer")),
        Err(AuthError::InProgress)
    );
    s.handle_bytes(now, &auth(0x00, None));
    assert_eq!(events(&mut s), [Event::Reauthenticated]);
    assert!(s.is_connected());
    // The new token is the one the next CONNECT carries.
    s.handle_transport_closed(now);
    events(&mut s);
    s.connect(now);
    assert!(tx(&mut s)
        .windows(6)
        .any(|w| w == [0x16, 0, 3, b'n', b'e', b'w']));
}

#[test]
fn new_data_while_connecting_reauthenticates_after_the_connack() {
    let now = t0();
    let mut s = Session::new(sat_options(b"old"));
    s.connect(now);
    tx(&mut s);
    assert_eq!(s.reauthenticate(now, Bytes::from_static(b"new")), Ok(false));
    assert_eq!(tx(&mut s), [0u8; 0]);
    s.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: false
        }]
    );
    assert_eq!(tx(&mut s), auth(0x19, Some(b"new")));
    s.handle_bytes(now, &auth(0x00, None));
    assert_eq!(events(&mut s), [Event::Reauthenticated]);
}

#[test]
fn reauthentication_with_a_challenge_in_between() {
    let now = t0();
    let mut s = connected_with_sat(now);
    s.reauthenticate(now, Bytes::from_static(b"new")).unwrap();
    tx(&mut s);
    s.handle_bytes(now, &auth(0x18, Some(b"more")));
    assert_eq!(
        events(&mut s),
        [Event::AuthenticationChallenge {
            data: Some(Bytes::from_static(b"more"))
        }]
    );
    s.continue_authentication(now, Bytes::from_static(b"ok"))
        .unwrap();
    assert_eq!(tx(&mut s), auth(0x18, Some(b"ok")));
    s.handle_bytes(now, &auth(0x00, None));
    assert_eq!(events(&mut s), [Event::Reauthenticated]);
}

#[test]
fn reauthentication_refused_by_disconnect() {
    let now = t0();
    let mut s = connected_with_sat(now);
    s.reauthenticate(now, Bytes::from_static(b"bad")).unwrap();
    assert_eq!(tx(&mut s), auth(0x19, Some(b"bad")));
    s.handle_bytes(now, &[0xE0, 0x01, 0x87]);
    assert_eq!(
        events(&mut s),
        [Event::Disconnected(DisconnectCause::ByServer(
            DisconnectReason::NotAuthorized
        ))]
    );
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert!(!s.is_connected());
}

#[test]
fn reauthenticate_while_disconnected_waits_for_the_next_connect() {
    let now = t0();
    let mut s = Session::new(sat_options(b"old"));
    assert_eq!(
        s.reauthenticate(now, Bytes::from_static(b"fresh")),
        Ok(false)
    );
    assert_eq!(tx(&mut s), [0u8; 0]);
    s.connect(now);
    assert!(tx(&mut s).ends_with(&[0x16, 0, 5, b'f', b'r', b'e', b's', b'h', 0, 1, b'c']));
    let mut plain = Session::new(Options::new("c"));
    assert_eq!(
        plain.reauthenticate(now, Bytes::new()),
        Err(AuthError::NoMethod)
    );
}

#[test]
fn unsolicited_or_foreign_auth_is_a_protocol_error() {
    let now = t0();
    // AUTH success without a re-authentication in progress.
    let mut s = connected_with_sat(now);
    s.handle_bytes(now, &auth(0x00, None));
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    assert_eq!(tx(&mut s), [0xE0, 0x01, 0x82]);
    // AUTH success instead of a CONNACK.
    let mut s = Session::new(sat_options(b"tok"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &auth(0x00, None));
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    // Another method.
    let mut s = connected_with_sat(now);
    s.reauthenticate(now, Bytes::from_static(b"new")).unwrap();
    tx(&mut s);
    s.handle_bytes(
        now,
        &[0xF0, 0x08, 0x00, 0x06, 0x15, 0x00, 0x03, b'F', b'O', b'O'],
    );
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    // No enhanced authentication configured at all.
    let mut s = Session::new(Options::new("c"));
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &auth(0x18, Some(b"ch")));
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::ProtocolViolation(_))]
    ));
    // A malformed AUTH (property length past the packet).
    let mut s = connected_with_sat(now);
    s.handle_bytes(now, &[0xF0, 0x02, 0x18, 0x05]);
    assert!(matches!(
        events(&mut s)[..],
        [Event::Disconnected(DisconnectCause::Malformed(_))]
    ));
}

#[test]
fn a_publish_past_its_send_by_is_dropped_unsent_while_it_waits() {
    let now = t0();
    let mut options = Options::new("c");
    options.max_inflight = 1;
    let mut s = connected(options, now);
    let a = s
        .publish_by(now, message("t", b"x"), now + secs(5))
        .unwrap();
    // No room in flight: b waits behind a, and its time runs out before a's PUBACK.
    let b = s
        .publish_by(now, message("t", b"x"), now + secs(5))
        .unwrap();
    assert_eq!(tx(&mut s), publish_t_x(1, false));
    s.handle_bytes(now + secs(5), &[0x40, 0x02, 0, 1]);
    // Looked at as the bytes are taken.
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert_eq!(events(&mut s), acked_then_dropped(a, b));
    // Queued while disconnected, it does not go out on a connection made after its time.
    s.handle_transport_closed(now + secs(5));
    events(&mut s);
    let c = s
        .publish_by(now + secs(5), message("t", b"x"), now + secs(6))
        .unwrap();
    s.connect(now + secs(7));
    tx(&mut s);
    s.handle_bytes(now + secs(7), &CONNACK_RESUMED);
    assert_eq!(tx(&mut s), [0u8; 0]);
    assert_eq!(
        events(&mut s),
        [
            Event::Connected {
                session_present: true
            },
            Event::PublishDropped {
                id: c,
                message: Some(message("t", b"x"))
            },
        ]
    );
    assert_eq!(tx(&mut s), [0u8; 0]);
    // In time, it goes out as usual, with the next packet id.
    s.publish_by(now + secs(7), message("t", b"x"), now + secs(8))
        .unwrap();
    assert_eq!(tx(&mut s), publish_t_x(2, false));
}

#[test]
fn dropped_unacknowledged_publishes_are_not_resent_on_a_resumed_session() {
    let now = t0();
    let mut s = connected(Options::new("c"), now);
    let a = s.publish(now, message("t", b"x")).unwrap();
    tx(&mut s);
    // While connected nothing is dropped: a's PUBACK may still come.
    s.drop_unacknowledged();
    assert_eq!(events(&mut s), []);
    s.handle_transport_closed(now);
    events(&mut s);
    let b = s.publish(now, message("t", b"x")).unwrap(); // queued while disconnected
    s.drop_unacknowledged();
    assert_eq!(
        events(&mut s),
        [
            Event::PublishDropped {
                id: a,
                message: Some(message("t", b"x"))
            },
            Event::PublishDropped {
                id: b,
                message: Some(message("t", b"x"))
            },
        ]
    );
    s.connect(now);
    tx(&mut s);
    s.handle_bytes(now, &CONNACK_RESUMED);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            session_present: true
        }]
    );
    assert_eq!(tx(&mut s), [0u8; 0], "nothing re-sent with DUP");
    // What is published now goes out as usual.
    s.publish(now, message("t", b"x")).unwrap();
    assert_eq!(tx(&mut s), publish_t_x(2, false));
}
