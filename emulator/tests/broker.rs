//! The emulator over a real broker (mosquitto when installed, else the testkit's embedded one;
//! the tests of mosquitto's own behaviour need mosquitto and say so when they skip).
#![allow(clippy::disallowed_methods)] // the test is the driver

mod support;

use leasedlock::bytes::Bytes;
use leasedlock::store::{NotificationOp, ResponseError, ServiceError, StoreReply};
use leasedlock_testkit::{Broker, StoreEmulator, MOSQUITTO, REQUIRE_MOSQUITTO_ENV};
use statestore_emulator::Options;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{get, keynotify, set, Client, TIMEOUT};

const MIB: usize = 1 << 20;

/// Whether the tests that need mosquitto itself can run (else they print why they skip).
fn have_mosquitto() -> bool {
    let have = Path::new(MOSQUITTO).exists();
    if !have {
        assert_ne!(
            std::env::var(REQUIRE_MOSQUITTO_ENV).as_deref(),
            Ok("1"),
            "{MOSQUITTO} is required"
        );
        eprintln!("skipped: {MOSQUITTO} is not installed");
    }
    have
}

fn value(len: usize, byte: u8) -> Bytes {
    Bytes::from(vec![byte; len])
}

fn reply(result: Result<leasedlock::store::ResponseBody, ResponseError>) -> StoreReply {
    result.expect("a processed request").reply
}

/// The status and message of a protocol error.
fn protocol_error(result: Result<leasedlock::store::ResponseBody, ResponseError>) -> (u16, String) {
    match result {
        Err(ResponseError::Protocol(e)) => (e.status, e.message.unwrap_or_default().into()),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn assert_nothing_dropped(broker: &Broker) {
    assert!(
        !broker.log().contains("Dropping too large"),
        "the broker dropped packets:\n{}",
        broker.log()
    );
}

#[test]
fn values_larger_than_a_mebibyte_are_stored_and_read_back() {
    let broker = Broker::start();
    let _store = StoreEmulator::start(broker.addr());
    let mut c = Client::connect(broker.addr(), "large-1", 16 * MIB as u32);
    // More than the 1 MiB the emulator's session used to accept: that request was never seen.
    let v = value(2 * MIB, b'v');
    assert_eq!(reply(c.request(set(b"large", v.clone()))), StoreReply::Ok);
    assert_eq!(reply(c.request(get(b"large"))), StoreReply::Value(v));
    // A notification of such a value reaches an observer that accepts it.
    let mut o = Client::connect(broker.addr(), "large-observer", 16 * MIB as u32);
    assert_eq!(reply(o.request(keynotify(b"large"))), StoreReply::Ok);
    let w = value(3 * MIB, b'w');
    assert_eq!(reply(c.request(set(b"large", w.clone()))), StoreReply::Ok);
    assert_eq!(o.next_notification().op, NotificationOp::Set(w));
    assert_nothing_dropped(&broker);
}

/// mosquitto with `max_packet_size`: what the emulator would publish beyond it is answered with
/// 413 (read from the CONNACK), never sent, and the broker keeps serving everyone.
#[test]
fn answers_beyond_the_broker_limit_are_refused_with_413() {
    if !have_mosquitto() {
        return;
    }
    const LIMIT: u32 = 100_000;
    let broker = Broker::builder().max_packet_size(LIMIT).start();
    let _store = StoreEmulator::start(broker.addr());
    // A long client id: its response topic holds it, its notification topics hold it in hex.
    let long_id = format!("observer-{}", "o".repeat(3000));
    let mut observer = Client::connect(broker.addr(), &long_id, MIB as u32);
    let mut writer = Client::connect(broker.addr(), "writer", MIB as u32);
    assert_eq!(reply(observer.request(keynotify(b"k"))), StoreReply::Ok);

    // 97 000 bytes fit in the writer's request, not in the notification to the observer.
    let (status, text) = protocol_error(writer.request(set(b"k", value(97_000, b'a'))));
    assert_eq!(status, 413);
    assert!(
        text.starts_with("a notification of this key would be a packet of "),
        "{text}"
    );
    assert!(text.contains("more than the 100000 bytes"), "{text}");
    assert_eq!(
        reply(writer.request(get(b"k"))),
        StoreReply::NotFound,
        "not applied"
    );
    // A smaller value is applied and notified.
    assert_eq!(
        reply(writer.request(set(b"k", value(1000, b'b')))),
        StoreReply::Ok
    );
    assert_eq!(
        observer.next_notification().op,
        NotificationOp::Set(value(1000, b'b'))
    );

    // Without observers the value is stored; the writer reads it back, the observer (whose
    // response topic is 3000 bytes longer) gets a 413.
    let big = value(97_000, b'c');
    assert_eq!(
        reply(writer.request(set(b"big", big.clone()))),
        StoreReply::Ok
    );
    assert_eq!(
        reply(writer.request(get(b"big"))),
        StoreReply::Value(big.clone())
    );
    let (status, text) = protocol_error(observer.request(get(b"big")));
    assert_eq!(status, 413);
    assert!(
        text.starts_with("the response would be a packet of "),
        "{text}"
    );

    // The broker is up and serves a new client; it dropped nothing.
    let mut later = Client::connect(broker.addr(), "later", MIB as u32);
    assert_eq!(reply(later.request(get(b"big"))), StoreReply::Value(big));
    assert_nothing_dropped(&broker);
}

/// A client that advertises a small Maximum Packet Size: mosquitto drops the first too large
/// answer (and logs it); the emulator learns from that log line and answers with 413 instead of
/// making the broker drop more.
#[test]
fn a_client_that_accepts_less_gets_413_once_the_broker_dropped_an_answer() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start();
    let _store = StoreEmulator::start(broker.addr());
    let mut writer = Client::connect(broker.addr(), "writer-2", MIB as u32);
    assert_eq!(
        reply(writer.request(set(b"v", value(50_000, b'v')))),
        StoreReply::Ok
    );
    assert_eq!(reply(writer.request(set(b"small", "s"))), StoreReply::Ok);

    let mut small = Client::connect(broker.addr(), "small-client", 10_000);
    // Ask until the answer is a 413: the first answer is dropped by the broker (the client never
    // sees it), later ones are refused by the emulator once it has read the broker's log line.
    let deadline = Instant::now() + TIMEOUT;
    let (status, text) = loop {
        assert!(Instant::now() < deadline, "no 413 within {TIMEOUT:?}");
        let cd = small.send(get(b"v"));
        match small.response_to(&cd, Duration::from_secs(2)) {
            None => continue,
            Some(result) => break protocol_error(result),
        }
    };
    assert_eq!(status, 413);
    assert!(text.contains("\"small-client\""), "{text}");
    let log = broker.log();
    assert!(
        log.contains("Dropping too large outgoing PUBLISH for small-client"),
        "{log}"
    );
    assert!(!log.contains("Dropping too large outgoing PUBLISH for statestore-emulator"));
    // Small answers still reach it, and the broker keeps serving everyone.
    assert_eq!(
        reply(small.request(get(b"small"))),
        StoreReply::Value("s".into())
    );
    assert_eq!(
        reply(writer.request(get(b"v"))),
        StoreReply::Value(value(50_000, b'v'))
    );
    let mut later = Client::connect(broker.addr(), "later-2", MIB as u32);
    assert_eq!(
        reply(later.request(get(b"small"))),
        StoreReply::Value("s".into())
    );
}

/// A second connection with the same client id takes the session over: the registrations of the
/// old connection are gone (mosquitto logs the takeover on `$SYS/broker/log/E`).
#[test]
fn a_session_takeover_drops_the_old_registrations() {
    takeover(&Broker::start());
}

/// The testkit's embedded broker publishes the same takeover line.
#[test]
fn a_session_takeover_drops_the_old_registrations_on_the_embedded_broker() {
    takeover(&Broker::embedded());
}

fn takeover(broker: &Broker) {
    let _store = StoreEmulator::start(broker.addr());
    let mut old = Client::connect(broker.addr(), "taken", MIB as u32);
    assert_eq!(reply(old.request(keynotify(b"tk"))), StoreReply::Ok);
    let mut new = Client::connect(broker.addr(), "taken", MIB as u32);
    assert!(old.closed_within(TIMEOUT), "the old connection was closed");
    let mut writer = Client::connect(broker.addr(), "tk-writer", MIB as u32);
    assert_eq!(reply(writer.request(set(b"tk", "1"))), StoreReply::Ok);
    // The emulator published the SET's notifications before it saw this GET, and the broker
    // delivers in order: a notification of the old registration would be here by now.
    assert_eq!(
        reply(new.request(get(b"tk"))),
        StoreReply::Value("1".into())
    );
    assert_eq!(new.notifications(), [], "the old registration was dropped");
    // The new connection's own registration works.
    assert_eq!(reply(new.request(keynotify(b"tk"))), StoreReply::Ok);
    assert_eq!(reply(writer.request(set(b"tk", "2"))), StoreReply::Ok);
    assert_eq!(new.next_notification().op, NotificationOp::Set("2".into()));
}

#[test]
fn max_keys_over_the_broker() {
    let broker = Broker::start();
    let mut options = Options::new(broker.addr().to_string());
    options.client_id = format!("statestore-emulator-quota-{}", std::process::id());
    options.verbose = false;
    options.store.max_keys = Some(2);
    let _store = StoreEmulator::with_options(options);
    let mut c = Client::connect(broker.addr(), "quota", MIB as u32);
    assert_eq!(reply(c.request(set(b"q1", "1"))), StoreReply::Ok);
    assert_eq!(reply(c.request(set(b"q2", "2"))), StoreReply::Ok);
    assert_eq!(
        reply(c.request(set(b"q3", "3"))),
        StoreReply::Error(ServiceError::QuotaExceeded)
    );
    assert_eq!(reply(c.request(set(b"q1", "one"))), StoreReply::Ok);
    assert_eq!(reply(c.request(get(b"q3"))), StoreReply::NotFound);
    assert_eq!(
        reply(c.request(leasedlock::store::Command::Del {
            key: Bytes::from_static(b"q2")
        })),
        StoreReply::Integer(1)
    );
    assert_eq!(reply(c.request(set(b"q3", "3"))), StoreReply::Ok);
}
