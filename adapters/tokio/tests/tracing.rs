//! The driver's traces, caught by a small hand-written subscriber: a lost lease is a WARN event
//! with the lock's name and the reason, in the operation's span; a reconnect is recorded with
//! the cause of the outage.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_testkit::{Broker, StoreEmulator};
use leasedlock_tokio::leasedlock::lock::{LossReason, Options};
use leasedlock_tokio::{connect, HoldEvent, Settings};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Bound on any single wait; reaching it fails the test.
const WAIT: Duration = Duration::from_secs(20);

/// The fields of one event or span, as text.
#[derive(Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

/// A span's name and fields.
type SpanFields = (&'static str, BTreeMap<&'static str, String>);

/// An event of the driver, with its level, fields and its parent span.
struct Recorded {
    level: Level,
    fields: BTreeMap<&'static str, String>,
    span: Option<SpanFields>,
}

impl Recorded {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn message(&self) -> &str {
        self.field("message").unwrap_or_default()
    }
}

#[derive(Default)]
struct Recorder {
    next_span: AtomicU64,
    spans: Mutex<BTreeMap<u64, SpanFields>>,
    events: Arc<Mutex<Vec<Recorded>>>,
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("leasedlock")
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        let name = span.metadata().name();
        self.spans.lock().unwrap().insert(id, (name, fields.0));
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = event
            .parent()
            .and_then(|id| self.spans.lock().unwrap().get(&id.into_u64()).cloned());
        self.events.lock().unwrap().push(Recorded {
            level: *event.metadata().level(),
            fields: fields.0,
            span,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("no outcome within {WAIT:?}"))
}

#[test]
fn a_lost_lease_is_a_warning_with_its_lock_and_reason_and_a_reconnect_has_its_cause() {
    let mut broker = Broker::start();
    if !broker.can_restart() {
        eprintln!("skipped: the broker cannot restart");
        return;
    }
    let _store = StoreEmulator::start(broker.addr());
    let recorder = Recorder::default();
    let events = recorder.events.clone();
    // The runtime is current-thread: the driver task runs on this thread, under this subscriber.
    let _default = tracing::subscriber::set_default(recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut settings = Settings::new("127.0.0.1", broker.addr().port(), "traced-client");
        settings.reconnect_max = Duration::from_millis(300);
        let (client, _task) = connect(&settings).unwrap();
        let lease = Duration::from_secs(2);
        let interval = Duration::from_millis(500);
        let mut hold = within(client.hold("traced-lock", lease, interval, Options::default()))
            .await
            .unwrap();
        // The broker goes away for good: the hold can no longer trust its lease.
        broker.stop();
        loop {
            match within(hold.next_event()).await {
                Some(HoldEvent::Lost(reason)) => {
                    assert_eq!(reason, LossReason::Disconnected);
                    break;
                }
                Some(HoldEvent::Renewed(_)) => {}
                other => panic!("expected the loss, got {other:?}"),
            }
        }
        broker.restart();
        loop {
            match within(hold.next_event()).await {
                Some(HoldEvent::Acquired(_)) => break,
                Some(HoldEvent::Lost(_)) => {}
                other => panic!("expected the lock won again, got {other:?}"),
            }
        }
        assert!(within(hold.close()).await.unwrap());
    });
    let events = events.lock().unwrap();
    let lost = events
        .iter()
        .find(|e| e.message().starts_with("lease lost"))
        .expect("a trace of the loss");
    assert_eq!(lost.level, Level::WARN);
    assert_eq!(lost.field("lock"), Some("traced-lock"));
    assert_eq!(lost.field("reason"), Some("Disconnected"));
    let (span, fields) = lost.span.as_ref().expect("in the hold's span");
    assert_eq!(*span, "lock_op");
    assert_eq!(fields.get("op").map(String::as_str), Some("hold"));
    assert_eq!(fields.get("lock").map(String::as_str), Some("traced-lock"));

    let ended = events
        .iter()
        .find(|e| e.message() == "the connection to the broker ended")
        .expect("a trace of the disconnect");
    assert_eq!(ended.level, Level::WARN);
    assert_eq!(ended.field("cause"), Some("TransportClosed"));

    let reconnected = events
        .iter()
        .find(|e| e.message() == "reconnected to the broker")
        .expect("a trace of the reconnect");
    assert_eq!(reconnected.level, Level::INFO);
    assert_eq!(
        reconnected.field("cause"),
        Some("the connection ended: TransportClosed")
    );
    let failed: u64 = reconnected
        .field("failed_attempts")
        .unwrap()
        .parse()
        .unwrap();
    let attempts = [
        "cannot reach the broker",
        "the broker refused the connection",
        "the connection ended before the broker accepted it",
    ];
    let traced = events
        .iter()
        .filter(|e| attempts.contains(&e.message()))
        .count();
    assert_eq!(failed, traced as u64, "every failed attempt is traced");
    // Renewals are frequent: never above DEBUG.
    assert!(events
        .iter()
        .filter(|e| e.message() == "lease renewed")
        .all(|e| e.level == Level::TRACE));
}
