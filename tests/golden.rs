//! Golden tests: every byte example of docs/PROTOCOL.md, through the public API.

use std::num::NonZeroU64;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use leasedlock::hlc::Hlc;
use leasedlock::resp::{self, Reply};
use leasedlock::store::{
    self, Command, Notification, NotificationOp, Request, ServiceError, SetCondition, SetOptions,
    StoreReply,
};
use leasedlock::{FencingToken, Message, QoS};

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// docs/PROTOCOL.md §2: every row of the request table, plus the captured lease acquire.
fn request_examples() -> Vec<(Command, &'static str)> {
    vec![
        (
            Command::Set {
                key: b("SETKEY2"),
                value: b("VALUE5"),
                options: SetOptions::default(),
            },
            "*3\r\n$3\r\nSET\r\n$7\r\nSETKEY2\r\n$6\r\nVALUE5\r\n",
        ),
        (
            Command::Get { key: b("SETKEY2") },
            "*2\r\n$3\r\nGET\r\n$7\r\nSETKEY2\r\n",
        ),
        (
            Command::Del { key: b("SETKEY2") },
            "*2\r\n$3\r\nDEL\r\n$7\r\nSETKEY2\r\n",
        ),
        (
            Command::VDel {
                key: b("SETKEY2"),
                value: b("ABC"),
            },
            "*3\r\n$4\r\nVDEL\r\n$7\r\nSETKEY2\r\n$3\r\nABC\r\n",
        ),
        (
            Command::KeyNotify { key: b("SOMEKEY") },
            "*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n",
        ),
        (
            Command::KeyNotifyStop { key: b("SOMEKEY") },
            "*3\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n$4\r\nSTOP\r\n",
        ),
        (
            Command::Set {
                key: b("feas-lock"),
                value: b("feas-client"),
                options: SetOptions {
                    condition: SetCondition::NotExistsOrEqual,
                    expiry: NonZeroU64::new(10_000),
                },
            },
            "*6\r\n$3\r\nSET\r\n$9\r\nfeas-lock\r\n$11\r\nfeas-client\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n",
        ),
    ]
}

#[test]
fn request_payloads() {
    for (command, bytes) in request_examples() {
        assert_eq!(command.to_payload(), bytes.as_bytes(), "{command:?}");
        let mut out = BytesMut::from(&b"prefix"[..]);
        command.encode(&mut out);
        assert_eq!(&out[6..], bytes.as_bytes());
        assert_eq!(Command::decode(&b(bytes)), Ok(command.clone()));
        // The RESP layer sees the same arrays.
        let args = resp::decode_array(&b(bytes)).unwrap();
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let mut again = BytesMut::new();
        resp::encode_array(refs.iter().copied(), &mut again);
        assert_eq!(&again[..], bytes.as_bytes());
        assert_eq!(resp::encoded_array_len(&refs), bytes.len());
    }
}

#[test]
fn empty_value_is_legal() {
    let set = Command::Set {
        key: b("k"),
        value: Bytes::new(),
        options: SetOptions {
            condition: SetCondition::NotExists,
            expiry: None,
        },
    };
    assert_eq!(
        set.to_payload(),
        &b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nNX\r\n"[..]
    );
}

#[test]
fn reply_payloads() {
    let cases: &[(&'static str, Reply, StoreReply)] = &[
        ("+OK\r\n", Reply::Simple(b("OK")), StoreReply::Ok),
        (":-1\r\n", Reply::Integer(-1), StoreReply::Integer(-1)),
        (":0\r\n", Reply::Integer(0), StoreReply::Integer(0)),
        (":1\r\n", Reply::Integer(1), StoreReply::Integer(1)),
        ("$-1\r\n", Reply::Null, StoreReply::NotFound),
        (
            "$0\r\n\r\n",
            Reply::Blob(Bytes::new()),
            StoreReply::Value(Bytes::new()),
        ),
        (
            "$6\r\nVALUE5\r\n",
            Reply::Blob(b("VALUE5")),
            StoreReply::Value(b("VALUE5")),
        ),
        (
            "-ERR syntax error\r\n",
            Reply::Error(b("ERR syntax error")),
            StoreReply::Error(ServiceError::SyntaxError),
        ),
    ];
    for (bytes, reply, store_reply) in cases {
        assert_eq!(resp::decode_reply(&b(bytes)).as_ref(), Ok(reply));
        assert_eq!(store_reply.to_payload(), bytes.as_bytes());
        let msg = store::response_message("r", b("cd"), 200, None, store_reply);
        assert_eq!(msg.payload, bytes.as_bytes());
        let parsed = store::parse_response(&msg).unwrap().outcome.unwrap();
        assert_eq!(&parsed.reply, store_reply);
    }
    // The doc's "-1" without a colon is an error line, not an integer.
    assert_eq!(resp::decode_reply(&b("-1\r\n")), Ok(Reply::Error(b("1"))));
}

const ERROR_TEXTS: [&str; 12] = [
    "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
    "a fencing token is required for this request",
    "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
    "the request fencing token is a lower version than the fencing token protecting the resource",
    "the quota has been exceeded",
    "syntax error",
    "not authorized",
    "unknown command",
    "wrong number of arguments",
    "missing timestamp",
    "malformed timestamp",
    "the key length is zero",
];

#[test]
fn service_error_texts() {
    for (text, known) in ERROR_TEXTS.iter().zip(ServiceError::KNOWN) {
        let e = ServiceError::from_text(text);
        assert_eq!(e, known);
        assert!(!matches!(e, ServiceError::Unknown(_)));
        assert_eq!(e.text(), *text);
        assert_eq!(e.to_string(), *text);
        let payload = format!("-ERR {text}\r\n");
        let msg = Message {
            correlation_data: Some(b("cd")),
            payload: Bytes::from(payload.clone()),
            user_properties: vec![("__stat".into(), "200".into())],
            ..Message::default()
        };
        assert_eq!(
            store::parse_response(&msg).unwrap().outcome.unwrap().reply,
            StoreReply::Error(e.clone())
        );
        assert_eq!(StoreReply::Error(e).to_payload(), payload.as_bytes());
    }
    assert_eq!(
        ServiceError::from_text(
            "the request fencing token is a lower version that the fencing token protecting the resource"
        ),
        ServiceError::Unknown(
            "the request fencing token is a lower version that the fencing token protecting the resource"
                .into()
        )
    );
}

#[test]
fn notifications() {
    assert_eq!(store::hex_upper(b"client-id1"), "636C69656E742D696431");
    assert_eq!(store::hex_upper(b"SOMEKEY"), "534F4D454B4559");
    let topic = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559";
    assert_eq!(store::notification_topic("client-id1", b"SOMEKEY"), topic);
    assert_eq!(
        store::notification_filter("client-id1"),
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/+"
    );
    assert_eq!(
        store::parse_notification_topic(topic),
        Some((b("client-id1"), b("SOMEKEY")))
    );
    assert_eq!(store::parse_notification_topic(&topic.to_lowercase()), None);

    let set = "*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$6\r\nVALUE5\r\n";
    let del = "*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n";
    let version = Hlc::new(1_795_770_859_732, 0, "svc");
    for (payload, op, ts) in [
        (
            set,
            NotificationOp::Set(b("VALUE5")),
            Some(version.to_string()),
        ),
        (del, NotificationOp::Delete, None),
        (del, NotificationOp::Delete, Some("not-an-hlc".to_string())),
    ] {
        let msg = Message {
            topic: topic.into(),
            payload: b(payload),
            user_properties: ts
                .iter()
                .map(|t| ("__ts".into(), t.clone().into()))
                .collect(),
            ..Message::default()
        };
        let n = store::parse_notification(&msg).unwrap();
        assert_eq!(n.key, b("SOMEKEY"));
        assert_eq!(n.op, op);
        let expected_version = ts.and_then(|t| t.parse().ok());
        assert_eq!(n.version, expected_version);
        let back = store::notification_message("client-id1", &n);
        assert_eq!(back.topic, topic);
        assert_eq!(back.payload, payload.as_bytes());
        assert_eq!(back.qos, QoS::AtLeastOnce);
    }
    // The doc's `NOTIFY DEL` is not a notification the service sends.
    let msg = Message {
        topic: topic.into(),
        payload: b("*2\r\n$6\r\nNOTIFY\r\n$3\r\nDEL\r\n"),
        ..Message::default()
    };
    assert!(store::parse_notification(&msg).is_err());
    let n = Notification {
        key: b("SOMEKEY"),
        op: NotificationOp::Delete,
        version: Some(version.clone()),
    };
    assert_eq!(
        store::notification_message("client-id1", &n).user_property("__ts"),
        Some("001795770859732:00000:svc")
    );
}

#[test]
fn hlc_strings() {
    let text = "001795770859732:00000:3e43291a-c8b7-4041-a8dd-048b4beda18e";
    let h: Hlc = text.parse().unwrap();
    assert_eq!(h.wall_ms, 1_795_770_859_732);
    assert_eq!(h.counter, 0);
    assert_eq!(h.node_id, "3e43291a-c8b7-4041-a8dd-048b4beda18e");
    assert_eq!(h.to_string(), text);
    let t: FencingToken = text.parse().unwrap();
    assert_eq!(t.to_string(), text);
    assert!(t <= FencingToken::new(h.clone()));
    let newer: FencingToken = "001795770859733:00000:3e43291a-c8b7-4041-a8dd-048b4beda18e"
        .parse()
        .unwrap();
    assert!(newer > t);
}

#[test]
fn full_request_message() {
    let (command, payload) = request_examples().pop().unwrap();
    let ts: Hlc = "001795770859732:00003:feas-client".parse().unwrap();
    let ft: FencingToken = "001795770859000:00000:svc".parse().unwrap();
    let cd = Bytes::from_static(&[0xAB; 16]);
    let request = Request {
        command,
        timestamp: ts.clone(),
        fencing_token: Some(ft),
    };
    let sender = store::RequestSender::new("feas-client").unwrap();
    let msg = request
        .to_message(&sender, cd.clone(), Duration::from_millis(10_001))
        .unwrap();
    let expected = Message {
        topic: "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke".into(),
        payload: b(payload),
        qos: QoS::AtLeastOnce,
        correlation_data: Some(cd.clone()),
        response_topic: Some(
            "clients/feas-client/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
                .into(),
        ),
        message_expiry: Some(11),
        content_type: Some("application/octet-stream".into()),
        user_properties: [
            ("__srcId", "feas-client"),
            ("__ts", "001795770859732:00003:feas-client"),
            ("__protVer", "1.0"),
            ("$partition", "feas-client"),
            ("$high_priority", ""),
            ("__ft", "001795770859000:00000:svc"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect(),
    };
    assert_eq!(msg, expected);
    // Default timeout of 10 s is exactly 10; without a token there is no __ft.
    let request = Request {
        fencing_token: None,
        ..request
    };
    let msg = request
        .to_message(&sender, cd, Duration::from_secs(10))
        .unwrap();
    assert_eq!(msg.message_expiry, Some(10));
    assert_eq!(msg.user_properties.len(), 5);
    assert_eq!(msg.user_property("__ft"), None);
    // The emulator's view of it.
    let parsed = store::parse_request(&msg);
    assert_eq!(parsed.check().unwrap().0, &ts);
}

#[test]
fn response_message_parsed() {
    let msg = Message {
        topic: store::response_topic("feas-client").into(),
        payload: b("+OK\r\n"),
        qos: QoS::AtLeastOnce,
        correlation_data: Some(b("0123456789abcdef")),
        content_type: Some("application/octet-stream".into()),
        user_properties: vec![
            ("__stat".into(), "200".into()),
            ("__ts".into(), "001795770859732:00000:statestore".into()),
            ("__protVer".into(), "1.0".into()),
        ],
        ..Message::default()
    };
    let r = store::parse_response(&msg).unwrap();
    assert_eq!(r.correlation_data, b("0123456789abcdef"));
    let body = r.outcome.unwrap();
    assert_eq!(body.reply, StoreReply::Ok);
    let token = FencingToken::from(body.version.unwrap());
    assert_eq!(token.to_string(), "001795770859732:00000:statestore");

    // A GET miss: no __ts, no __protVer, no content type.
    let miss = Message {
        payload: b("$-1\r\n"),
        content_type: None,
        user_properties: vec![("__stat".into(), "200".into())],
        ..msg
    };
    let body = store::parse_response(&miss).unwrap().outcome.unwrap();
    assert_eq!((body.version, body.reply), (None, StoreReply::NotFound));
}

#[test]
fn response_topic_rules() {
    let ok = store::response_topic("client-id1");
    assert!(store::is_valid_response_topic(&ok));
    assert!(!store::is_valid_response_topic(store::REQUEST_TOPIC));
    assert!(!store::is_valid_response_topic(
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/mine"
    ));
    assert!(!store::is_valid_response_topic(""));
    assert!(!store::is_valid_response_topic("clients/+/x"));
}
