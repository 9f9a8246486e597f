use super::*;
use crate::store::{parse_notification, parse_response, Request, ResponseBody, SetOptions};
use std::num::NonZeroU64;

const T0: u64 = 1_800_000_000_000;
const CD: [u8; 16] = [9; 16];

#[allow(clippy::disallowed_methods)]
fn start_now() -> Now {
    Now::new(Instant::now(), T0)
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn set(key: &'static str, value: &'static str, condition: SetCondition, px: u64) -> Command {
    Command::Set {
        key: b(key),
        value: b(value),
        options: SetOptions {
            condition,
            expiry: NonZeroU64::new(px),
        },
    }
}

struct T {
    store: Emulator,
    now: Now,
}

impl T {
    fn new() -> T {
        let now = start_now();
        T {
            store: Emulator::new(EmulatorConfig::default(), now),
            now,
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.store.handle_timeout(self.now);
    }

    fn message(&self, client: &str, command: Command, ft: Option<&str>) -> Message {
        Request {
            command,
            timestamp: Hlc::new(self.now.wall_ms, 0, client),
            fencing_token: ft.map(|t| t.parse().unwrap()),
        }
        .to_message(
            &store::RequestSender::new(client).unwrap(),
            Bytes::from_static(&CD),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// Sends `msg` from `client`; returns the response (checked to carry `__stat`) and the
    /// notifications that followed it.
    fn send_msg(&mut self, client: &str, msg: &Message) -> (Message, Vec<Message>) {
        self.store.handle_request(self.now, client, msg);
        let response = self.store.poll_message().expect("a response");
        assert_eq!(response.topic, msg.response_topic.clone().unwrap());
        assert_eq!(response.correlation_data.as_deref(), Some(&CD[..]));
        assert!(response.user_property("__stat").is_some());
        let mut notes = Vec::new();
        while let Some(m) = self.store.poll_message() {
            notes.push(m);
        }
        (response, notes)
    }

    fn send(&mut self, client: &str, command: Command, ft: Option<&str>) -> ResponseBody {
        let msg = self.message(client, command, ft);
        let (response, _) = self.send_msg(client, &msg);
        assert_eq!(response.user_property("__stat"), Some("200"));
        parse_response(&response).unwrap().outcome.unwrap()
    }

    fn reply(&mut self, client: &str, command: Command, ft: Option<&str>) -> StoreReply {
        self.send(client, command, ft).reply
    }

    /// The raw payload of the response to a message with these properties and payload.
    fn raw(&mut self, props: &[(&str, &str)], payload: &'static str) -> Bytes {
        let msg = Message {
            topic: store::REQUEST_TOPIC.into(),
            payload: b(payload),
            correlation_data: Some(Bytes::from_static(&CD)),
            response_topic: Some(store::response_topic("c1").into()),
            user_properties: props
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..Message::default()
        };
        let (response, notes) = self.send_msg("c1", &msg);
        assert!(notes.is_empty());
        assert_eq!(response.user_property("__stat"), Some("200"));
        response.payload
    }
}

fn err(text: &str) -> Bytes {
    Bytes::from(format!("-ERR {text}\r\n"))
}

#[test]
fn set_get_and_versions_from_the_store_clock() {
    let mut t = T::new();
    let r = t.send("c1", set("k", "v", SetCondition::Always, 0), None);
    assert_eq!(r.reply, StoreReply::Ok);
    let v1 = r.version.unwrap();
    assert_eq!(v1, Hlc::new(T0, 1, "statestore"));
    // Same wall ms: the counter goes up.
    let v2 = t
        .send("c1", set("k", "w", SetCondition::Always, 0), None)
        .version
        .unwrap();
    assert_eq!(v2, Hlc::new(T0, 2, "statestore"));
    // A client timestamp far ahead in counter is not folded in.
    let mut msg = t.message("c2", Command::Get { key: b("k") }, None);
    msg.user_properties[1].1 = Hlc::new(T0, 99_999, "c2").to_string().into();
    let (resp, _) = t.send_msg("c2", &msg);
    let got = parse_response(&resp).unwrap().outcome.unwrap();
    assert_eq!(got.reply, StoreReply::Value(b("w")));
    assert_eq!(got.version.as_ref(), Some(&v2));
    t.advance(1500);
    let v3 = t
        .send("c1", set("k", "w", SetCondition::Always, 0), None)
        .version
        .unwrap();
    assert_eq!(v3, Hlc::new(T0 + 1500, 0, "statestore"));
    assert_eq!(t.store.version(b"k"), Some(&v3));
    assert_eq!(t.store.get(b"k"), Some(&b("w")));
    let miss = t.send("c1", Command::Get { key: b("nope") }, None);
    assert_eq!((miss.reply, miss.version), (StoreReply::NotFound, None));
}

#[test]
fn nx_and_nex() {
    let mut t = T::new();
    assert_eq!(
        t.reply("a", set("L", "a", SetCondition::NotExists, 0), None),
        StoreReply::Ok
    );
    let v = t.store.version(b"L").cloned();
    let r = t.send("b", set("L", "b", SetCondition::NotExists, 0), None);
    assert_eq!((r.reply, r.version), (StoreReply::Integer(-1), v.clone()));
    let r = t.send("b", set("L", "b", SetCondition::NotExistsOrEqual, 0), None);
    assert_eq!((r.reply, r.version), (StoreReply::Integer(-1), v.clone()));
    // NEX with the same value is a renewal: applied, newer version.
    t.advance(10);
    let r = t.send("a", set("L", "a", SetCondition::NotExistsOrEqual, 0), None);
    assert_eq!(r.reply, StoreReply::Ok);
    assert!(r.version > v);
    assert_eq!(r.version.unwrap(), Hlc::new(T0 + 10, 0, "statestore"));
    assert_eq!(
        t.reply("b", set("M", "b", SetCondition::NotExistsOrEqual, 0), None),
        StoreReply::Ok
    );
}

#[test]
fn px_expiry_deletes_and_notifies_with_a_newer_version() {
    let mut t = T::new();
    assert_eq!(
        t.reply("o", Command::KeyNotify { key: b("L") }, None),
        StoreReply::Ok
    );
    let r = t.send(
        "a",
        set("L", "a", SetCondition::NotExistsOrEqual, 1000),
        None,
    );
    let set_version = r.version.unwrap();
    let _ = t.store.take_records();
    assert_eq!(
        t.store.poll_timeout(),
        Some(t.now.instant + Duration::from_secs(1))
    );
    t.advance(999);
    assert_eq!(t.store.get(b"L"), Some(&b("a")));
    assert!(t.store.poll_message().is_none());
    t.advance(1);
    assert_eq!(t.store.get(b"L"), None);
    assert_eq!(t.store.poll_timeout(), None);
    let m = t.store.poll_message().expect("DELETE");
    assert_eq!(m.topic, store::notification_topic("o", b"L"));
    assert_eq!(&m.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    let n = parse_notification(&m).unwrap();
    assert_eq!(n.op, NotificationOp::Delete);
    assert_eq!(n.version, Some(Hlc::new(T0 + 1000, 0, "statestore")));
    assert!(n.version.unwrap() > set_version);
    assert_eq!(t.store.stats().expirations, 1);
    // A SET without PX clears an expiry.
    t.send("a", set("K", "a", SetCondition::Always, 5), None);
    t.send("a", set("K", "b", SetCondition::Always, 0), None);
    assert_eq!(t.store.poll_timeout(), None);
    t.advance(10);
    assert_eq!(t.store.get(b"K"), Some(&b("b")));
}

#[test]
fn requests_see_expiry_before_they_run() {
    let mut t = T::new();
    t.send("a", set("L", "a", SetCondition::NotExists, 50), None);
    t.now = t.now + Duration::from_millis(50); // no handle_timeout
    assert_eq!(
        t.reply("b", set("L", "b", SetCondition::NotExists, 50), None),
        StoreReply::Ok
    );
}

#[test]
fn del_and_vdel() {
    let mut t = T::new();
    t.send("a", set("k", "v", SetCondition::Always, 0), None);
    let r = t.send(
        "a",
        Command::VDel {
            key: b("k"),
            value: b("x"),
        },
        None,
    );
    assert_eq!(
        (r.reply, r.version.as_ref()),
        (StoreReply::Integer(-1), t.store.version(b"k"))
    );
    let old = t.store.version(b"k").cloned().unwrap();
    let r = t.send(
        "a",
        Command::VDel {
            key: b("k"),
            value: b("v"),
        },
        None,
    );
    assert_eq!(r.reply, StoreReply::Integer(1));
    assert!(r.version.unwrap() > old);
    let r = t.send(
        "a",
        Command::VDel {
            key: b("k"),
            value: b("v"),
        },
        None,
    );
    assert_eq!((r.reply, r.version), (StoreReply::Integer(0), None));
    t.send("a", set("k", "v", SetCondition::Always, 0), None);
    assert_eq!(
        t.reply("a", Command::Del { key: b("k") }, None),
        StoreReply::Integer(1)
    );
    assert_eq!(
        t.reply("a", Command::Del { key: b("k") }, None),
        StoreReply::Integer(0)
    );
}

#[test]
fn keynotify_topics_payloads_stop_and_disconnect() {
    let mut t = T::new();
    assert_eq!(
        t.reply(
            "client-id1",
            Command::KeyNotifyStop { key: b("SOMEKEY") },
            None
        ),
        StoreReply::Integer(0)
    );
    assert_eq!(
        t.reply("client-id1", Command::KeyNotify { key: b("SOMEKEY") }, None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("client-id1", Command::KeyNotify { key: b("SOMEKEY") }, None),
        StoreReply::Ok
    );
    assert!(t.store.is_observing("client-id1", b"SOMEKEY"));
    let msg = t.message("w", set("SOMEKEY", "VALUE5", SetCondition::Always, 0), None);
    let (resp, notes) = t.send_msg("w", &msg);
    assert_eq!(&resp.payload[..], b"+OK\r\n");
    assert_eq!(notes.len(), 1, "one registration, one notification");
    let m = &notes[0];
    assert_eq!(
        m.topic,
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
    );
    assert_eq!(
        &m.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$6\r\nVALUE5\r\n"
    );
    assert_eq!(
        m.user_property("__ts"),
        Some(&*t.store.version(b"SOMEKEY").unwrap().to_string())
    );
    let (_, notes) = t.send_msg(
        "w",
        &t.message("w", Command::Del { key: b("SOMEKEY") }, None),
    );
    assert_eq!(
        parse_notification(&notes[0]).unwrap().op,
        NotificationOp::Delete
    );
    assert_eq!(
        t.reply(
            "client-id1",
            Command::KeyNotifyStop { key: b("SOMEKEY") },
            None
        ),
        StoreReply::Ok
    );
    let (_, notes) = t.send_msg(
        "w",
        &t.message("w", set("SOMEKEY", "x", SetCondition::Always, 0), None),
    );
    assert!(notes.is_empty());
    t.reply("client-id1", Command::KeyNotify { key: b("SOMEKEY") }, None);
    t.store.handle_client_disconnected(t.now, "client-id1");
    assert!(!t.store.is_observing("client-id1", b"SOMEKEY"));
    let (_, notes) = t.send_msg(
        "w",
        &t.message("w", Command::Del { key: b("SOMEKEY") }, None),
    );
    assert!(notes.is_empty());
    // Forgotten while connected: the same silence, and a new KEYNOTIFY registers again.
    t.reply("client-id1", Command::KeyNotify { key: b("SOMEKEY") }, None);
    t.store.forget_registrations("client-id1");
    assert!(!t.store.is_observing("client-id1", b"SOMEKEY"));
    let (_, notes) = t.send_msg(
        "w",
        &t.message("w", set("SOMEKEY", "y", SetCondition::Always, 0), None),
    );
    assert!(notes.is_empty());
    t.reply("client-id1", Command::KeyNotify { key: b("SOMEKEY") }, None);
    let (_, notes) = t.send_msg(
        "w",
        &t.message("w", Command::Del { key: b("SOMEKEY") }, None),
    );
    assert_eq!(notes.len(), 1);
}

#[test]
fn fencing_rules() {
    let mut t = T::new();
    let ft1 = Hlc::new(T0, 5, "statestore").to_string();
    let ft0 = Hlc::new(T0, 4, "statestore").to_string();
    let ft2 = Hlc::new(T0 + 1, 0, "statestore").to_string();
    let low = "the request fencing token is a lower version than the fencing token protecting the resource";
    let required = "a fencing token is required for this request";
    // Unfenced writes to an unprotected key are fine.
    assert_eq!(
        t.reply("a", set("c", "0", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(t.store.fencing_token(b"c"), None);
    // A refused SET with a token does not protect the key.
    assert_eq!(
        t.reply("a", set("c", "1", SetCondition::NotExists, 0), Some(&ft1)),
        StoreReply::Integer(-1)
    );
    assert_eq!(t.store.fencing_token(b"c"), None);
    // The first applied SET with __ft protects the key.
    assert_eq!(
        t.reply("a", set("c", "1", SetCondition::Always, 0), Some(&ft1)),
        StoreReply::Ok
    );
    assert_eq!(
        t.store.fencing_token(b"c").map(ToString::to_string),
        Some(ft1.clone())
    );
    let r = t.send("b", set("c", "2", SetCondition::Always, 0), None);
    assert_eq!(
        r.reply,
        StoreReply::Error(ServiceError::FencingTokenRequired)
    );
    assert_eq!(r.reply.to_payload(), err(required));
    let r = t.send("b", set("c", "2", SetCondition::Always, 0), Some(&ft0));
    assert_eq!(r.reply.to_payload(), err(low));
    assert_eq!(
        t.reply("b", Command::Del { key: b("c") }, None)
            .to_payload(),
        err(required)
    );
    assert_eq!(
        t.reply(
            "b",
            Command::VDel {
                key: b("c"),
                value: b("1")
            },
            Some(&ft0)
        )
        .to_payload(),
        err(low)
    );
    assert_eq!(t.store.get(b"c"), Some(&b("1")));
    // Equal is accepted; newer replaces.
    assert_eq!(
        t.reply("a", set("c", "2", SetCondition::Always, 0), Some(&ft1)),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("b", set("c", "3", SetCondition::Always, 0), Some(&ft2)),
        StoreReply::Ok
    );
    assert_eq!(
        t.store.fencing_token(b"c").map(ToString::to_string),
        Some(ft2.clone())
    );
    assert_eq!(
        t.reply("a", set("c", "4", SetCondition::Always, 0), Some(&ft1))
            .to_payload(),
        err(low)
    );
    assert_eq!(
        t.reply("b", Command::Get { key: b("c") }, None),
        StoreReply::Value(b("3"))
    );
    // Deleting the key removes its protection.
    assert_eq!(
        t.reply("b", Command::Del { key: b("c") }, Some(&ft2)),
        StoreReply::Integer(1)
    );
    assert_eq!(
        t.reply("a", set("c", "5", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(t.store.stats().fenced_writes, 4);
}

#[test]
fn clock_skew_limits() {
    let mut t = T::new();
    let ahead = |ms: u64| Hlc::new(T0 + ms, 0, "c1").to_string();
    let ts_text = "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized";
    let ft_text = "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized";
    let get = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    assert_eq!(&t.raw(&[("__ts", &ahead(60_000))], get)[..], b"$-1\r\n");
    assert_eq!(t.raw(&[("__ts", &ahead(60_001))], get), err(ts_text));
    let set = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    assert_eq!(
        &t.raw(&[("__ts", &ahead(0)), ("__ft", &ahead(60_000))], set)[..],
        b"+OK\r\n"
    );
    assert_eq!(
        t.raw(&[("__ts", &ahead(0)), ("__ft", &ahead(60_001))], set),
        err(ft_text)
    );
}

#[test]
fn malformed_requests_get_the_service_texts() {
    let mut t = T::new();
    let ts = Hlc::new(T0, 0, "c1").to_string();
    let set = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    assert_eq!(t.raw(&[], set), err("missing timestamp"));
    assert_eq!(t.raw(&[("__ts", "12:x")], set), err("malformed timestamp"));
    assert_eq!(
        t.raw(&[("__ts", &ts), ("__ft", "nope")], set),
        err("malformed timestamp")
    );
    assert_eq!(
        t.raw(&[("__ts", &ts)], "*3\r\n$3\r\nSET\r\n"),
        err("syntax error")
    );
    assert_eq!(
        t.raw(&[("__ts", &ts)], "*1\r\n$4\r\nPING\r\n"),
        err("unknown command")
    );
    assert_eq!(
        t.raw(&[("__ts", &ts)], "*1\r\n$3\r\nGET\r\n"),
        err("wrong number of arguments")
    );
    assert_eq!(
        t.raw(&[("__ts", &ts)], "*2\r\n$3\r\nDEL\r\n$0\r\n\r\n"),
        err("the key length is zero")
    );
    assert_eq!(t.store.get(b"k"), None);
    assert_eq!(t.store.stats().service_errors, 7);
}

#[test]
fn protocol_version_major_must_be_one() {
    let mut t = T::new();
    let mut msg = t.message("c1", Command::Get { key: b("k") }, None);
    msg.user_properties[2].1 = "2.0".into();
    let (resp, _) = t.send_msg("c1", &msg);
    assert_eq!(resp.user_property("__stat"), Some("505"));
    assert!(resp.payload.is_empty());
    msg.user_properties[2].1 = "1.7".into();
    let (resp, _) = t.send_msg("c1", &msg);
    assert_eq!(resp.user_property("__stat"), Some("200"));
    assert_eq!(t.store.stats().protocol_errors, 1);
}

#[test]
fn requests_without_usable_response_topic_or_correlation_are_dropped() {
    let mut t = T::new();
    let good = t.message("c1", set("k", "v", SetCondition::Always, 0), None);
    for topic in [
        None,
        Some(String::new()),
        Some("a/+/b".to_owned()),
        Some(store::REQUEST_TOPIC.to_owned()),
        Some(format!("{}/x", store::NOTIFICATION_PREFIX)),
    ] {
        let mut msg = good.clone();
        msg.response_topic = topic.map(Into::into);
        t.store.handle_request(t.now, "c1", &msg);
        assert!(t.store.poll_message().is_none());
    }
    let mut msg = good.clone();
    msg.correlation_data = None;
    t.store.handle_request(t.now, "c1", &msg);
    assert!(t.store.poll_message().is_none());
    let stats = t.store.stats();
    assert_eq!(
        (
            stats.invalid_response_topics,
            stats.missing_correlation_data
        ),
        (5, 1)
    );
    assert_eq!(t.store.get(b"k"), None, "a refused request is not applied");
}

#[test]
fn response_precedes_its_notifications_and_expiry_notifications_come_first() {
    let mut t = T::new();
    t.reply("o", Command::KeyNotify { key: b("a") }, None);
    t.reply("o", Command::KeyNotify { key: b("b") }, None);
    t.send("w", set("a", "1", SetCondition::Always, 10), None);
    t.now = t.now + Duration::from_millis(10);
    let msg = t.message("w", set("b", "2", SetCondition::Always, 0), None);
    t.store.handle_request(t.now, "w", &msg);
    let order: Vec<String> = std::iter::from_fn(|| t.store.poll_message())
        .map(|m| match parse_notification(&m) {
            Ok(n) => format!("{}:{:?}", String::from_utf8_lossy(&n.key), n.op),
            Err(_) => "response".into(),
        })
        .collect();
    assert_eq!(order, ["a:Delete", "response", "b:Set(b\"2\")"]);
}

#[test]
fn records_show_stored_token_and_outcome() {
    let now = start_now();
    let config = EmulatorConfig {
        record_requests: true,
        ..EmulatorConfig::default()
    };
    let mut t = T {
        store: Emulator::new(config, now),
        now,
    };
    let ft = Hlc::new(T0, 1, "statestore").to_string();
    t.send("a", set("c", "1", SetCondition::Always, 0), Some(&ft));
    t.send("a", set("c", "2", SetCondition::Always, 0), None);
    let r = t.store.take_records();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].stored_token.clone(), r[0].applied), (None, true));
    assert_eq!(
        r[0].fencing_token.as_ref().map(ToString::to_string),
        Some(ft.clone())
    );
    assert_eq!(
        r[1].stored_token.as_ref().map(ToString::to_string),
        Some(ft)
    );
    assert!(!r[1].applied);
    assert_eq!(
        r[1].reply,
        Some(StoreReply::Error(ServiceError::FencingTokenRequired))
    );
}

impl T {
    fn with_config(config: EmulatorConfig) -> T {
        let now = start_now();
        T {
            store: Emulator::new(config, now),
            now,
        }
    }

    /// Sends `command` from `client`; the protocol error it was refused with.
    fn refused(&mut self, client: &str, command: Command) -> ProtocolError {
        let msg = self.message(client, command, None);
        let (response, notes) = self.send_msg(client, &msg);
        assert!(notes.is_empty(), "a refused request notifies nobody");
        assert!(response.payload.is_empty());
        match parse_response(&response).unwrap().outcome {
            Err(store::ResponseError::Protocol(e)) => e,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}

fn big(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

fn set_bytes(key: Bytes, value: Bytes) -> Command {
    Command::Set {
        key,
        value,
        options: SetOptions::default(),
    }
}

#[test]
fn unsupported_version_names_the_supported_and_the_requested_versions() {
    let mut t = T::new();
    let mut msg = t.message("c1", Command::Get { key: b("k") }, None);
    msg.user_properties[2].1 = "2.0".into();
    let (resp, _) = t.send_msg("c1", &msg);
    assert_eq!(resp.user_property("__stat"), Some("505"));
    assert_eq!(resp.user_property("__supProtMajVer"), Some("1"));
    assert_eq!(resp.user_property("__requestProtVer"), Some("2.0"));
    let Err(store::ResponseError::Protocol(e)) = parse_response(&resp).unwrap().outcome else {
        panic!("a 505 is a protocol error");
    };
    assert_eq!(e.supported_major_versions(), [1]);
    assert_eq!(e.request_protocol_version.as_deref(), Some("2.0"));
    assert_eq!(e.property_name.as_deref(), Some("__protVer"));
    assert_eq!(e.property_value.as_deref(), Some("2.0"));
}

#[test]
fn max_keys_refuses_new_keys_only() {
    let mut t = T::with_config(EmulatorConfig {
        max_keys: Some(2),
        ..EmulatorConfig::default()
    });
    let quota = StoreReply::Error(ServiceError::QuotaExceeded);
    assert_eq!(
        t.reply("a", set("k1", "1", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("a", set("k2", "2", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    let r = t.send("a", set("k3", "3", SetCondition::Always, 0), None);
    assert_eq!((r.reply.clone(), r.version), (quota.clone(), None));
    assert_eq!(r.reply.to_payload(), err("the quota has been exceeded"));
    assert_eq!(t.store.get(b"k3"), None);
    assert_eq!(t.store.len(), 2);
    // Existing keys can still be updated (NEX renewal, plain SET), read and refused by NX.
    assert_eq!(
        t.reply(
            "a",
            set("k1", "1", SetCondition::NotExistsOrEqual, 1000),
            None
        ),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("a", set("k2", "two", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("b", set("k2", "b", SetCondition::NotExists, 0), None),
        StoreReply::Integer(-1)
    );
    assert_eq!(
        t.reply("b", Command::Get { key: b("k2") }, None),
        StoreReply::Value(b("two"))
    );
    // A deleted or expired key makes room.
    assert_eq!(
        t.reply("a", Command::Del { key: b("k2") }, None),
        StoreReply::Integer(1)
    );
    assert_eq!(
        t.reply("a", set("k3", "3", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("a", set("k4", "4", SetCondition::Always, 0), None),
        quota
    );
    t.advance(1000);
    assert_eq!(t.store.get(b"k1"), None);
    assert_eq!(
        t.reply("a", set("k4", "4", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    let stats = t.store.stats();
    assert_eq!((stats.quota_exceeded, stats.service_errors), (2, 2));
}

#[test]
fn quotas_change_while_the_store_runs() {
    let mut t = T::new();
    let quota = StoreReply::Error(ServiceError::QuotaExceeded);
    assert_eq!(
        t.reply("a", set("k", "12", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    // Full: what is stored stays readable and deletable; a SET that adds nothing still goes,
    // one that adds a byte or a key does not.
    t.store.set_quota(Some(1), Some(3));
    assert_eq!(
        t.reply("a", set("k", "21", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("a", set("k", "123", SetCondition::Always, 0), None),
        quota
    );
    assert_eq!(
        t.reply("a", set("j", "1", SetCondition::Always, 0), None),
        quota
    );
    assert_eq!(
        t.reply("a", Command::Get { key: b("k") }, None),
        StoreReply::Value(b("21"))
    );
    // Over quota (another tenant filled it): every SET is refused until deletes make room.
    t.store.set_quota(None, Some(0));
    assert_eq!(
        t.reply("a", set("k", "1", SetCondition::Always, 0), None),
        quota
    );
    t.store.set_quota(None, None);
    assert_eq!(
        t.reply("a", set("j", "1", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
}

#[test]
fn max_bytes_bounds_keys_and_values_together() {
    let mut t = T::with_config(EmulatorConfig {
        max_bytes: Some(10),
        ..EmulatorConfig::default()
    });
    let quota = StoreReply::Error(ServiceError::QuotaExceeded);
    assert_eq!(
        t.reply("a", set("k", "123456", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(t.store.stored_bytes(), 7);
    // 1 + 10 bytes: too many, whether as an update or as a new key.
    assert_eq!(
        t.reply("a", set("k", "1234567890", SetCondition::Always, 0), None),
        quota
    );
    assert_eq!(
        t.reply("a", set("j", "1234", SetCondition::Always, 0), None),
        quota
    );
    assert_eq!(t.store.get(b"k"), Some(&b("123456")));
    // An update that stays within the bound, and one that shrinks, are applied.
    assert_eq!(
        t.reply("a", set("k", "123456789", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(t.store.stored_bytes(), 10);
    assert_eq!(
        t.reply("a", set("k", "1", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("a", set("j", "12", SetCondition::Always, 0), None),
        StoreReply::Ok
    );
    assert_eq!(t.store.stored_bytes(), 5);
    assert_eq!(
        t.reply(
            "a",
            Command::VDel {
                key: b("j"),
                value: b("12")
            },
            None
        ),
        StoreReply::Integer(1)
    );
    assert_eq!(t.store.stored_bytes(), 2);
}

#[test]
fn a_get_too_large_to_deliver_is_refused_with_413() {
    let mut t = T::new();
    assert_eq!(
        t.reply("c1", set_bytes(b("k"), big(1000)), None),
        StoreReply::Ok
    );
    t.reply("c1", set("small", "v", SetCondition::Always, 0), None);
    // The broker now accepts at most 600 bytes from the store.
    t.store.set_max_packet_size(600);
    let e = t.refused("c1", Command::Get { key: b("k") });
    assert_eq!(e.status, 413);
    let text = e.message.unwrap();
    assert!(
        text.starts_with("the response would be a packet of "),
        "{text}"
    );
    assert!(
        text.ends_with(" more than the 600 bytes that can be delivered to \"c1\""),
        "{text}"
    );
    assert_eq!(
        t.store.get(b"k").map(Bytes::len),
        Some(1000),
        "nothing changed"
    );
    assert_eq!(
        t.reply("c1", Command::Get { key: b("small") }, None),
        StoreReply::Value(b("v"))
    );
    let stats = t.store.stats();
    assert_eq!(
        (stats.too_large, stats.protocol_errors, stats.unsent),
        (1, 1, 0)
    );
    t.store.set_max_packet_size(MAX_PACKET_SIZE);
    assert_eq!(
        t.reply("c1", Command::Get { key: b("k") }, None),
        StoreReply::Value(big(1000))
    );
}

#[test]
fn a_write_whose_notification_is_too_large_is_not_applied() {
    let mut t = T::new();
    t.reply("observer", Command::KeyNotify { key: b("k") }, None);
    t.store.set_max_packet_size(600);
    let before = t.store.last_version().clone();
    let e = t.refused("w", set_bytes(b("k"), big(700)));
    assert_eq!(e.status, 413);
    assert!(
        e.message
            .as_deref()
            .unwrap()
            .starts_with("a notification of this key would be a packet of "),
        "{e}"
    );
    assert_eq!(t.store.get(b"k"), None);
    assert_eq!(t.store.last_version(), &before, "no version was made");
    assert_eq!(t.store.stored_bytes(), 0);
    // A value whose notification fits is applied and notified.
    let msg = t.message("w", set_bytes(b("k"), big(100)), None);
    let (resp, notes) = t.send_msg("w", &msg);
    assert_eq!(&resp.payload[..], b"+OK\r\n");
    assert_eq!(notes.len(), 1);
    // Without observers the size of a value is not the store's concern.
    t.reply("observer", Command::KeyNotifyStop { key: b("k") }, None);
    assert_eq!(
        t.reply("w", set_bytes(b("k"), big(700)), None),
        StoreReply::Ok
    );
}

#[test]
fn keynotify_on_a_key_whose_notifications_cannot_be_sent_is_refused() {
    let mut t = T::new();
    // The notification topic carries the key in upper-case hex: 40 000 bytes of key make a topic
    // of more than 65 535 bytes, which MQTT cannot encode.
    let key = big(40_000);
    let e = t.refused("o", Command::KeyNotify { key: key.clone() });
    assert_eq!(e.status, 413);
    assert_eq!(
        e.message.as_deref(),
        Some(
            "a notification of this key cannot be sent: its topic would be longer than 65535 bytes"
        )
    );
    assert!(!t.store.is_observing("o", &key));
    // The key itself is fine to store and read.
    assert_eq!(
        t.reply("o", set_bytes(key.clone(), b("v")), None),
        StoreReply::Ok
    );
    assert_eq!(
        t.reply("o", Command::Get { key }, None),
        StoreReply::Value(b("v"))
    );
}

#[test]
fn a_limit_learned_for_a_client_applies_until_it_disconnects() {
    let mut t = T::new();
    t.reply("c1", set_bytes(b("k"), big(1000)), None);
    // The broker dropped a packet of 900 bytes to c2.
    t.store.handle_client_packet_dropped(t.now, "c2", 900);
    assert_eq!(t.store.client_packet_limit("c2"), Some(899));
    let e = t.refused("c2", Command::Get { key: b("k") });
    assert_eq!(e.status, 413);
    assert!(e
        .message
        .unwrap()
        .ends_with("the 899 bytes that can be delivered to \"c2\""));
    // Others are not affected; a smaller drop lowers the limit, a larger one does not raise it.
    assert_eq!(
        t.reply("c1", Command::Get { key: b("k") }, None),
        StoreReply::Value(big(1000))
    );
    t.store.handle_client_packet_dropped(t.now, "c2", 2000);
    assert_eq!(t.store.client_packet_limit("c2"), Some(899));
    t.store.handle_client_disconnected(t.now, "c2");
    assert_eq!(t.store.client_packet_limit("c2"), None);
    assert_eq!(
        t.reply("c2", Command::Get { key: b("k") }, None),
        StoreReply::Value(big(1000))
    );
}

#[test]
fn an_expiry_notification_that_cannot_be_delivered_is_dropped_and_counted() {
    let mut t = T::new();
    t.reply("o", Command::KeyNotify { key: b("k") }, None);
    t.reply("p", Command::KeyNotify { key: b("k") }, None);
    t.reply("w", set("k", "v", SetCondition::Always, 10), None);
    t.store.handle_client_packet_dropped(t.now, "o", 20);
    t.advance(10);
    assert_eq!(t.store.get(b"k"), None);
    let m = t.store.poll_message().expect("p's DELETE");
    assert_eq!(m.topic, store::notification_topic("p", b"k"));
    assert!(t.store.poll_message().is_none());
    assert_eq!(t.store.stats().unsent, 1);
}

#[test]
fn packet_sizes_of_remaining_lengths() {
    assert_eq!(mqtt_packet_size(0), 2);
    assert_eq!(mqtt_packet_size(127), 129);
    assert_eq!(mqtt_packet_size(128), 131);
    assert_eq!(mqtt_packet_size(5008), 5011);
    assert_eq!(mqtt_packet_size(16_384), 16_388);
    assert_eq!(mqtt_packet_size(268_435_455), MAX_PACKET_SIZE);
}
