#![allow(clippy::disallowed_methods)] // the benchmark is the driver: it reads the clock
//! Core benchmarks: the wire path of one lease acquire, the full try_acquire → release cycle
//! through `Connection` (RESP3 and MQTT encode/decode included), and renewing 10 000 held locks.
//!
//! Run: `cargo bench --bench core`.

mod support;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leasedlock::hlc::Hlc;
use leasedlock::mqtt::{self, Session};
use leasedlock::store::{self, Command, Request, SetCondition, SetOptions};
use std::hint::black_box;
use std::num::NonZeroU64;
use std::time::Duration;
use support::{now, pump, Broker, Cycle};

fn connected_session(client_id: &str) -> Session {
    let t = now();
    let mut s = Session::new(mqtt::Options::new(client_id));
    s.connect(t.instant);
    while s.poll_transmit().is_some() {}
    s.handle_bytes(t.instant, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    while s.poll_event().is_some() {}
    s
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    let client_id = "feas-client";
    let acquire = Command::Set {
        key: Bytes::from_static(b"feas-lock"),
        value: Bytes::from_static(b"feas-client"),
        options: SetOptions {
            condition: SetCondition::NotExistsOrEqual,
            expiry: NonZeroU64::new(10_000),
        },
    };
    let ts = Hlc::new(1_795_770_859_732, 0, client_id);
    let corr = Bytes::from_static(&[7; 16]);
    let sender = store::RequestSender::new(client_id).unwrap();

    // Request: typed command → RESP3 → Message → MQTT PUBLISH bytes.
    let mut session = connected_session(client_id);
    g.bench_function("lease_acquire_request_to_mqtt_bytes", |b| {
        b.iter(|| {
            let request = Request {
                command: acquire.clone(),
                timestamp: ts.clone(),
                fencing_token: None,
            };
            let message = request
                .to_message(&sender, corr.clone(), Duration::from_secs(10))
                .unwrap();
            session.publish(now().instant, message).unwrap();
            let bytes = session.poll_transmit().unwrap();
            // Acknowledge, so the in-flight window never fills, and take the acknowledgement
            // (its event hands the message back) as a driver does.
            session.handle_bytes(now().instant, &support::puback_for(&bytes));
            black_box(session.poll_event());
            black_box(bytes)
        })
    });

    // Reply: MQTT PUBLISH bytes → Message → RESP3 → typed reply with its version.
    let mut broker = Broker::new(client_id);
    let mut client = connected_session("bench");
    let mut req = connected_session(client_id);
    let request = Request {
        command: acquire.clone(),
        timestamp: ts.clone(),
        fencing_token: None,
    };
    req.publish(
        now().instant,
        request
            .to_message(&sender, corr.clone(), Duration::from_secs(10))
            .unwrap(),
    )
    .unwrap();
    let mut reply = BytesMut::new();
    broker.answer(&req.poll_transmit().unwrap(), &mut reply);
    let reply = reply.split_off(4).freeze(); // drop the PUBACK, keep the response PUBLISH
    g.bench_function("lease_acquire_reply_from_mqtt_bytes", |b| {
        b.iter(|| {
            client.handle_bytes(now().instant, &reply);
            match client.poll_event() {
                Some(mqtt::Event::Message(m)) => black_box(store::parse_response(&m).unwrap()),
                other => panic!("expected a message, got {other:?}"),
            }
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    let mut cycle = Cycle::new();
    g.throughput(Throughput::Elements(1));
    g.bench_function("try_acquire_release_cycle", |b| b.iter(|| cycle.run()));

    // One client holding 10 000 locks: the cost of one renewal round, per renewal.
    const LOCKS: u64 = 10_000;
    g.throughput(Throughput::Elements(LOCKS));
    g.sample_size(10);
    g.bench_function("renew_10k_held_locks", |b| {
        b.iter_batched_ref(
            || {
                let (conn, broker, scratch, t) = support::holding("holder", LOCKS as usize);
                (conn, broker, scratch, t + Duration::from_secs(10))
            },
            |(conn, broker, scratch, at)| {
                conn.handle_timeout(*at);
                let renewed = pump(conn, broker, *at, scratch);
                assert_eq!(renewed as u64, LOCKS);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, wire, engine);
criterion_main!(benches);
