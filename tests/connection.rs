//! The byte-level `Connection` against a scripted broker and store in the test: every byte the
//! connection writes is decoded as MQTT v5, and every byte it reads is encoded as MQTT v5.

use bytes::{Bytes, BytesMut};
use leasedlock::connection::{Connection, Event};
use leasedlock::hlc::Hlc;
use leasedlock::lock::{self, Config, Intent, LockId, OpId, Options};
use leasedlock::store::{self, Command, Notification, NotificationOp, StoreReply};
use leasedlock::{mqtt, Message, Now, QoS};
use mqttbytes::v5::{self as wire, Packet};
use std::time::{Duration, Instant};

#[allow(clippy::disallowed_methods)] // the test is the driver
fn start_now() -> Now {
    Now::new(Instant::now(), 1_800_000_000_000)
}

/// A broker and a state store in one: answers CONNECT, SUBSCRIBE, PINGREQ, and state-store
/// requests (the store grants every lease and deletes on VDEL).
struct ScriptedBroker {
    inbox: BytesMut,
    version: u64,
    requests: Vec<Command>,
    holder: Option<Bytes>,
    /// The next this many requests reach no subscriber (the store is not connected yet).
    unrouted: usize,
    /// The CONNACK says the session is resumed.
    resume: bool,
    /// Requests are taken and neither acknowledged nor answered (a stalled broker).
    stalled: bool,
    /// PUBLISHes received with DUP set (re-sent by the client's session).
    dups: usize,
    /// The packet identifier of the last PUBLISH received.
    last_packet_id: u16,
}

impl ScriptedBroker {
    fn new() -> Self {
        ScriptedBroker {
            inbox: BytesMut::new(),
            version: 1_800_000_000_000,
            requests: Vec::new(),
            holder: None,
            unrouted: 0,
            resume: false,
            stalled: false,
            dups: 0,
            last_packet_id: 0,
        }
    }

    /// Takes the client's bytes; returns the broker's answer bytes.
    fn exchange(&mut self, bytes: &[u8]) -> BytesMut {
        self.inbox.extend_from_slice(bytes);
        let mut out = BytesMut::new();
        loop {
            let packet = match wire::read(&mut self.inbox, 1 << 20) {
                Ok(p) => p,
                Err(mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => panic!("client sent a malformed packet: {e:?}"),
            };
            match packet {
                Packet::Connect(_) => {
                    // CONNACK: session present or not, success, empty properties (mqttbytes
                    // 0.6 would leave out the property length that MQTT v5 requires).
                    out.extend_from_slice(&[0x20, 0x03, u8::from(self.resume), 0x00, 0x00]);
                }
                Packet::Subscribe(s) => {
                    let codes = s
                        .filters
                        .iter()
                        .map(|_| wire::SubscribeReasonCode::QoS1)
                        .collect();
                    wire::SubAck::new(s.pkid, codes).write(&mut out).unwrap();
                }
                Packet::Publish(p) => {
                    assert_eq!(p.qos, mqttbytes::QoS::AtLeastOnce);
                    self.dups += usize::from(p.dup);
                    self.last_packet_id = p.pkid;
                    if self.stalled {
                        continue;
                    }
                    if self.unrouted > 0 {
                        // PUBACK 0x10: accepted, but nobody is subscribed.
                        self.unrouted -= 1;
                        let [hi, lo] = p.pkid.to_be_bytes();
                        out.extend_from_slice(&[0x40, 0x03, hi, lo, 0x10]);
                        continue;
                    }
                    wire::PubAck::new(p.pkid).write(&mut out).unwrap();
                    let props = p.properties.unwrap();
                    let request = Message {
                        topic: p.topic.into(),
                        payload: p.payload,
                        qos: QoS::AtLeastOnce,
                        correlation_data: props.correlation_data,
                        response_topic: props.response_topic.map(Into::into),
                        message_expiry: props.message_expiry_interval,
                        content_type: props.content_type.map(Into::into),
                        user_properties: props
                            .user_properties
                            .into_iter()
                            .map(|(k, v)| (k.into(), v.into()))
                            .collect(),
                    };
                    let response = self.answer(&request);
                    encode_publish(response, &mut out);
                }
                Packet::PingReq => {
                    out.extend_from_slice(&[0xD0, 0x00]);
                }
                other => panic!("unexpected packet {other:?}"),
            }
        }
        out
    }

    fn answer(&mut self, request: &Message) -> Message {
        assert_eq!(request.topic, store::REQUEST_TOPIC);
        let parsed = store::parse_request(request);
        let command = parsed.command.clone().unwrap();
        self.requests.push(command.clone());
        self.version += 1;
        let version = Hlc::new(self.version, 0, "store");
        let reply = match command {
            Command::Set { value, .. } => {
                self.holder = Some(value);
                StoreReply::Ok
            }
            Command::VDel { value, .. } => {
                let was = self.holder.as_ref() == Some(&value);
                if was {
                    self.holder = None;
                }
                StoreReply::Integer(i64::from(was))
            }
            Command::KeyNotify { .. } | Command::KeyNotifyStop { .. } => StoreReply::Ok,
            other => panic!("unexpected command {other:?}"),
        };
        store::response_message(
            request.response_topic.as_deref().unwrap(),
            request.correlation_data.clone().unwrap(),
            200,
            Some(&version),
            &reply,
        )
    }
}

/// Appends `message` as a QoS 0 PUBLISH from the broker (correlation data and user properties
/// kept).
fn encode_publish(message: Message, out: &mut BytesMut) {
    let mut publish =
        wire::Publish::from_bytes(message.topic, mqttbytes::QoS::AtMostOnce, message.payload);
    publish.properties = Some(wire::PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: None,
        correlation_data: message.correlation_data,
        user_properties: message
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        subscription_identifiers: Vec::new(),
        content_type: None,
    });
    publish.write(out).unwrap();
}

/// Moves bytes both ways until nothing moves; returns the events seen.
fn run(conn: &mut Connection, broker: &mut ScriptedBroker, now: Now) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let mut moved = false;
        while let Some(bytes) = conn.poll_transmit() {
            moved = true;
            let answer = broker.exchange(&bytes);
            // Deliver the answer in two pieces: framing must not depend on read boundaries.
            let half = answer.len() / 2;
            conn.handle_bytes(now, &answer[..half]);
            conn.handle_bytes(now, &answer[half..]);
        }
        while let Some(e) = conn.poll_event() {
            moved = true;
            events.push(e);
        }
        if !moved {
            return events;
        }
    }
}

#[test]
fn a_full_acquire_release_cycle_in_bytes() {
    let now = start_now();
    let mut conn =
        Connection::new(Config::new("dev-1"), mqtt::Options::new("ignored"), now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let lock = conn.lock_id("L").unwrap();
    let op = conn
        .start(
            now,
            lock,
            Intent::TryAcquire {
                lease: Duration::from_secs(5),
            },
            Options::default(),
        )
        .unwrap();
    conn.connect(now);
    let events = run(&mut conn, &mut broker, now);
    assert_eq!(
        events[0],
        Event::Connected {
            session_present: false
        }
    );
    let token = match &events[1] {
        Event::Lock(lock::Event::Acquired { op: o, token, .. }) if *o == op => token.clone(),
        other => panic!("expected Acquired, got {other:?}"),
    };
    assert_eq!(conn.engine().token(now, lock), Some(&token));
    assert_eq!(conn.session().client_id(), "dev-1");
    assert_eq!(broker.holder.as_deref(), Some(&b"dev-1"[..]));

    let rel = conn
        .start(now, lock, Intent::Release, Options::default())
        .unwrap();
    let events = run(&mut conn, &mut broker, now);
    assert_eq!(
        events,
        vec![Event::Lock(lock::Event::Released {
            op: rel,
            lock,
            was_held: true
        })]
    );
    assert_eq!(broker.holder, None);
    assert_eq!(broker.requests.len(), 2);
}

/// A connection of client `id` holding lock `L` (lease 10 s, renewed every `interval`); the
/// events of the acquisition.
fn holding(
    id: &str,
    interval: Duration,
    now: Now,
) -> (Connection, ScriptedBroker, LockId, Vec<Event>) {
    let mut conn = Connection::new(Config::new(id), mqtt::Options::new(id), now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let lock = conn.lock_id("L").unwrap();
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    let hold = Intent::Hold {
        lease: Duration::from_secs(10),
        interval,
    };
    conn.start(now, lock, hold, Options::default()).unwrap();
    let events = run(&mut conn, &mut broker, now);
    (conn, broker, lock, events)
}

#[test]
fn a_broken_transport_is_reported_and_the_engine_starts_over_on_reconnect() {
    let now = start_now();
    let (mut conn, mut broker, lock, events) = holding("dev-2", Duration::from_secs(2), now);
    assert!(matches!(
        events[0],
        Event::Lock(lock::Event::Acquired { .. })
    ));
    conn.handle_transport_closed(now);
    let events = run(&mut conn, &mut broker, now);
    assert!(matches!(events[0], Event::Disconnected(_)), "{events:?}");
    // A new transport: the engine subscribes again, re-registers KEYNOTIFY and renews at once.
    let mut broker = ScriptedBroker::new();
    let later = now + Duration::from_millis(500);
    conn.connect(later);
    let events = run(&mut conn, &mut broker, later);
    assert_eq!(
        events[0],
        Event::Connected {
            session_present: false
        }
    );
    assert!(
        matches!(events[1], Event::Lock(lock::Event::Renewed { .. })),
        "{events:?}"
    );
    assert!(matches!(broker.requests[0], Command::KeyNotify { .. }));
    assert!(matches!(broker.requests[1], Command::Set { .. }));
    assert!(conn.engine().is_held(later, lock));
    // Keep-alive: nothing to do but ping until the next renewal.
    assert!(conn.poll_timeout().is_some());
}

/// A request the engine gave up at a disconnection never reaches the store: the session does
/// not re-send it on the resumed session (with DUP; the engine sends what it still needs
/// itself), nor does a request made while disconnected go out once the engine has stopped
/// waiting for it.
#[test]
fn given_up_requests_are_not_resent_on_a_resumed_session() {
    let now = start_now();
    let mut conn =
        Connection::new(Config::new("dev-5"), mqtt::Options::new("dev-5"), now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let (l, m) = (conn.lock_id("L").unwrap(), conn.lock_id("M").unwrap());
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    broker.stalled = true;
    let lease = Duration::from_secs(5);
    let timeout = Options::default().with_timeout(Duration::from_secs(1));
    // In flight when the connection breaks, given up at its timeout.
    let first = conn
        .start(now, l, Intent::TryAcquire { lease }, timeout.clone())
        .unwrap();
    run(&mut conn, &mut broker, now);
    conn.handle_transport_closed(now);
    run(&mut conn, &mut broker, now);
    // Made while disconnected, given up at its timeout too.
    let second = conn
        .start(now, m, Intent::TryAcquire { lease }, timeout)
        .unwrap();
    let later = now + Duration::from_secs(2);
    conn.handle_timeout(later);
    let events = run(&mut conn, &mut broker, later);
    for op in [first, second] {
        assert!(
            events.iter().any(|e| matches!(e,
                Event::Lock(lock::Event::Failed { op: o, .. }) if *o == op)),
            "{events:?}"
        );
    }
    // The broker resumes the session: the store sees neither SET.
    let mut broker = ScriptedBroker::new();
    broker.resume = true;
    conn.connect(later);
    let events = run(&mut conn, &mut broker, later);
    assert_eq!(
        events[0],
        Event::Connected {
            session_present: true
        }
    );
    assert_eq!((broker.requests.clone(), broker.dups), (vec![], 0));
    assert_eq!(broker.holder, None);
}

/// A write fenced with the lease waits behind a full in-flight window while the host is
/// suspended past the lease's end: when the host wakes and the window frees, the write is not
/// sent (the monotonic clock missed the suspension; the wall clock did not).
#[test]
fn a_fenced_write_held_up_across_a_suspension_past_its_lease_is_not_sent() {
    let now = start_now();
    let mut options = mqtt::Options::new("dev-6");
    options.max_inflight = 1;
    let mut conn = Connection::new(Config::new("dev-6"), options, now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let lock = conn.lock_id("L").unwrap();
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    let lease = Duration::from_secs(10);
    conn.start(now, lock, Intent::TryAcquire { lease }, Options::default())
        .unwrap();
    run(&mut conn, &mut broker, now);
    assert!(conn.engine().is_held(now, lock));
    // A read takes the only place in flight and is not answered yet; the write waits.
    broker.stalled = true;
    conn.start(now, lock, Intent::Holder, Options::default())
        .unwrap();
    run(&mut conn, &mut broker, now);
    let read = broker.last_packet_id;
    let write = Intent::Access {
        key: Bytes::from_static(b"K"),
        access: lock::Access::Set(Bytes::from_static(b"v")),
        fence: lock::Fence::Held,
    };
    let op = conn.start(now, lock, write, Options::default()).unwrap();
    run(&mut conn, &mut broker, now);
    // The host sleeps 20 s: the monotonic clock moves 1 ms, the wall clock 20 s.
    let woken = Now::new(now.instant + Duration::from_millis(1), now.wall_ms + 20_000);
    let [hi, lo] = read.to_be_bytes();
    conn.handle_bytes(woken, &[0x40, 0x02, hi, lo]);
    conn.handle_timeout(woken);
    broker.stalled = false;
    let events = run(&mut conn, &mut broker, woken);
    assert_eq!(
        broker.last_packet_id, read,
        "nothing published after the read"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Event::Lock(lock::Event::Failed { op: o, error: lock::OpError::LeaseLapsed | lock::OpError::Indeterminate, .. }) if *o == op)),
        "{events:?}"
    );
}

/// A connection of client `id` with one place in flight, taken by a read of the first of
/// `names` that the stalled broker neither acknowledges nor answers: what the test starts next
/// waits in the session. Returns the locks and the read's packet id.
fn behind_a_full_window(
    id: &str,
    names: &[&str],
    now: Now,
) -> (Connection, ScriptedBroker, Vec<LockId>, u16) {
    let mut options = mqtt::Options::new(id);
    options.max_inflight = 1;
    let mut conn = Connection::new(Config::new(id), options, now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let locks: Vec<LockId> = names
        .iter()
        .map(|name| conn.lock_id(name).unwrap())
        .collect();
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    broker.stalled = true;
    conn.start(now, locks[0], Intent::Holder, Options::default())
        .unwrap();
    run(&mut conn, &mut broker, now);
    let read = broker.last_packet_id;
    (conn, broker, locks, read)
}

/// The read's PUBACK frees the window at `at`; the broker answers again from then on.
fn free_the_window(conn: &mut Connection, broker: &mut ScriptedBroker, read: u16, at: Now) {
    let [hi, lo] = read.to_be_bytes();
    conn.handle_bytes(at, &[0x40, 0x02, hi, lo]);
    broker.stalled = false;
    run(conn, broker, at);
}

/// No SET reached the broker.
fn assert_no_set_left(broker: &ScriptedBroker, what: &str) {
    assert!(
        !broker
            .requests
            .iter()
            .any(|c| matches!(c, Command::Set { .. })),
        "{what}: {:?}",
        broker.requests
    );
}

/// A request waiting in the session behind a full in-flight window is taken back when its
/// operation is cancelled: the acknowledgement that frees the window does not let it out.
#[test]
fn a_cancelled_operations_request_waiting_in_the_session_is_not_sent() {
    let now = start_now();
    let (mut conn, mut broker, locks, read) = behind_a_full_window("dev-7", &["L"], now);
    let lease = Duration::from_secs(10);
    let waiting = conn
        .start(
            now,
            locks[0],
            Intent::TryAcquire { lease },
            Options::default(),
        )
        .unwrap();
    run(&mut conn, &mut broker, now);
    conn.cancel(now, waiting).unwrap();
    free_the_window(&mut conn, &mut broker, read, now);
    // (The engine undoes a SET that may have left with a VDEL: that one may go.)
    assert_no_set_left(&broker, "the cancelled SET never left");
    assert_eq!(broker.holder, None);
}

/// Several cancelled requests waiting in a row behind a full window are all taken back, not
/// only as many as the window holds: none of them leaves when the window frees.
#[test]
fn a_run_of_cancelled_requests_waiting_in_the_session_is_not_sent() {
    let now = start_now();
    let (mut conn, mut broker, locks, read) = behind_a_full_window("dev-8", &["L", "M", "N"], now);
    let lease = Duration::from_secs(10);
    let waiting: Vec<OpId> = locks[1..]
        .iter()
        .map(|&lock| {
            conn.start(now, lock, Intent::TryAcquire { lease }, Options::default())
                .unwrap()
        })
        .collect();
    run(&mut conn, &mut broker, now);
    for op in waiting {
        conn.cancel(now, op).unwrap();
    }
    free_the_window(&mut conn, &mut broker, read, now);
    assert_no_set_left(&broker, "no cancelled SET left");
}

#[test]
fn a_request_that_reached_no_store_is_repeated_soon_not_after_the_timeout() {
    let now = start_now();
    let mut conn =
        Connection::new(Config::new("dev-3"), mqtt::Options::new("dev-3"), now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let lock = conn.lock_id("L").unwrap();
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    broker.unrouted = 1;
    let op = conn
        .start(
            now,
            lock,
            Intent::TryAcquire {
                lease: Duration::from_secs(5),
            },
            Options::default(),
        )
        .unwrap();
    assert!(run(&mut conn, &mut broker, now).is_empty());
    assert_eq!(broker.requests.len(), 0, "the store never saw it");
    // The retry is due well before the 10 s request timeout.
    let retry_at = conn.poll_timeout().unwrap();
    assert!(retry_at < now.instant + Duration::from_secs(1));
    let later = now + retry_at.saturating_duration_since(now.instant);
    conn.handle_timeout(later);
    let events = run(&mut conn, &mut broker, later);
    assert!(
        matches!(&events[..], [Event::Lock(lock::Event::Acquired { op: o, .. })] if *o == op),
        "{events:?}"
    );
}

#[test]
fn a_request_the_broker_refuses_fails_with_its_reason() {
    let now = start_now();
    let mut conn =
        Connection::new(Config::new("dev-4"), mqtt::Options::new("dev-4"), now, 3).unwrap();
    let mut broker = ScriptedBroker::new();
    let lock = conn.lock_id("L").unwrap();
    conn.connect(now);
    run(&mut conn, &mut broker, now);
    let op = conn
        .start(now, lock, Intent::Holder, Options::default())
        .unwrap();
    let bytes = conn.poll_transmit().unwrap();
    // Answer the PUBLISH with PUBACK 0x87 (not authorized) instead of forwarding it.
    let pid = {
        let mut buf = BytesMut::from(&bytes[..]);
        match wire::read(&mut buf, 1 << 20).unwrap() {
            Packet::Publish(p) => p.pkid,
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    };
    let [hi, lo] = pid.to_be_bytes();
    conn.handle_bytes(now, &[0x40, 0x03, hi, lo, 0x87]);
    let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Lock(lock::Event::Failed {
            op,
            lock,
            error: lock::OpError::NotDelivered("NotAuthorized".into())
        })]
    );
}

#[test]
fn reauthentication_passes_through_the_connection() {
    let now = start_now();
    let mut options = mqtt::Options::new("dev-3");
    options.authentication_method = Some("K8S-SAT".into());
    options.authentication_data = Some(Bytes::from_static(b"token-1"));
    let mut conn = Connection::new(Config::new("dev-3"), options, now, 3).unwrap();
    conn.connect(now);
    let connect: Vec<u8> = std::iter::from_fn(|| conn.poll_transmit())
        .flatten()
        .collect();
    assert!(connect.ends_with(b"\x16\x00\x07token-1\x00\x05dev-3"));
    conn.handle_bytes(now, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    assert!(std::iter::from_fn(|| conn.poll_event()).any(|e| matches!(e, Event::Connected { .. })));
    std::iter::from_fn(|| conn.poll_transmit()).for_each(drop);

    assert_eq!(
        conn.reauthenticate(now, Bytes::from_static(b"token-2")),
        Ok(true)
    );
    let auth: Vec<u8> = std::iter::from_fn(|| conn.poll_transmit())
        .flatten()
        .collect();
    assert_eq!(&auth[..4], [0xF0, 0x16, 0x19, 0x14]);
    assert!(auth.ends_with(b"\x16\x00\x07token-2"));
    conn.handle_bytes(
        now,
        &[
            0xF0, 0x0C, 0x00, 0x0A, 0x15, 0x00, 0x07, b'K', b'8', b'S', b'-', b'S', b'A', b'T',
        ],
    );
    assert_eq!(conn.poll_event(), Some(Event::Reauthenticated));
}

/// A cancelled request waiting behind one whose time runs out is not sent either: the
/// acknowledgement that frees the window comes after the first's send-by instant, so the
/// session drops the first, and the second, given up by its caller, must not take its place
/// (simulator seed 1008531).
#[test]
fn a_cancelled_request_behind_one_that_runs_out_of_time_is_not_sent() {
    let now = start_now();
    let (mut conn, mut broker, locks, read) = behind_a_full_window("dev-9", &["L", "M", "N"], now);
    let lease = Duration::from_secs(10);
    let short = Options::default().with_timeout(Duration::from_secs(1));
    conn.start(now, locks[1], Intent::TryAcquire { lease }, short)
        .unwrap();
    let cancelled = conn
        .start(
            now,
            locks[2],
            Intent::TryAcquire { lease },
            Options::default(),
        )
        .unwrap();
    run(&mut conn, &mut broker, now);
    conn.cancel(now, cancelled).unwrap();
    // The window frees after the first waiting request's time ran out.
    free_the_window(&mut conn, &mut broker, read, now + Duration::from_secs(2));
    assert_no_set_left(&broker, "neither the late SET nor the cancelled one left");
}

/// A request the engine makes while reading one message and gives up at a later message of the
/// same read never leaves: here a hold's renewal, due as the first notification is read, whose
/// lease the second one reports taken by another client. Only the re-acquiring SET goes out.
#[test]
fn a_request_made_and_given_up_within_one_read_is_not_sent() {
    let now = start_now();
    let (mut conn, mut broker, lock, _) = holding("dev-10", Duration::from_secs(1), now);
    assert!(conn.engine().is_held(now, lock));
    let sets_before = broker.requests.len();
    // Past the renewal time, one read brings two notifications of L: an unrelated-looking one
    // (our own value again, older), then another client's SET, newer than our lease.
    let later = now + Duration::from_secs(2);
    let note = |holder: &'static [u8], ms: u64| {
        let n = Notification {
            key: Bytes::from_static(b"L"),
            op: NotificationOp::Set(Bytes::from_static(holder)),
            version: Some(Hlc::new(ms, 0, "store")),
        };
        store::notification_message("dev-10", &n)
    };
    let mut read = BytesMut::new();
    encode_publish(note(b"dev-10", 1_000_000_000_000), &mut read);
    encode_publish(note(b"other", 1_900_000_000_000), &mut read);
    conn.handle_bytes(later, &read);
    broker.holder = Some(Bytes::from_static(b"other"));
    run(&mut conn, &mut broker, later);
    let sent: Vec<&Command> = broker.requests[sets_before..].iter().collect();
    assert_eq!(
        sent.iter()
            .filter(|c| matches!(c, Command::Set { .. }))
            .count(),
        1,
        "the renewal given up at the second notification stays unsent: {sent:?}"
    );
}
