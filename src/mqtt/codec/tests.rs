use bytes::{Bytes, BytesMut};
use mqttbytes::v5 as mb;

use super::decode::Frame;
use super::property::{self, prefixed, Properties, Property};
use super::publish::{is_ascii_without_nul, InboundPublish};
use super::*;
use crate::mqtt::reason::{ConnectReason, DisconnectReason, PubAckReason, SubscribeFailure};
use crate::{Message, QoS, SharedStr};

/// Encodes a PUBLISH on its own, checking that `publish_len` predicted its size.
fn encoded_publish(m: &Message, packet_id: u16, dup: bool) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::from(&b"prefix"[..]);
    encode_publish(&mut out, m, packet_id, dup)?;
    let out = out.split_off(6);
    assert_eq!(publish_len(m).unwrap(), out.len());
    Ok(out)
}

/// Frames and decodes one whole packet.
fn decode_all(bytes: &[u8]) -> Result<Inbound, DecodeError> {
    let frame = frame(bytes, 1 << 20)?.expect("complete frame");
    assert_eq!(frame.len, bytes.len());
    let plain = decode(
        Bytes::copy_from_slice(bytes),
        frame,
        &mut SharedStr::default(),
        None,
    );
    // A PUBLISH on the raw topic: the same checks, and the same message once converted.
    if bytes[0] >> 4 == 3 {
        let body = &bytes[frame.header_len..];
        let topic = body
            .get(2..prefixed(body, 1).unwrap_or(0).max(2))
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("");
        let raw = decode(
            Bytes::copy_from_slice(bytes),
            frame,
            &mut SharedStr::default(),
            Some(&SharedStr::from(topic)),
        );
        let as_plain = raw.map(|inbound| match inbound {
            Inbound::RawPublish(r) => Inbound::Publish(InboundPublish {
                packet_id: r.packet_id,
                exactly_once: r.exactly_once,
                topic_alias: r.topic_alias,
                message: r.into_message(),
            }),
            other => other,
        });
        assert_eq!(as_plain, plain, "raw and message decoding disagree");
    }
    plain
}

#[test]
fn ascii_without_nul_agrees_with_the_plain_definition() {
    let plain = |b: &[u8]| b.iter().all(|&c| (1..=0x7F).contains(&c));
    let mut cases: Vec<Vec<u8>> = vec![vec![], b"__stat".to_vec(), b"0123456789abcdefg".to_vec()];
    for len in [1, 7, 8, 9, 16, 17, 31] {
        for at in 0..len {
            for bad in [0u8, 0x80, 0xFF, 0x7F, 0x01] {
                let mut v = vec![b'a'; len];
                v[at] = bad;
                cases.push(v);
            }
        }
    }
    for case in cases {
        assert_eq!(is_ascii_without_nul(&case), plain(&case), "{case:?}");
    }
}

#[test]
fn the_topic_of_the_previous_publish_is_reused() {
    let decode_with = |bytes: &[u8], cache: &mut SharedStr| {
        let frame = frame(bytes, 1 << 20).unwrap().unwrap();
        match decode(Bytes::copy_from_slice(bytes), frame, cache, None) {
            Ok(Inbound::Publish(p)) => p.message.topic,
            other => panic!("{other:?}"),
        }
    };
    let a_b = [0x30, 0x07, 0, 3, b'a', b'/', b'b', 0, b'x'];
    let a_c = [0x30, 0x07, 0, 3, b'a', b'/', b'c', 0, b'x'];
    let mut cache = SharedStr::default();
    assert_eq!(decode_with(&a_b, &mut cache), "a/b");
    assert_eq!(cache, "a/b");
    assert_eq!(decode_with(&a_b, &mut cache), "a/b");
    assert_eq!(decode_with(&a_c, &mut cache), "a/c");
    assert_eq!(cache, "a/c");
    // A topic that is not valid is refused whatever the cache holds.
    let mut nul = a_b;
    nul[5] = 0;
    let frame = frame(&nul, 1 << 20).unwrap().unwrap();
    assert!(decode(Bytes::copy_from_slice(&nul), frame, &mut cache, None).is_err());
}

/// mqttbytes' own decoder, for showing its defects.
fn mb_read(bytes: &[u8]) -> Result<mb::Packet, mqttbytes::Error> {
    mb::read(&mut BytesMut::from(bytes), 1 << 20)
}

#[test]
fn framing_tells_need_more_from_malformed() {
    assert_eq!(frame(&[], 100), Ok(None));
    assert_eq!(frame(&[0x30], 100), Ok(None));
    assert_eq!(frame(&[0x30, 0x80], 100), Ok(None));
    assert_eq!(
        frame(&[0x30, 0x05, 0, 1], 100),
        Ok(Some(Frame {
            header_len: 2,
            len: 7
        }))
    );
    // A fifth remaining-length byte is malformed, not "need more".
    assert_eq!(
        frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX),
        Err(DecodeError::RemainingLength)
    );
    assert_eq!(
        frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], usize::MAX),
        Err(DecodeError::RemainingLength)
    );
    assert_eq!(
        frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
        Ok(Some(Frame {
            header_len: 5,
            len: 5 + MAX_REMAINING_LENGTH
        }))
    );
    assert_eq!(frame(&[0x00, 0x00], 100), Err(DecodeError::PacketType));
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    assert_eq!(
        frame(&[0x30, 0x80, 0x01], 100),
        Err(DecodeError::TooLarge {
            size: 131,
            max: 100
        })
    );
    assert_eq!(
        frame(&[0x30, 0x62], 100),
        Ok(Some(Frame {
            header_len: 2,
            len: 100
        }))
    );
}

/// Defect 1: mqttbytes cannot decode a DISCONNECT with a reason code and no properties
/// (nor one with remaining length 0); we decode DISCONNECT ourselves.
#[test]
fn defect_1_disconnect_without_properties() {
    assert_eq!(
        mb_read(&[0xE0, 0x01, 0x8E]),
        Err(mqttbytes::Error::InsufficientBytes(1))
    );
    assert_eq!(
        mb_read(&[0xE0, 0x00]),
        Err(mqttbytes::Error::PayloadRequired)
    );
    assert_eq!(
        decode_all(&[0xE0, 0x01, 0x8E]),
        Ok(Inbound::Disconnect(DisconnectReason::SessionTakenOver))
    );
    assert_eq!(
        decode_all(&[0xE0, 0x00]),
        Ok(Inbound::Disconnect(DisconnectReason::NormalDisconnection))
    );
    // With properties (a reason string "x").
    assert_eq!(
        decode_all(&[0xE0, 0x06, 0x8B, 0x04, 0x1F, 0x00, 0x01, b'x']),
        Ok(Inbound::Disconnect(DisconnectReason::ServerShuttingDown))
    );
    // A property length that does not match the packet is malformed.
    assert!(matches!(
        decode_all(&[0xE0, 0x03, 0x8B, 0x05, 0x1F]),
        Err(DecodeError::Packet { .. })
    ));
    assert!(matches!(
        decode_all(&[0xE1, 0x00]),
        Err(DecodeError::Flags { .. })
    ));
}

/// Defect 2: mqttbytes reports a complete but truncated frame as "insufficient bytes", which
/// would make a reader wait forever; we hand it only complete frames and call that malformed.
#[test]
fn defect_2_complete_malformed_frame_is_not_need_more() {
    // CONNACK and SUBACK whose property length is missing: the frames are complete.
    for bytes in [&[0x20, 0x02, 0x00, 0x00][..], &[0x90, 0x02, 0x00, 0x01][..]] {
        assert!(matches!(
            mb_read(bytes),
            Err(mqttbytes::Error::InsufficientBytes(_))
        ));
        assert!(matches!(decode_all(bytes), Err(DecodeError::Packet { .. })));
    }
}

/// Defect 3: mqttbytes' CONNECT writer patches the flags at an absolute offset, so a CONNECT
/// written after another packet is corrupt; ours can be appended anywhere.
#[test]
fn defect_3_connect_in_a_non_empty_buffer() {
    let mut connect = mb::Connect::new("c");
    connect.clean_session = true;
    let mut fresh = BytesMut::new();
    connect.write(&mut fresh).unwrap();
    let mut shared = BytesMut::from(&[0xC0, 0x00][..]);
    connect.write(&mut shared).unwrap();
    assert_ne!(
        &shared[2..],
        &fresh[..],
        "mqttbytes defect 3 is fixed upstream"
    );

    let fields = ConnectFields {
        client_id: "c",
        clean_start: true,
        keep_alive_secs: 60,
        session_expiry: 0,
        username: Some("u"),
        password: Some(b"p"),
        authentication_method: None,
        authentication_data: None,
        maximum_packet_size: 1000,
    };
    let mut ours_fresh = BytesMut::new();
    encode_connect(&mut ours_fresh, &fields).unwrap();
    let mut ours_shared = BytesMut::from(&[0xC0, 0x00][..]);
    encode_connect(&mut ours_shared, &fields).unwrap();
    assert_eq!(&ours_shared[2..], &ours_fresh[..]);

    // An independent decoder (mqttbytes' CONNECT reader) agrees with our encoding.
    let Ok(mb::Packet::Connect(read)) = mb_read(&ours_fresh) else {
        panic!("our CONNECT does not decode");
    };
    assert_eq!(read.client_id, "c");
    assert!(read.clean_session);
    assert_eq!(read.keep_alive, 60);
    assert_eq!(read.login, Some(mb::Login::new("u", "p")));
    let props = read.properties.unwrap();
    assert_eq!(props.receive_maximum, Some(RECEIVE_MAXIMUM));
    assert_eq!(props.max_packet_size, Some(1000));
    assert_eq!(props.topic_alias_max, Some(0));
    assert_eq!(props.request_problem_info, Some(1));
}

/// Defect 4: mqttbytes' UNSUBSCRIBE decoder prints with `dbg!`. A client never receives an
/// UNSUBSCRIBE: we report it as unexpected without handing it to mqttbytes.
#[test]
fn defect_4_unsubscribe_never_reaches_mqttbytes() {
    let unsubscribe = [0xA2, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'];
    assert_eq!(decode_all(&unsubscribe), Ok(Inbound::Unexpected(10)));
}

/// Defect 5: mqttbytes accepts a property that overruns its block, eating into the payload.
#[test]
fn defect_5_property_overrunning_its_block() {
    // Property length 1, but Message Expiry Interval takes 5 bytes.
    let bytes = [0x30, 0x0A, 0, 1, b't', 0x01, 0x02, 0, 0, 0, 9, b'x'];
    let Ok(mb::Packet::Publish(publish)) = mb_read(&bytes) else {
        panic!("mqttbytes defect 5 is fixed upstream");
    };
    assert_eq!(&publish.payload[..], b"x", "the expiry ate the payload");
    assert!(matches!(
        decode_all(&bytes),
        Err(DecodeError::Packet {
            packet: "PUBLISH",
            ..
        })
    ));
    // Unknown property, property past the packet, trailing bytes after CONNACK properties.
    assert!(decode_all(&[0x30, 0x06, 0, 1, b't', 0x02, 0x7F, 0]).is_err());
    assert!(decode_all(&[0x30, 0x05, 0, 1, b't', 0x05, 0x02]).is_err());
    assert!(decode_all(&[0x20, 0x04, 0, 0, 0, 0]).is_err());
    assert!(decode_all(&[0x40, 0x05, 0, 1, 0x10, 0, 0]).is_err());
}

/// Pseudo-random bytes from a xorshift64 generator seeded with `seed`.
fn xorshift(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }
}

/// Decoding never panics and never asks for more bytes once a frame is complete.
#[test]
fn random_complete_frames_decode_or_fail_cleanly() {
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    for _ in 0..50_000 {
        let first = next();
        let len = usize::from(next() % 40);
        let mut bytes = vec![first, len as u8];
        // Mostly well-formed starts: a plausible property length after the usual fields.
        bytes.extend((0..len).map(|i| if i < 6 && next() % 2 == 0 { 0 } else { next() }));
        if let Ok(Some(frame)) = frame(&bytes, 1 << 20) {
            let _ = decode(Bytes::from(bytes), frame, &mut SharedStr::default(), None);
        }
    }
}

#[test]
fn puback_with_and_without_reason_and_properties() {
    let ack = |reason| {
        Ok(Inbound::PubAck {
            packet_id: 7,
            reason,
        })
    };
    assert_eq!(decode_all(&[0x40, 0x02, 0, 7]), ack(PubAckReason::Success));
    assert_eq!(
        decode_all(&[0x40, 0x03, 0, 7, 0x10]),
        ack(PubAckReason::NoMatchingSubscribers)
    );
    assert_eq!(
        decode_all(&[0x40, 0x04, 0, 7, 0x87, 0x00]),
        ack(PubAckReason::NotAuthorized)
    );
    assert_eq!(
        decode_all(&[0x40, 0x08, 0, 7, 0x97, 0x04, 0x1F, 0, 1, b'q']),
        ack(PubAckReason::QuotaExceeded)
    );
    assert!(decode_all(&[0x40, 0x02, 0, 0]).is_err());
    assert!(decode_all(&[0x40, 0x01, 0]).is_err());
    assert!(decode_all(&[0x40, 0x03, 0, 7, 0x42]).is_err());
}

#[test]
fn suback_with_and_without_properties() {
    let expected = Ok(Inbound::SubAck {
        packet_id: 1,
        results: vec![
            Ok(QoS::AtLeastOnce),
            Ok(QoS::AtMostOnce),
            Err(SubscribeFailure::NotAuthorized),
        ],
        granted_exactly_once: false,
    });
    assert_eq!(decode_all(&[0x90, 0x06, 0, 1, 0, 1, 0, 0x87]), expected);
    assert_eq!(
        decode_all(&[0x90, 0x0A, 0, 1, 4, 0x1F, 0, 1, b'r', 1, 0, 0x87]),
        expected
    );
    assert!(decode_all(&[0x90, 0x03, 0, 1, 0]).is_err());
}

#[test]
fn connack_with_and_without_properties() {
    assert_eq!(
        decode_all(&[0x20, 0x03, 0x01, 0x00, 0x00]),
        Ok(Inbound::ConnAck(ConnAck {
            session_present: true,
            ..ConnAck::default()
        }))
    );
    let with_props = [
        0x20, 0x12, 0x00, 0x00, 0x0F, 0x21, 0x00, 0x05, 0x27, 0x00, 0x00, 0x10, 0x00, 0x13, 0x00,
        0x1E, 0x12, 0x00, 0x01, b'z',
    ];
    assert_eq!(
        decode_all(&with_props),
        Ok(Inbound::ConnAck(ConnAck {
            session_present: false,
            refused: None,
            receive_maximum: Some(5),
            maximum_packet_size: Some(4096),
            server_keep_alive: Some(30),
            assigned_client_id: Some("z".into()),
            maximum_qos: None,
        }))
    );
    // Refusals, including a code mqttbytes does not know.
    for (code, reason) in [
        (0x87, ConnectReason::NotAuthorized),
        (0x8C, ConnectReason::BadAuthenticationMethod),
        (0xF0, ConnectReason::Other(0xF0)),
    ] {
        assert_eq!(
            decode_all(&[0x20, 0x03, 0x00, code, 0x00]),
            Ok(Inbound::ConnAck(ConnAck {
                refused: Some(reason),
                ..ConnAck::default()
            }))
        );
    }
    assert!(decode_all(&[0x20, 0x03, 0x02, 0x00, 0x00]).is_err());
    assert!(decode_all(&[0x20, 0x01, 0x00]).is_err());
}

#[test]
fn message_properties_round_trip() {
    let message = Message {
        topic: "state/req".into(),
        payload: Bytes::from_static(b"*1\r\n"),
        qos: QoS::AtLeastOnce,
        correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
        response_topic: Some("state/resp".into()),
        message_expiry: Some(10),
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![("__ts".into(), "1:0:c".into()), ("a".into(), "".into())],
    };
    let encoded = encoded_publish(&message, 42, true).unwrap();
    assert_eq!(encoded[0], 0x3A, "QoS 1 with DUP");
    let Ok(Inbound::Publish(publish)) = decode_all(&encoded) else {
        panic!("does not decode");
    };
    assert_eq!(publish.packet_id, 42);
    assert_eq!(publish.topic_alias, None);
    assert_eq!(publish.message, message);

    let plain = Message {
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        ..Message::default()
    };
    let encoded = encoded_publish(&plain, 42, true).unwrap();
    assert_eq!(&encoded[..], &[0x30, 0x05, 0, 1, b't', 0, b'x']);
    let Ok(Inbound::Publish(publish)) = decode_all(&encoded) else {
        panic!("does not decode");
    };
    assert_eq!(publish.message, plain);
}

#[test]
fn inbound_publish_flags() {
    // QoS 2.
    let Ok(Inbound::Publish(p)) = decode_all(&[0x34, 0x06, 0, 1, b't', 0, 9, 0]) else {
        panic!()
    };
    assert!(p.exactly_once);
    // Topic alias 1.
    let Ok(Inbound::Publish(p)) = decode_all(&[0x30, 0x07, 0, 1, b't', 3, 0x23, 0, 1]) else {
        panic!()
    };
    assert_eq!(p.topic_alias, Some(1));
    // QoS 3 and packet id 0 are malformed.
    assert!(decode_all(&[0x36, 0x06, 0, 1, b't', 0, 9, 0]).is_err());
    assert!(decode_all(&[0x32, 0x06, 0, 1, b't', 0, 0, 0]).is_err());
    // DUP on QoS 0.
    assert!(decode_all(&[0x38, 0x04, 0, 1, b't', 0]).is_err());
    // Topic length past the frame.
    assert!(decode_all(&[0x30, 0x03, 0, 9, b't']).is_err());
}

#[test]
fn oversized_fields_are_refused_not_truncated() {
    let message = Message {
        topic: "t".repeat(70_000).into(),
        ..Message::default()
    };
    assert_eq!(
        encoded_publish(&message, 1, false).unwrap_err(),
        EncodeError::FieldTooLong("topic")
    );
    let long = "f".repeat(70_000);
    assert_eq!(
        encode_subscribe(1, &[(&long, QoS::AtLeastOnce)]).unwrap_err(),
        EncodeError::FieldTooLong("topic filter")
    );
}

#[test]
fn outbound_fixed_packets() {
    let mut out = BytesMut::new();
    encode_puback(&mut out, 0x1234);
    encode_pingreq(&mut out);
    encode_disconnect(&mut out, DisconnectReason::NormalDisconnection);
    encode_disconnect(&mut out, DisconnectReason::MalformedPacket);
    assert_eq!(
        &out[..],
        &[0x40, 2, 0x12, 0x34, 0xC0, 0, 0xE0, 0, 0xE0, 1, 0x81]
    );
    assert_eq!(
        &encode_subscribe(1, &[("a", QoS::AtLeastOnce), ("b", QoS::AtMostOnce)]).unwrap()[..],
        &[0x82, 0x0B, 0, 1, 0, 0, 1, b'a', 1, 0, 1, b'b', 0]
    );
}

/// The properties `encode_publish` writes for `m`, in its order.
fn expected_properties(m: &Message) -> Vec<Property<'_>> {
    let mut expected = Vec::new();
    expected.extend(m.message_expiry.map(Property::MessageExpiry));
    expected.extend(
        m.content_type
            .as_deref()
            .map(|t| Property::ContentType(t.as_bytes())),
    );
    expected.extend(
        m.response_topic
            .as_deref()
            .map(|t| Property::ResponseTopic(t.as_bytes())),
    );
    expected.extend(m.correlation_data.as_deref().map(Property::CorrelationData));
    for (k, v) in &m.user_properties {
        expected.push(Property::UserProperty(k.as_bytes(), v.as_bytes()));
    }
    expected
}

/// `m` encoded, then decoded as a PUBLISH on the raw topic.
fn as_raw_publish(m: &Message) -> RawPublish {
    let encoded = encoded_publish(m, 9, false).unwrap();
    let frame = frame(&encoded, 1 << 20).unwrap().unwrap();
    match decode(
        encoded.freeze(),
        frame,
        &mut SharedStr::default(),
        Some(&m.topic),
    ) {
        Ok(Inbound::RawPublish(raw)) => raw,
        other => panic!("{other:?}"),
    }
}

#[test]
fn properties_of_encoded_publishes() {
    let long = "v".repeat(300);
    let base = Message {
        topic: "state/req".into(),
        payload: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
        qos: QoS::AtLeastOnce,
        ..Message::default()
    };
    let samples = [
        base.clone(),
        Message {
            correlation_data: Some(Bytes::from_static(&[0; 16])),
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![
                ("__ts".into(), "1:0:c".into()),
                ("a".into(), "".into()),
                ("".into(), "b".into()),
                ("k".into(), long.as_str().into()),
            ],
            ..base.clone()
        },
        Message {
            message_expiry: Some(u32::MAX),
            response_topic: Some("clients/c/resp".into()),
            correlation_data: Some(Bytes::new()),
            content_type: Some("".into()),
            user_properties: vec![("ü".into(), "ß".into()), ("ü".into(), "again".into())],
            payload: Bytes::new(),
            ..base.clone()
        },
        Message {
            message_expiry: Some(0),
            correlation_data: Some(Bytes::from(vec![7; 300])),
            user_properties: (0..20)
                .map(|i| (format!("name{i}").into(), format!("value{i}").into()))
                .collect(),
            ..base
        },
    ];
    for m in &samples {
        let raw = as_raw_publish(m);
        assert_eq!(raw.properties().collect::<Vec<_>>(), expected_properties(m));
        assert_eq!(raw.payload(), &m.payload[..]);
    }
}

#[test]
fn properties_other_than_those_of_a_message_are_named_by_id() {
    // Payload Format Indicator, Subscription Identifier 128, Topic Alias 5, then a content type.
    let block = [0x01, 1, 0x0B, 0x80, 0x01, 0x23, 0, 5, 0x03, 0, 1, b'x'];
    assert_eq!(
        Properties::new(&block).collect::<Vec<_>>(),
        [
            Property::Other(property::PAYLOAD_FORMAT_INDICATOR),
            Property::Other(property::SUBSCRIPTION_IDENTIFIER),
            Property::Other(property::TOPIC_ALIAS),
            Property::ContentType(b"x"),
        ]
    );
}

#[test]
fn properties_stop_at_what_is_inconsistent() {
    let full = [
        0x02, 0, 0, 0, 9, 0x03, 0, 1, b'c', 0x09, 0, 2, 1, 2, 0x26, 0, 1, b'k', 0, 1, b'v',
    ];
    let all: Vec<_> = Properties::new(&full).collect();
    assert_eq!(all.len(), 4);
    // A truncated block yields the properties that are whole, then stops.
    for cut in 0..full.len() {
        let got: Vec<_> = Properties::new(&full[..cut]).collect();
        assert_eq!(got, all[..got.len()], "cut at {cut}");
        assert!(got.len() < all.len());
    }
    // An unknown identifier, a length past the block: nothing from there on, even what would
    // follow.
    let ok = [0x03, 0, 1, b'c'];
    for bad in [&[0x00][..], &[0x7F, 0, 0], &[0x26, 0, 1, b'k', 0, 9]] {
        let mut block = ok.to_vec();
        block.extend_from_slice(bad);
        block.extend_from_slice(&ok);
        let mut properties = Properties::new(&block);
        assert_eq!(properties.next(), Some(Property::ContentType(b"c")));
        assert_eq!(properties.next(), None, "{bad:?}");
        assert_eq!(properties.next(), None, "fused");
    }
}

/// Reading any bytes as a property block never panics and never reads past them.
#[test]
fn properties_of_random_bytes() {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let ids = [0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26, 0x1F];
    let mut read = 0;
    for _ in 0..50_000 {
        let len = usize::from(next() % 48);
        // Mostly plausible: known identifiers and short lengths.
        let block: Vec<u8> = (0..len)
            .map(|_| match next() % 4 {
                0 => ids[usize::from(next()) % ids.len()],
                1 => 0,
                2 => next() % 8,
                _ => next(),
            })
            .collect();
        for property in Properties::new(&block) {
            read += 1;
            let inside = |s: &[u8]| {
                let (outer, inner) = (block.as_ptr_range(), s.as_ptr_range());
                outer.start <= inner.start && inner.end <= outer.end
            };
            match property {
                Property::ContentType(s) | Property::ResponseTopic(s) => {
                    assert!(inside(s))
                }
                Property::CorrelationData(s) => assert!(inside(s)),
                Property::UserProperty(k, v) => {
                    assert!(inside(k) && inside(v))
                }
                Property::MessageExpiry(_) | Property::Other(_) => {}
            }
        }
    }
    // The blocks are plausible enough that many properties are read, not only refused.
    assert!(read > 10_000, "{read}");
}
