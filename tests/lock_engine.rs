//! Transcript tests of the lock engine through its public API: every input is given explicitly, and
//! every request the engine publishes is checked.

use bytes::Bytes;
use leasedlock::hlc::Hlc;
use leasedlock::lock::{
    Access, Accessed, Client, Config, EditAction, EditOutcome, Event, Fence, Holder, IntentError,
    LockId, LossReason, OpError, OpId, Options, Output,
};
use leasedlock::store::{
    self, Command, Notification, NotificationOp, ServiceError, SetCondition, StoreReply,
};
use leasedlock::{Message, Now};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// The test is the driver: it reads the clock once and makes up every later reading.
#[allow(clippy::disallowed_methods)]
fn start_now() -> Now {
    Now::new(Instant::now(), 1_800_000_000_000)
}

/// A request the engine published, decoded the way the service decodes it.
struct Sent {
    message: Message,
    command: Command,
}

impl Sent {
    fn verb(&self) -> &'static str {
        match &self.command {
            Command::Set { .. } => "SET",
            Command::Get { .. } => "GET",
            Command::Del { .. } => "DEL",
            Command::VDel { .. } => "VDEL",
            Command::KeyNotify { .. } => "KEYNOTIFY",
            Command::KeyNotifyStop { .. } => "KEYNOTIFY STOP",
        }
    }
    fn prop(&self, name: &str) -> Option<&str> {
        self.message.user_property(name)
    }
}

struct T {
    client: Client,
    now: Now,
    version_ms: u64,
    sent: Vec<Sent>,
    events: Vec<Event>,
    subscribes: Vec<String>,
}

impl T {
    fn new(config: Config) -> T {
        let now = start_now();
        let client = Client::new(config, now, 7).unwrap();
        T {
            client,
            now,
            version_ms: 1_800_000_000_000,
            sent: Vec::new(),
            events: Vec::new(),
            subscribes: Vec::new(),
        }
    }

    fn connected(id: &str) -> T {
        T::connected_with(Config::new(id))
    }

    fn connected_with(config: Config) -> T {
        let mut t = T::new(config);
        t.connect();
        t
    }

    /// A client whose edits do not raise the key's fence before the user sees the value.
    fn connected_unfenced(id: &str) -> T {
        let mut config = Config::new(id);
        config.raise_edit_fence = false;
        T::connected_with(config)
    }

    fn connect(&mut self) {
        self.client.handle_connected(self.now);
        self.drain();
        let subs = std::mem::take(&mut self.subscribes);
        assert_eq!(subs.len(), 2, "response topic and notification filter");
        for s in subs {
            self.client.handle_subscribed(self.now, &s, true);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.client.poll_output() {
            match o {
                Output::Request(request) => {
                    let message = self.client.to_message(&request);
                    let parsed = store::parse_request(&message);
                    let command = parsed.command.clone().expect("engine sends valid commands");
                    assert!(parsed.timestamp.is_ok(), "every request carries __ts");
                    self.sent.push(Sent { message, command });
                }
                Output::Subscribe(s) => self.subscribes.push(s),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.client.handle_timeout(self.now);
        self.drain();
    }

    /// Moves time to the engine's next deadline.
    fn run_to_timeout(&mut self) {
        let at = self.client.poll_timeout().expect("a deadline");
        let d = at.saturating_duration_since(self.now.instant);
        self.advance(d);
    }

    fn take_sent(&mut self) -> Vec<Sent> {
        self.drain();
        std::mem::take(&mut self.sent)
    }

    fn take_one(&mut self, verb: &str) -> Sent {
        let sent = self.take_sent();
        assert_eq!(
            sent.iter().map(Sent::verb).collect::<Vec<_>>(),
            vec![verb],
            "expected exactly one {verb}"
        );
        sent.into_iter().next().unwrap()
    }

    /// Releases `lock`; its VDEL (among what went out) deletes it.
    fn release_deleting(&mut self, lock: LockId) {
        self.client
            .release(self.now, lock, Options::default())
            .unwrap();
        let vdel = self
            .take_sent()
            .into_iter()
            .find(|s| s.verb() == "VDEL")
            .unwrap();
        self.reply(&vdel, StoreReply::Integer(1), None);
    }

    /// The write of a fenced edit and the VDEL that goes out right behind it.
    fn take_write_and_release(&mut self, verb: &str) -> (Sent, Sent) {
        let sent = self.take_sent();
        assert_eq!(
            sent.iter().map(Sent::verb).collect::<Vec<_>>(),
            vec![verb, "VDEL"],
            "the write, then the release right behind it"
        );
        let mut sent = sent.into_iter();
        (sent.next().unwrap(), sent.next().unwrap())
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn next_version(&mut self) -> Hlc {
        self.version_ms += 1;
        Hlc::new(self.version_ms, 0, "store")
    }

    fn reply(&mut self, to: &Sent, reply: StoreReply, version: Option<Hlc>) {
        let m = store::response_message(
            to.message.response_topic.as_deref().unwrap(),
            to.message.correlation_data.clone().unwrap(),
            200,
            version.as_ref(),
            &reply,
        );
        self.client.handle_message(self.now, &m);
        self.drain();
    }

    fn ok(&mut self, to: &Sent) -> Hlc {
        let v = self.next_version();
        self.reply(to, StoreReply::Ok, Some(v.clone()));
        v
    }

    fn notify(&mut self, key: &str, op: NotificationOp, version: Option<Hlc>) {
        let n = Notification {
            key: Bytes::copy_from_slice(key.as_bytes()),
            op,
            version,
        };
        let m = store::notification_message(&self.client.config().client_id, &n);
        self.client.handle_message(self.now, &m);
        self.drain();
    }

    fn lock(&mut self, name: &str) -> LockId {
        self.client.lock_id(name).unwrap()
    }
}

fn set_parts(s: &Sent) -> (Bytes, Bytes, SetCondition, Option<u64>) {
    match &s.command {
        Command::Set {
            key,
            value,
            options,
        } => (
            key.clone(),
            value.clone(),
            options.condition,
            options.expiry.map(|e| e.get()),
        ),
        other => panic!("not a SET: {other:?}"),
    }
}

fn lease_set(s: &Sent, key: &str, holder: &str, lease_ms: u64) {
    assert_eq!(
        set_parts(s),
        (
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::copy_from_slice(holder.as_bytes()),
            SetCondition::NotExistsOrEqual,
            Some(lease_ms)
        )
    );
    assert_eq!(
        s.prop("__ft"),
        None,
        "acquire and renew carry no fencing token"
    );
}

fn acquired(events: &[Event], op: OpId) -> leasedlock::FencingToken {
    events
        .iter()
        .find_map(|e| match e {
            Event::Acquired { op: o, token, .. } if *o == op => Some(token.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Acquired for {op:?} in {events:?}"))
}

#[test]
fn subscribes_first_and_sends_nothing_before_both_subacks() {
    let mut t = T::new(Config::new("c1"));
    let lock = t.lock("L");
    let op = t
        .client
        .try_acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    t.drain();
    assert!(t.sent.is_empty(), "nothing before the connection");
    t.client.handle_connected(t.now);
    t.drain();
    assert_eq!(
        t.subscribes,
        vec![
            store::response_topic("c1"),
            store::notification_filter("c1")
        ]
    );
    t.client
        .handle_subscribed(t.now, &store::response_topic("c1"), true);
    t.drain();
    assert!(
        t.sent.is_empty(),
        "still waiting for the notification SUBACK"
    );
    t.client
        .handle_subscribed(t.now, &store::notification_filter("c1"), true);
    t.drain();
    let set = t.take_one("SET");
    lease_set(&set, "L", "c1", 10_000);
    assert_eq!(set.message.topic, store::REQUEST_TOPIC);
    assert_eq!(set.prop("__srcId"), Some("c1"));
    assert_eq!(set.message.message_expiry, Some(10));
    let _ = op;
}

#[test]
fn try_acquire_gives_the_token_until_send_time_plus_lease_minus_margin() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let start = t.now.instant;
    let op = t
        .client
        .try_acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    t.advance(300 * MS); // the reply is slow: validity still counts from the send
    let v = t.ok(&set);
    let token = acquired(&t.take_events(), op);
    assert_eq!(token.as_hlc(), &v);
    let margin = t.client.config().margin(10 * SEC);
    let until = start + 10 * SEC - margin;
    assert_eq!(t.client.valid_until(lock), Some(until));
    assert_eq!(t.client.token(t.now, lock), Some(&token));
    assert_eq!(t.client.leases_held(), 1);
    // Just before the end it is held, at the end it is not, and the user is told.
    let before = Now::new(until - MS, 0);
    assert!(t.client.is_held(before, lock));
    assert_eq!(t.client.poll_timeout(), Some(until));
    t.run_to_timeout();
    assert!(!t.client.is_held(t.now, lock));
    assert_eq!(t.client.leases_held(), 0);
    assert_eq!(
        t.take_events(),
        vec![Event::Expired {
            lock,
            reason: LossReason::ExpiredLocally
        }]
    );
}

#[test]
fn try_acquire_busy_ends_the_operation() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .try_acquire(t.now, lock, SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    let v = t.next_version();
    t.reply(&set, StoreReply::Integer(-1), Some(v));
    assert_eq!(t.take_events(), vec![Event::Busy { op, lock }]);
    assert_eq!(t.client.operations_in_progress(), 0);
    assert!(!t.client.is_held(t.now, lock));
}

#[test]
fn acquire_registers_keynotify_before_trying_and_retries_on_delete() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET"]
    );
    t.ok(&sent[0]);
    let busy_version = t.next_version();
    t.reply(&sent[1], StoreReply::Integer(-1), Some(busy_version));
    assert!(t.take_events().is_empty());
    // The holder releases: DELETE arrives, and the waiter, which has lost no race for the lock
    // (no herd), retries at once.
    let del_version = t.next_version();
    t.notify("L", NotificationOp::Delete, Some(del_version));
    let retry = t.take_one("SET");
    lease_set(&retry, "L", "c1", 5000);
    let v = t.ok(&retry);
    let events = t.take_events();
    assert_eq!(acquired(&events, op).as_hlc(), &v);
    // Nobody watches the key any more: KEYNOTIFY STOP.
    let stop = t.take_one("KEYNOTIFY STOP");
    assert_eq!(
        stop.command,
        Command::KeyNotifyStop {
            key: Bytes::from_static(b"L")
        }
    );
}

#[test]
fn a_lost_delete_never_hangs_a_waiter_the_fallback_retries() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .acquire(t.now, lock, 2 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    // No DELETE ever arrives. Within one lease the waiter checks again by itself.
    let at = t.client.poll_timeout().unwrap();
    assert!(at <= t.now.instant + 2 * SEC);
    t.run_to_timeout();
    let retry = t.take_one("SET");
    t.ok(&retry);
    acquired(&t.take_events(), op);
}

#[test]
fn after_a_reconnect_the_waiter_resubscribes_renotifies_and_retries() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .acquire(t.now, lock, 30 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    t.client.handle_disconnected(t.now);
    t.advance(SEC);
    assert!(t.take_sent().is_empty());
    t.connect();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET"],
        "re-register, then re-check at once (a DELETE may have been missed)"
    );
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    acquired(&t.take_events(), op);
}

#[test]
fn timeout_and_cancel_end_the_wait_and_stop_keynotify_once_nobody_watches() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let a = t
        .client
        .acquire(t.now, lock, SEC, Options::default().with_timeout(3 * SEC))
        .unwrap();
    let b = t
        .client
        .acquire(t.now, lock, SEC, Options::default().with_session_id("b"))
        .unwrap();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET", "SET"],
        "one registration for two waiters (two holder values)"
    );
    assert_eq!(sent[1].message.message_expiry, Some(3));
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    t.reply(&sent[2], StoreReply::Integer(-1), None);
    t.client.cancel(t.now, b).unwrap();
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op: b,
            lock,
            error: OpError::Cancelled
        }]
    );
    assert!(t.take_sent().is_empty(), "a still waits: no STOP yet");
    // a re-checks by itself (fallback) until its timeout.
    while t.client.operations_in_progress() > 0 {
        t.run_to_timeout();
        for s in t.take_sent() {
            if s.verb() == "SET" {
                t.reply(&s, StoreReply::Integer(-1), None);
            } else {
                assert_eq!(s.verb(), "KEYNOTIFY STOP");
                t.sent.push(s);
            }
        }
    }
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op: a,
            lock,
            error: OpError::Timeout
        }]
    );
    t.take_one("KEYNOTIFY STOP");
}

#[test]
fn hold_renews_with_the_session_id_and_announces_newer_tokens() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let opts = Options::default().with_session_id("s9");
    let hold = t.client.hold(t.now, lock, 10 * SEC, 3 * SEC, opts).unwrap();
    let sent = t.take_sent();
    assert_eq!(sent[1].verb(), "SET");
    lease_set(&sent[1], "L", "c1:s9", 10_000);
    t.ok(&sent[0]);
    let v1 = t.ok(&sent[1]);
    assert_eq!(acquired(&t.take_events(), hold).as_hlc(), &v1);
    let mut last = v1;
    for _ in 0..3 {
        t.run_to_timeout();
        let renew = t.take_one("SET");
        lease_set(&renew, "L", "c1:s9", 10_000);
        let v = t.ok(&renew);
        assert!(v > last);
        match t.take_events().as_slice() {
            [Event::Renewed { op, token, .. }] => {
                assert_eq!(*op, hold);
                assert_eq!(token.as_hlc(), &v);
            }
            other => panic!("expected Renewed, got {other:?}"),
        }
        assert_eq!(t.client.token(t.now, lock).unwrap().as_hlc(), &v);
        last = v;
    }
}

#[test]
fn a_hold_whose_renewals_go_unanswered_is_lost_by_its_validity_end_then_reacquires() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 4 * SEC, SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    let acquire_sent_at = t.now.instant;
    t.ok(&sent[1]);
    t.take_events();
    let until = acquire_sent_at + 4 * SEC - t.client.config().margin(4 * SEC);
    // Renewals are sent but never answered.
    let before = t.client.stats();
    let mut sets = 0;
    let mut lost_at = None;
    while lost_at.is_none() {
        t.run_to_timeout();
        sets += t.take_sent().iter().filter(|s| s.verb() == "SET").count() as u64;
        for e in t.take_events() {
            if let Event::Lost { op, reason, .. } = e {
                assert_eq!(op, hold);
                assert_eq!(reason, LossReason::ExpiredLocally);
                lost_at = Some(t.now.instant);
            }
        }
    }
    assert!(lost_at.unwrap() <= until, "Lost no later than validity end");
    assert!(!t.client.is_held(t.now, lock));
    // The last SET is the first try to acquire again. Every renewal but the first was sent
    // because the one before it timed out; the last renewal was dropped by the loss.
    let stats = t.client.stats();
    assert_eq!(stats.requests_sent - before.requests_sent, sets);
    let renewals = sets - 1;
    assert_eq!(
        stats.request_timeouts - before.request_timeouts,
        renewals - 1
    );
    assert_eq!(stats.retries - before.retries, renewals - 1);
    // It acquires again and announces the new token.
    loop {
        let sets: Vec<Sent> = t.take_sent();
        if let Some(s) = sets.iter().find(|s| s.verb() == "SET") {
            let v = t.ok(s);
            assert_eq!(acquired(&t.take_events(), hold).as_hlc(), &v);
            break;
        }
        t.run_to_timeout();
    }
}

#[test]
fn no_renewal_ever_starts_for_a_failed_acquire() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 4 * SEC, SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(
        &sent[1],
        StoreReply::Error(ServiceError::NotAuthorized),
        None,
    );
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op: hold,
            lock,
            error: OpError::Service(ServiceError::NotAuthorized)
        }]
    );
    let stop = t.take_one("KEYNOTIFY STOP");
    t.ok(&stop);
    assert_eq!(t.client.poll_timeout(), None, "no timer left: no renewal");
}

#[test]
fn release_wins_over_a_renewal_in_flight() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 10 * SEC, 2 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    t.take_events();
    t.run_to_timeout();
    let renewal = t.take_one("SET");
    let rel = t.client.release(t.now, lock, Options::default()).unwrap();
    let sent = t.take_sent();
    let vdel = sent.iter().find(|s| s.verb() == "VDEL").unwrap();
    assert_eq!(
        vdel.command,
        Command::VDel {
            key: Bytes::from_static(b"L"),
            value: Bytes::from_static(b"c1")
        }
    );
    assert!(!t.client.is_held(t.now, lock), "released: no token");
    // The renewal's success arrives after the release: it must not resurrect the hold.
    t.ok(&renewal);
    t.reply(vdel, StoreReply::Integer(1), None);
    assert_eq!(
        t.take_events(),
        vec![
            Event::HoldEnded { op: hold, lock },
            Event::Released {
                op: rel,
                lock,
                was_held: true
            }
        ]
    );
    assert!(!t.client.is_held(t.now, lock));
    assert_eq!(t.client.operations_in_progress(), 0);
    assert_eq!(t.client.stats().unmatched_responses, 1);
    // Nothing renews any more.
    while t.client.poll_timeout().is_some() {
        t.run_to_timeout();
    }
    assert!(t.take_sent().iter().all(|s| s.verb() != "SET"));
}

#[test]
fn release_reports_whether_the_lock_was_ours() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let rel = t
        .client
        .release(t.now, lock, Options::default().with_session_id("x"))
        .unwrap();
    let vdel = t.take_one("VDEL");
    assert_eq!(
        vdel.command,
        Command::VDel {
            key: Bytes::from_static(b"L"),
            value: Bytes::from_static(b"c1:x")
        }
    );
    t.reply(&vdel, StoreReply::Integer(-1), None);
    assert_eq!(
        t.take_events(),
        vec![Event::Released {
            op: rel,
            lock,
            was_held: false
        }]
    );
}

#[test]
fn an_abandoned_win_is_released_silently_and_only_that_lease() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .try_acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    t.ok(&set);
    let token = acquired(&t.take_events(), op);
    // A token the client never won, or a lock it does not hold, is not released.
    let other = leasedlock::FencingToken::from(t.next_version());
    assert!(!t.client.abandon(t.now, lock, &other));
    let free = t.lock("M");
    assert!(!t.client.abandon(t.now, free, &token));
    assert!(t.take_sent().is_empty());
    // The win's caller is gone: the lease is released with no event, and no longer held.
    assert!(t.client.abandon(t.now, lock, &token));
    assert!(!t.client.is_held(t.now, lock));
    let vdel = t.take_one("VDEL");
    t.reply(&vdel, StoreReply::Integer(1), None);
    assert_eq!(t.take_events(), vec![]);
    assert_eq!(t.client.operations_in_progress(), 0);
    // Once is enough.
    assert!(!t.client.abandon(t.now, lock, &token));
}

#[test]
fn holder_reads_the_lock_value() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let a = t.client.holder(t.now, lock, Options::default()).unwrap();
    let get = t.take_one("GET");
    t.reply(&get, StoreReply::Value(Bytes::from_static(b"other")), None);
    let b = t.client.holder(t.now, lock, Options::default()).unwrap();
    let get = t.take_one("GET");
    t.reply(&get, StoreReply::NotFound, None);
    assert_eq!(
        t.take_events(),
        vec![
            Event::Holder {
                op: a,
                lock,
                holder: Some(Holder::from_value("other"))
            },
            Event::Holder {
                op: b,
                lock,
                holder: None
            }
        ]
    );
}

/// Starts an edit of key `K` and answers it up to its GET, which it returns with the op and the
/// token of the lease.
fn edit_to_get(t: &mut T, lock: LockId) -> (OpId, Hlc, Sent) {
    let op = t
        .client
        .edit(
            t.now,
            lock,
            Bytes::from_static(b"K"),
            5 * SEC,
            Options::default(),
        )
        .unwrap();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET"]
    );
    t.ok(&sent[0]);
    let token = t.ok(&sent[1]);
    let get = t.take_one("GET");
    assert_eq!(
        get.command,
        Command::Get {
            key: Bytes::from_static(b"K")
        }
    );
    (op, token, get)
}

/// Runs an edit of a client without the edit fence up to the EditRequested event; returns (op,
/// token, current).
fn edit_to_request(t: &mut T, lock: LockId, current: StoreReply) -> (OpId, Hlc, Option<Bytes>) {
    let (op, token, get) = edit_to_get(t, lock);
    t.reply(&get, current, None);
    match t.take_events().as_slice() {
        [Event::EditRequested { op: o, current, .. }] if *o == op => (op, token, current.clone()),
        other => panic!("expected EditRequested, got {other:?}"),
    }
}

#[test]
fn edit_reads_writes_with_the_newest_token_then_releases() {
    let mut t = T::connected_unfenced("c1");
    let lock = t.lock("L");
    let (op, token, current) = edit_to_request(&mut t, lock, StoreReply::NotFound);
    assert_eq!(current, None, "absent");
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"1")))
        .unwrap();
    let set = t.take_one("SET");
    assert_eq!(
        set_parts(&set),
        (
            Bytes::from_static(b"K"),
            Bytes::from_static(b"1"),
            SetCondition::Always,
            None
        )
    );
    assert_eq!(set.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&set);
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["VDEL", "KEYNOTIFY STOP"]
    );
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Written
        }]
    );
    assert!(!t.client.is_held(t.now, lock));
}

#[test]
fn edit_tells_empty_from_absent_and_deleting_an_absent_key_succeeds() {
    let mut t = T::connected_unfenced("c1");
    let lock = t.lock("L");
    let (op, _, current) = edit_to_request(&mut t, lock, StoreReply::Value(Bytes::new()));
    assert_eq!(current, Some(Bytes::new()), "empty, not absent");
    t.client
        .complete_edit(t.now, op, EditAction::Delete)
        .unwrap();
    let del = t.take_one("DEL");
    assert!(del.prop("__ft").is_some());
    t.reply(&del, StoreReply::Integer(0), None);
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Deleted
        }]
    );
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().filter(|s| s.verb() == "DEL").count(),
        0,
        "no retry"
    );
    assert_eq!(sent[0].verb(), "VDEL");
}

#[test]
fn edit_surfaces_a_fencing_rejection_and_releases_also_on_abort() {
    let mut t = T::connected_unfenced("c1");
    let lock = t.lock("L");
    let (op, _, _) = edit_to_request(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"8")))
        .unwrap();
    let set = t.take_one("SET");
    t.reply(
        &set,
        StoreReply::Error(ServiceError::FencingTokenLowerVersion),
        None,
    );
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::Service(ServiceError::FencingTokenLowerVersion)
        }]
    );
    assert_eq!(
        ServiceError::FencingTokenLowerVersion.text(),
        "the request fencing token is a lower version than the fencing token protecting the resource"
    );
    let vdel = t.take_sent().into_iter().find(|s| s.verb() == "VDEL");
    t.reply(
        &vdel.expect("released after the error"),
        StoreReply::Integer(1),
        None,
    );
    // Abort: nothing written, lock released.
    let (op, _, _) = edit_to_request(&mut t, lock, StoreReply::NotFound);
    t.client
        .complete_edit(t.now, op, EditAction::Abort)
        .unwrap();
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Unchanged
        }]
    );
    assert_eq!(t.take_sent()[0].verb(), "VDEL");
}

#[test]
fn edit_timeout_while_waiting_for_the_user_releases() {
    let mut t = T::connected_unfenced("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .edit(
            t.now,
            lock,
            Bytes::from_static(b"K"),
            20 * SEC,
            Options::default().with_timeout(2 * SEC),
        )
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    let get = t.take_one("GET");
    t.reply(&get, StoreReply::NotFound, None);
    t.take_events();
    t.advance(2 * SEC);
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::Timeout
        }]
    );
    assert_eq!(t.take_sent()[0].verb(), "VDEL");
    assert_eq!(
        t.client.complete_edit(t.now, op, EditAction::Delete),
        Err(leasedlock::lock::IntentError::NoSuchOperation)
    );
}

#[test]
fn every_request_carries_the_clock_and_a_far_ahead_broker_never_loses_events() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let far = Hlc::new(t.now.wall_ms + 3_600_000, 0, "store");
    // An applied SET with a version an hour ahead is still reported as acquired.
    let op = t
        .client
        .try_acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    let ts: Hlc = set.prop("__ts").unwrap().parse().unwrap();
    assert_eq!(ts.wall_ms, t.now.wall_ms);
    t.reply(&set, StoreReply::Ok, Some(far.clone()));
    assert_eq!(acquired(&t.take_events(), op).as_hlc(), &far);
    assert_eq!(t.client.stats().clock_errors, 1);
    // A DELETE with a far-ahead version still wakes a waiter.
    let lock2 = t.lock("M");
    let w = t
        .client
        .acquire(t.now, lock2, 10 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    let far2 = Hlc::new(t.now.wall_ms + 3_600_001, 0, "store");
    t.notify("M", NotificationOp::Delete, Some(far2));
    let retry = t.take_one("SET"); // no race lost: at once
    t.ok(&retry);
    acquired(&t.take_events(), w);
    t.take_one("KEYNOTIFY STOP");
    // A read whose version is far ahead fails with a clear clock error.
    let h = t.client.holder(t.now, lock2, Options::default()).unwrap();
    let get = t.take_one("GET");
    let far3 = Hlc::new(t.now.wall_ms + 3_600_002, 0, "store");
    t.reply(
        &get,
        StoreReply::Value(Bytes::from_static(b"c1")),
        Some(far3),
    );
    match t.take_events().as_slice() {
        [Event::Failed {
            op,
            error: OpError::Clock(_),
            ..
        }] => assert_eq!(*op, h),
        other => panic!("expected a clock failure, got {other:?}"),
    }
    // Later requests still carry a __ts that moves forward.
    t.client.holder(t.now, lock2, Options::default()).unwrap();
    let next: Hlc = t.take_one("GET").prop("__ts").unwrap().parse().unwrap();
    assert!(next > ts);
}

/// A client of `name` that waits for the lock, lost a race right after a DELETE to `winner` (so
/// it is in a herd), and follows `winner`, which holds the lock; the acquisition's id.
fn waiting_behind(t: &mut T, name: &str, winner: &'static [u8]) -> OpId {
    let lock = t.lock(name);
    let op = t
        .client
        .acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    // Alone so far: the DELETE is answered at once, and the SET loses to another waiter's.
    t.notify(name, NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.reply(&set, StoreReply::Integer(-1), None);
    t.notify(name, NotificationOp::Set(Bytes::from_static(winner)), None);
    assert!(t.take_sent().is_empty());
    op
}

/// A new acquisition after a release registers again (the release's lock went idle), and holds
/// its SET back.
fn registered_holding_back(t: &mut T) {
    let sent = t.take_sent();
    let verbs: Vec<_> = sent.iter().map(Sent::verb).collect();
    assert_eq!(verbs.last(), Some(&"KEYNOTIFY"), "{verbs:?}");
    assert!(!verbs.contains(&"SET"), "{verbs:?}");
    t.ok(sent.last().unwrap());
}

/// A client of `name` that took the lock from `from` at its DELETE after losing a race to it (so
/// it follows `from`), released it, and waits for it again: the new acquisition's id (registered,
/// its SET held back).
fn waiting_again_after_taking_over(t: &mut T, name: &str, from: &'static [u8]) -> OpId {
    let op = waiting_behind(t, name, from);
    // It lost to `from`: that holder's DELETE is its turn, and its SET goes at once.
    t.notify(name, NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.ok(&set);
    acquired(&t.take_events(), op);
    let lock = t.lock(name);
    t.release_deleting(lock);
    t.notify(name, NotificationOp::Delete, None);
    let again = t
        .client
        .acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    registered_holding_back(t);
    again
}

/// The engine's next deadline, from now.
fn next_deadline(t: &T) -> Duration {
    t.client.poll_timeout().unwrap() - t.now.instant
}

#[test]
fn in_a_herd_a_waiter_sends_at_once_only_after_the_delete_of_the_holder_it_follows() {
    let mut t = T::connected("c1");
    // c1 lost to c2, took the lock from c2 at its DELETE, and follows c2 from now on. After
    // its release, in a herd, its next acquisition holds back; c3 takes the lock meanwhile, so
    // that SET is never sent.
    let again = waiting_again_after_taking_over(&mut t, "L", b"c2");
    let held = next_deadline(&t);
    assert!(held > Duration::ZERO && held < SEC, "{held:?}");
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c3")), None);
    t.advance(held);
    let sent: Vec<_> = t.take_sent().iter().map(|s| s.verb().to_string()).collect();
    assert!(sent.is_empty(), "the held-back SET was dropped: {sent:?}");
    // c3's DELETE is not c1's turn: its SET is held back, and dropped when c2 takes the lock.
    t.notify("L", NotificationOp::Delete, None);
    assert!(t.take_sent().is_empty());
    let held = next_deadline(&t);
    assert!(held > Duration::ZERO && held < SEC, "{held:?}");
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c2")), None);
    t.advance(held);
    assert!(t.take_sent().is_empty());
    // c2's DELETE is: at once.
    t.notify("L", NotificationOp::Delete, None);
    let set = t.take_one("SET");
    // Beaten by c4 (told after the refusal): c1 follows c4 now.
    t.reply(&set, StoreReply::Integer(-1), None);
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c4")), None);
    t.notify("L", NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.ok(&set);
    acquired(&t.take_events(), again);
}

#[test]
fn in_a_herd_a_held_back_set_goes_when_nobody_takes_the_lock_and_keeps_the_waiters_place() {
    let mut t = T::connected("c1");
    // c1 follows c2, whom it took the lock from. c3 takes it after c1's release; at c3's
    // DELETE nobody that follows c3 takes it (that client left): c1's held-back SET goes out
    // after its delay.
    let op = waiting_again_after_taking_over(&mut t, "L", b"c2");
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c3")), None);
    t.notify("L", NotificationOp::Delete, None);
    assert!(t.take_sent().is_empty());
    t.run_to_timeout();
    let set = t.take_one("SET");
    // It loses to c5: a held-back SET keeps its place (c1 still follows c2).
    t.reply(&set, StoreReply::Integer(-1), None);
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c5")), None);
    t.notify("L", NotificationOp::Delete, None);
    assert!(t.take_sent().is_empty(), "c5 is not the holder c1 follows");
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c2")), None);
    t.notify("L", NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.reply(&set, StoreReply::Integer(-1), None);
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c6")), None);
    // The herd is forgotten a while after the last lost race or held-back SET: any DELETE is
    // answered at once again.
    t.advance(2 * SEC);
    t.notify("L", NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.ok(&set);
    acquired(&t.take_events(), op);
}

#[test]
fn in_a_herd_a_waiter_whose_followed_holder_never_comes_back_sends_at_once_again() {
    let mut t = T::connected("c1");
    // c1 follows c2, which never takes the lock again: the others take turns without c1.
    let op = waiting_again_after_taking_over(&mut t, "L", b"c2");
    let others: [&'static [u8]; 3] = [b"c3", b"c4", b"c5"];
    let mut turns = 0;
    let set = loop {
        t.notify(
            "L",
            NotificationOp::Set(Bytes::from_static(others[turns % 3])),
            None,
        );
        turns += 1;
        t.advance(MS);
        t.notify("L", NotificationOp::Delete, None);
        let mut sent = t.take_sent();
        if sent.len() == 1 {
            assert_eq!(sent[0].verb(), "SET");
            break sent.remove(0);
        }
        assert!(sent.is_empty(), "turn {turns}: not c1's");
        assert!(turns < 20, "c1 never sends at once again");
    };
    // Told that c3 took the lock twice, and never c2 in between: c1 follows nobody, and sends
    // at once.
    assert!(turns > 3, "{turns}");
    t.ok(&set);
    acquired(&t.take_events(), op);
}

#[test]
fn in_a_herd_a_waiter_holds_its_set_back_longer_than_the_handoffs_it_is_told_of() {
    let mut t = T::connected("c1");
    // c1 follows c2. Seven other clients take turns, and each handoff takes GAP from the
    // DELETE to the winner's SET as c1 is told of them (a large herd: the broker tells every
    // waiter of each change). A held-back SET sent before the winner is told is refused for
    // nothing; c1 learns how long a handoff takes and soon holds its SET back for longer.
    const GAP: Duration = Duration::from_millis(10);
    let op = waiting_again_after_taking_over(&mut t, "L", b"c2");
    let others: [&'static [u8]; 7] = [b"c3", b"c4", b"c5", b"c6", b"c7", b"c8", b"c9"];
    let mut sent_early = Vec::new();
    for (turn, holder) in others.into_iter().enumerate() {
        t.notify("L", NotificationOp::Set(Bytes::from_static(holder)), None);
        t.advance(MS);
        t.notify("L", NotificationOp::Delete, None);
        assert!(t.take_sent().is_empty(), "turn {turn} is not c1's");
        t.advance(GAP);
        let sent = t.take_sent();
        if let [set] = sent.as_slice() {
            assert_eq!(set.verb(), "SET");
            t.reply(set, StoreReply::Integer(-1), None);
            sent_early.push(turn);
        } else {
            assert!(sent.is_empty(), "turn {turn}: {} sent", sent.len());
        }
    }
    assert!(
        sent_early.len() <= 2 && sent_early.iter().all(|turn| *turn < 2),
        "held-back SETs sent before the winner was told: turns {sent_early:?}"
    );
    // Held back longer, it still goes out when nobody takes the lock: not a lease later.
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c10")), None);
    t.notify("L", NotificationOp::Delete, None);
    let held = next_deadline(&t);
    assert!(held > GAP && held < 200 * MS, "{held:?}");
    t.run_to_timeout();
    let set = t.take_one("SET");
    t.ok(&set);
    acquired(&t.take_events(), op);
}

#[test]
fn unknown_duplicate_and_garbage_responses_are_counted_not_fatal() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    t.client
        .try_acquire(t.now, lock, SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    t.ok(&set);
    t.ok(&set); // duplicate
    let garbage = Message {
        topic: store::response_topic("c1").into(),
        payload: Bytes::from_static(b"\xff\xfe"),
        correlation_data: Some(Bytes::from_static(b"short")),
        ..Message::default()
    };
    t.client.handle_message(t.now, &garbage);
    let stranger = Message {
        topic: "somewhere/else".into(),
        ..Message::default()
    };
    t.client.handle_message(t.now, &stranger);
    let stats = t.client.stats();
    assert_eq!(stats.unmatched_responses, 2);
    assert_eq!(stats.malformed_messages, 1);
}

#[test]
fn intents_reject_misuse_synchronously() {
    use leasedlock::lock::IntentError;
    let mut t = T::connected("c1");
    assert_eq!(t.client.lock_id(""), Err(IntentError::EmptyKey));
    let lock = t.lock("L");
    assert!(matches!(
        t.client.try_acquire(t.now, lock, MS, Options::default()),
        Err(IntentError::LeaseTooShort { .. })
    ));
    assert!(matches!(
        t.client
            .hold(t.now, lock, 10 * SEC, 10 * SEC, Options::default()),
        Err(IntentError::BadInterval { .. })
    ));
    assert_eq!(
        t.client.try_acquire(
            t.now,
            lock,
            SEC,
            Options::default().with_timeout(Duration::ZERO)
        ),
        Err(IntentError::ZeroTimeout)
    );
    assert_eq!(
        t.client
            .try_acquire(t.now, lock, SEC, Options::default().with_session_id("")),
        Err(IntentError::InvalidSessionId)
    );
    assert_eq!(t.client.close_hold(t.now, lock), Err(IntentError::NoHold));
    assert_eq!(
        t.client.unobserve(t.now, lock),
        Err(IntentError::NotObserving)
    );
    assert_eq!(
        t.client
            .edit(t.now, lock, Bytes::new(), SEC, Options::default()),
        Err(IntentError::EmptyKey)
    );
    assert!(t.take_sent().is_empty());
}

#[test]
fn observe_reports_holder_changes() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    t.client.observe(t.now, lock).unwrap();
    let kn = t.take_one("KEYNOTIFY");
    t.ok(&kn);
    t.notify("L", NotificationOp::Set(Bytes::from_static(b"c2")), None);
    t.notify("L", NotificationOp::Delete, None);
    assert_eq!(
        t.take_events(),
        vec![
            Event::HolderChanged {
                lock,
                holder: Some(Holder::from_value("c2"))
            },
            Event::HolderChanged { lock, holder: None }
        ]
    );
    t.client.unobserve(t.now, lock).unwrap();
    t.take_one("KEYNOTIFY STOP");
}

#[test]
fn a_lease_taken_away_at_the_store_is_reported_at_once() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 10 * SEC, 3 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    t.take_events();
    let v = t.next_version();
    t.notify("L", NotificationOp::Delete, Some(v));
    let events = t.take_events();
    assert_eq!(
        events[0],
        Event::Lost {
            op: hold,
            lock,
            reason: LossReason::TakenAway
        }
    );
    assert!(!t.client.is_held(t.now, lock));
}

/// `close_hold` while the hold acquires again, its SET in flight: the store applies the SET and
/// then the VDEL (one publisher, one topic: in order), so the release finds the lock ours and
/// says so; the SET's late success gives back no lease. Had the SET lost, the VDEL would find
/// nothing and `false` would be the truth: the hold held nothing then.
#[test]
fn close_hold_during_a_reacquisition_reports_what_the_vdel_found() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 10 * SEC, 3 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    t.take_events();
    let v = t.next_version();
    t.notify("L", NotificationOp::Delete, Some(v));
    assert!(matches!(t.take_events()[..], [Event::Lost { .. }]));
    let set = loop {
        if let Some(set) = t.take_sent().into_iter().find(|s| s.verb() == "SET") {
            break set;
        }
        t.run_to_timeout();
    };
    let rel = t.client.close_hold(t.now, lock).unwrap();
    let mut vdels: Vec<Sent> = t.take_sent();
    vdels.retain(|s| s.verb() == "VDEL");
    assert_eq!(vdels.len(), 1, "one VDEL undoes the SET's win too");
    let vdel = vdels.remove(0);
    t.ok(&set);
    t.reply(&vdel, StoreReply::Integer(1), None);
    assert_eq!(
        t.take_events(),
        vec![
            Event::HoldEnded { op: hold, lock },
            Event::Released {
                op: rel,
                lock,
                was_held: true
            }
        ]
    );
    assert!(!t.client.is_held(t.now, lock));
    assert_eq!(t.client.leases_held(), 0);
    assert_eq!(t.client.operations_in_progress(), 0);
}

#[test]
fn after_releasing_a_contended_lock_the_next_wait_lets_the_woken_waiters_go_first() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    // Uncontended: acquire, release, acquire again: the SET goes out at once.
    let a = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    acquired(&t.take_events(), a);
    t.client.release(t.now, lock, Options::default()).unwrap();
    let sent = t.take_sent();
    let vdel = sent.iter().find(|s| s.verb() == "VDEL").unwrap();
    t.reply(vdel, StoreReply::Integer(1), None);
    t.client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    assert!(
        sent.iter().any(|s| s.verb() == "SET"),
        "no contention seen: no delay"
    );
    let set = sent.into_iter().find(|s| s.verb() == "SET").unwrap();
    t.ok(&set);
    t.take_events();
    t.take_sent();

    // Contended: the lock was busy once before we won it.
    t.release_deleting(lock);
    // No race lost yet: the SET after the DELETE goes at once (`take_one` in the helper).
    let released_at = contended_acquire_and_release(&mut t, lock, Duration::ZERO);
    t.client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    assert!(
        sent.iter().all(|s| s.verb() != "SET"),
        "the next try waits for the herd window"
    );
    // It goes out within the jitter bound.
    t.run_to_timeout();
    assert!(t.now.instant <= released_at + 5 * MS); // hold-back 2 ms + jitter ≤ 3 ms
    assert!(t.take_sent().iter().any(|s| s.verb() == "SET"));
}

#[test]
fn a_cancelled_release_still_keeps_sets_behind_its_vdel() {
    // Simulator seed 3075: the SET overtook the VDEL of a cancelled release, the VDEL deleted the
    // new lease, and another client acquired while this one believed it held the lock.
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let rel = t.client.release(t.now, lock, Options::default()).unwrap();
    let vdel = t.take_one("VDEL");
    t.client.cancel(t.now, rel).unwrap();
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op: rel,
            lock,
            error: OpError::Cancelled
        }]
    );
    let op = t
        .client
        .try_acquire(t.now, lock, 10 * SEC, Options::default())
        .unwrap();
    assert!(
        t.take_sent().is_empty(),
        "no SET while the VDEL is in flight"
    );
    let v = t.next_version();
    t.reply(&vdel, StoreReply::Integer(1), Some(v));
    assert!(
        t.take_events().is_empty(),
        "the cancelled release stays silent"
    );
    let set = t.take_one("SET");
    lease_set(&set, "L", "c1", 10_000);
    t.ok(&set);
    acquired(&t.take_events(), op);
}

#[test]
fn a_lost_vdel_of_a_cancelled_release_lifts_the_barrier_at_its_timeout() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let rel = t.client.release(t.now, lock, Options::default()).unwrap();
    let _vdel = t.take_one("VDEL");
    t.client.cancel(t.now, rel).unwrap();
    t.take_events();
    let options = Options::default().with_timeout(60 * SEC);
    t.client
        .try_acquire(t.now, lock, 10 * SEC, options)
        .unwrap();
    assert!(t.take_sent().is_empty());
    t.run_to_timeout(); // the VDEL's request timeout
    let set = t.take_one("SET");
    lease_set(&set, "L", "c1", 10_000);
}

#[test]
fn with_no_jitter_a_waiter_retries_at_once_without_a_timer() {
    let mut config = Config::new("c1");
    config.retry_jitter_max = Duration::ZERO;
    let mut t = T::new(config);
    t.connect();
    let lock = t.lock("L");
    let op = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.reply(&sent[1], StoreReply::Integer(-1), None);
    t.notify("L", NotificationOp::Delete, None);
    let retry = t.take_one("SET");
    t.ok(&retry);
    acquired(&t.take_events(), op);
}

/// Runs a (fenced) edit up to its GET reply; returns (op, token) and leaves the fence SET sent.
fn edit_to_fence(t: &mut T, lock: LockId, current: StoreReply) -> (OpId, Hlc, Sent) {
    let (op, token, get) = edit_to_get(t, lock);
    t.reply(&get, current, None);
    assert_eq!(
        t.take_events(),
        vec![],
        "the user sees nothing before the fence is up"
    );
    (op, token, t.take_one("SET"))
}

#[test]
fn an_edit_raises_the_keys_fence_to_its_token_before_the_user_sees_the_value() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, token, fence) =
        edit_to_fence(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    assert_eq!(
        set_parts(&fence),
        (
            Bytes::from_static(b"K"),
            Bytes::from_static(b"7"),
            SetCondition::NotExistsOrEqual,
            None
        ),
        "the value read, written back while the key still holds it"
    );
    assert_eq!(fence.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&fence);
    assert_eq!(
        t.take_events(),
        vec![Event::EditRequested {
            op,
            lock,
            current: Some(Bytes::from_static(b"7"))
        }]
    );
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"8")))
        .unwrap();
    let (write, vdel) = t.take_write_and_release("SET");
    assert_eq!(set_parts(&write).1, Bytes::from_static(b"8"));
    assert_eq!(write.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&write);
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Written
        }]
    );
    // Aborting an edit of a present key writes nothing more.
    t.reply(&vdel, StoreReply::Integer(1), None);
    t.take_sent();
    let (op, _, fence) = edit_to_fence(&mut t, lock, StoreReply::Value(Bytes::from_static(b"8")));
    t.ok(&fence);
    t.take_events();
    t.client
        .complete_edit(t.now, op, EditAction::Abort)
        .unwrap();
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Unchanged
        }]
    );
    assert_eq!(t.take_sent()[0].verb(), "VDEL");
}

#[test]
fn an_absent_key_stays_absent_for_the_user_and_an_abort_deletes_the_placeholder() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, token, fence) = edit_to_fence(&mut t, lock, StoreReply::NotFound);
    assert_eq!(
        set_parts(&fence).1,
        Bytes::from_static(leasedlock::lock::ABSENT_PLACEHOLDER),
        "a placeholder"
    );
    assert_eq!(fence.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&fence);
    assert_eq!(
        t.take_events(),
        vec![Event::EditRequested {
            op,
            lock,
            current: None
        }]
    );
    t.client
        .complete_edit(t.now, op, EditAction::Abort)
        .unwrap();
    let (del, _vdel) = t.take_write_and_release("DEL");
    assert_eq!(del.prop("__ft"), Some(token.to_string().as_str()));
    assert_eq!(t.take_events(), vec![], "done once the placeholder is gone");
    t.reply(&del, StoreReply::Integer(1), None);
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Unchanged
        }]
    );
}

#[test]
fn a_refused_fence_fails_the_edit_before_the_user_sees_anything() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, _, fence) = edit_to_fence(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    t.reply(
        &fence,
        StoreReply::Error(ServiceError::FencingTokenLowerVersion),
        None,
    );
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::Service(ServiceError::FencingTokenLowerVersion)
        }]
    );
    assert_eq!(t.take_sent()[0].verb(), "VDEL");
}

#[test]
fn a_fence_answered_after_the_lease_lapsed_shows_the_user_nothing() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, _, fence) = edit_to_fence(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    t.advance(5 * SEC);
    let events = t.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Failed {
                error: OpError::LeaseLapsed,
                ..
            }]
        ),
        "{events:?}"
    );
    t.ok(&fence);
    assert!(
        t.take_events()
            .iter()
            .all(|e| !matches!(e, Event::EditRequested { .. })),
        "{op:?} never asks the user"
    );
}

#[test]
fn a_fence_refused_because_the_key_changed_reads_the_key_again() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, token, fence) =
        edit_to_fence(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    // A previous holder's delayed write changed the key after the read: NEX refuses the fence.
    t.reply(&fence, StoreReply::Integer(-1), None);
    assert_eq!(t.take_events(), vec![], "the user has seen nothing yet");
    let get = t.take_one("GET");
    t.reply(&get, StoreReply::Value(Bytes::from_static(b"9")), None);
    let fence = t.take_one("SET");
    assert_eq!(
        set_parts(&fence).1,
        Bytes::from_static(b"9"),
        "what is there now is fenced"
    );
    assert_eq!(fence.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&fence);
    assert_eq!(
        t.take_events(),
        vec![Event::EditRequested {
            op,
            lock,
            current: Some(Bytes::from_static(b"9"))
        }]
    );
}

/// The store's answer to `to`: a protocol error of `status` (it did not process the request,
/// or, for 5xx, cannot say whether it did).
fn protocol_error(t: &mut T, to: &Sent, status: u16) {
    let error = leasedlock::store::ProtocolError {
        status,
        message: Some("injected".into()),
        ..Default::default()
    };
    let m = store::protocol_error_message(
        to.message.response_topic.as_deref().unwrap(),
        to.message.correlation_data.clone().unwrap(),
        &error,
    );
    t.client.handle_message(t.now, &m);
    t.drain();
}

#[test]
fn an_edit_write_answered_with_a_5xx_or_an_unreadable_reply_is_indeterminate() {
    for (answer, indeterminate) in [(503u16, true), (500, true), (400, false), (0, true)] {
        let mut t = T::connected_unfenced("c1");
        let lock = t.lock("L");
        let (op, _, _) = edit_to_request(&mut t, lock, StoreReply::NotFound);
        t.client
            .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"1")))
            .unwrap();
        let write = t.take_one("SET");
        if answer == 0 {
            // Well formed, but not a reply a SET can have: the store did something with it.
            t.reply(&write, StoreReply::Value(Bytes::from_static(b"?")), None);
        } else {
            protocol_error(&mut t, &write, answer);
        }
        let events = t.take_events();
        let failed = match events.as_slice() {
            [Event::Failed { op: o, error, .. }] if *o == op => error.clone(),
            other => panic!("{answer}: expected the edit to fail, got {other:?}"),
        };
        assert_eq!(
            failed == OpError::Indeterminate,
            indeterminate,
            "{answer}: {failed:?}"
        );
    }
}

#[test]
fn a_lease_is_trusted_for_the_whole_milliseconds_the_store_is_told() {
    let mut config = Config::new("c1");
    config.safety_margin = Duration::ZERO;
    config.clock_rate_drift_ppm = 0;
    let mut t = T::connected_with(config);
    let lock = t.lock("L");
    let lease = Duration::from_micros(1_500_900);
    t.client
        .try_acquire(t.now, lock, lease, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    assert_eq!(set_parts(&set).3, Some(1_500), "PX in whole milliseconds");
    let sent = t.now.instant;
    t.ok(&set);
    assert_eq!(
        t.client.valid_until(lock),
        Some(sent + Duration::from_millis(1_500)),
        "never longer than the PX the store applies"
    );
}

#[test]
fn an_edit_of_the_lock_key_itself_is_refused() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    assert_eq!(
        t.client.edit(
            t.now,
            lock,
            Bytes::from_static(b"L"),
            5 * SEC,
            Options::default()
        ),
        Err(leasedlock::lock::IntentError::KeyIsTheLock)
    );
    assert!(t.take_sent().is_empty(), "nothing sent");
}

#[test]
fn after_a_refused_subscription_new_operations_fail_at_once_instead_of_waiting() {
    let mut t = T::new(Config::new("c1"));
    t.client.handle_connected(t.now);
    t.drain();
    let subs = std::mem::take(&mut t.subscribes);
    let notify = t.client.notification_filter().to_string();
    for s in &subs {
        t.client.handle_subscribed(t.now, s, *s != notify);
    }
    t.drain();
    let lock = t.lock("L");
    let waiting = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let once = t
        .client
        .try_acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let refused = OpError::SubscriptionRefused(notify.clone());
    assert_eq!(
        t.take_events(),
        vec![
            Event::Failed {
                op: waiting,
                lock,
                error: refused.clone()
            },
            Event::Failed {
                op: once,
                lock,
                error: refused
            }
        ],
        "an acquire without a timeout must not wait forever, nor a try_acquire report a timeout"
    );
    assert!(t.take_sent().is_empty());
    // The next connection subscribes again; granted, operations work.
    t.client.handle_disconnected(t.now);
    t.connect();
    let op = t
        .client
        .try_acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    t.ok(&set);
    assert!(matches!(
        t.take_events().as_slice(),
        [Event::Acquired { op: o, .. }] if *o == op
    ));
}

#[test]
fn a_hold_or_an_edit_failed_at_its_start_leaves_the_lock_free_for_the_next_connection() {
    let mut t = T::new(Config::new("c1"));
    t.client.handle_connected(t.now);
    t.drain();
    for s in std::mem::take(&mut t.subscribes) {
        t.client.handle_subscribed(t.now, &s, false);
    }
    t.drain();
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 5 * SEC, SEC, Options::default())
        .unwrap();
    let edit = t
        .client
        .edit(
            t.now,
            lock,
            Bytes::from_static(b"K"),
            5 * SEC,
            Options::default(),
        )
        .unwrap();
    let events = t.take_events();
    assert!(
        matches!(events.as_slice(), [
            Event::Failed { op: h, error: OpError::SubscriptionRefused(_), .. },
            Event::Failed { op: e, error: OpError::SubscriptionRefused(_), .. },
        ] if *h == hold && *e == edit),
        "both fail at once: {events:?}"
    );
    // Nothing of theirs stays behind: no hold to close, and the next connection can use the lock.
    assert_eq!(
        t.client.close_hold(t.now, lock),
        Err(IntentError::NoHold),
        "a hold that failed at its start is no hold"
    );
    t.client.handle_disconnected(t.now);
    t.connect();
    // (`edit_to_get` asserts that the edit starts: the lock is not in use by the failed one.)
    edit_to_get(&mut t, lock);
}

#[test]
fn a_renewal_whose_reply_is_lost_is_retried_while_the_lease_still_holds() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let hold = t
        .client
        .hold(t.now, lock, 10 * SEC, 3 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]);
    t.ok(&sent[1]);
    t.take_events();
    // The first renewal's reply is lost; the lease (10 s − margin) must not end for it.
    t.run_to_timeout();
    let first = t.take_one("SET");
    let retry = loop {
        t.run_to_timeout();
        let events = t.take_events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Lost { .. })),
            "lost before a retry: {events:?}"
        );
        if let Some(s) = t.take_sent().into_iter().find(|s| s.verb() == "SET") {
            break s;
        }
    };
    assert_eq!(
        set_parts(&retry),
        set_parts(&first),
        "the same renewal, again"
    );
    assert!(
        t.client.is_held(t.now, lock),
        "retried while the lease still holds"
    );
    let v = t.ok(&retry);
    assert!(
        t.take_events().iter().any(|e| matches!(
            e,
            Event::Renewed { op, token, .. } if *op == hold && token.as_hlc() == &v
        )),
        "renewed by the retry"
    );
}

/// Takes lock `L` with `try_acquire` (under `options`' session) and returns its token.
fn acquire_l(t: &mut T, options: Options) -> (LockId, Hlc) {
    let lock = t.lock("L");
    let op = t.client.try_acquire(t.now, lock, 5 * SEC, options).unwrap();
    let set = t.take_one("SET");
    let token = t.ok(&set);
    assert_eq!(acquired(&t.take_events(), op).as_hlc(), &token);
    (lock, token)
}

fn access(t: &mut T, lock: LockId, access: Access, fence: Fence, options: Options) -> OpId {
    t.client
        .access(
            t.now,
            lock,
            Bytes::from_static(b"K"),
            access,
            fence,
            options,
        )
        .unwrap()
}

fn accessed(t: &mut T, op: OpId) -> Result<Accessed, OpError> {
    match t.take_events().as_slice() {
        [Event::Accessed { op: o, outcome, .. }] if *o == op => Ok(outcome.clone()),
        [Event::Failed { op: o, error, .. }] if *o == op => Err(error.clone()),
        other => panic!("expected the end of {op:?}, got {other:?}"),
    }
}

#[test]
fn store_access_fenced_by_the_lease_carries_its_token_and_reads_without_one() {
    let mut t = T::connected("c1");
    let (lock, token) = acquire_l(&mut t, Options::default());
    let value = Bytes::from_static(b"v");
    let op = access(
        &mut t,
        lock,
        Access::Set(value.clone()),
        Fence::Held,
        Options::default(),
    );
    let set = t.take_one("SET");
    assert_eq!(
        set_parts(&set),
        (
            Bytes::from_static(b"K"),
            value.clone(),
            SetCondition::Always,
            None
        )
    );
    assert_eq!(set.prop("__ft"), Some(token.to_string().as_str()));
    t.ok(&set);
    assert_eq!(accessed(&mut t, op), Ok(Accessed::Written));

    let op = access(&mut t, lock, Access::Get, Fence::Held, Options::default());
    let get = t.take_one("GET");
    assert_eq!(get.prop("__ft"), None, "a read carries no token");
    t.reply(&get, StoreReply::Value(value.clone()), None);
    assert_eq!(accessed(&mut t, op), Ok(Accessed::Value(Some(value))));

    let op = access(
        &mut t,
        lock,
        Access::Delete,
        Fence::Held,
        Options::default(),
    );
    let del = t.take_one("DEL");
    assert_eq!(del.prop("__ft"), Some(token.to_string().as_str()));
    t.reply(&del, StoreReply::Integer(1), None);
    assert_eq!(
        accessed(&mut t, op),
        Ok(Accessed::Deleted { existed: true })
    );
    assert!(
        t.client.is_held(t.now, lock),
        "access leaves the lease alone"
    );
}

#[test]
fn store_access_past_the_lease_or_under_another_session_fails_without_sending() {
    let mut t = T::connected("c1");
    let s1 = Options::default().with_session_id("s1");
    let (lock, _) = acquire_l(&mut t, s1.clone());
    let s2 = Options::default().with_session_id("s2");
    let op = access(&mut t, lock, Access::Delete, Fence::Held, s2);
    assert_eq!(accessed(&mut t, op), Err(OpError::LeaseLapsed));
    assert!(
        t.take_sent().is_empty(),
        "another session's lease is not ours"
    );

    let until = t.client.valid_until(lock).unwrap();
    t.advance(until - t.now.instant);
    t.take_events(); // Expired
    let op = access(&mut t, lock, Access::Set(Bytes::new()), Fence::Held, s1);
    assert_eq!(accessed(&mut t, op), Err(OpError::LeaseLapsed));
    assert!(t.take_sent().is_empty());
    assert_eq!(
        t.client.access(
            t.now,
            lock,
            Bytes::from_static(b"L"),
            Access::Delete,
            Fence::Held,
            Options::default()
        ),
        Err(IntentError::KeyIsTheLock)
    );
}

#[test]
fn a_fenced_read_answered_after_the_lease_ends_is_not_trusted() {
    let mut t = T::connected("c1");
    let (lock, _) = acquire_l(&mut t, Options::default());
    let op = access(&mut t, lock, Access::Get, Fence::Held, Options::default());
    let get = t.take_one("GET");
    let until = t.client.valid_until(lock).unwrap();
    t.advance(until - t.now.instant);
    t.take_events(); // Expired
    t.reply(&get, StoreReply::Value(Bytes::from_static(b"old")), None);
    assert_eq!(accessed(&mut t, op), Err(OpError::LeaseLapsed));
}

#[test]
fn store_access_with_a_given_token_or_none_and_a_stale_token_refused_with_its_text() {
    let mut t = T::connected("c1");
    let lock = t.lock("K");
    let given = leasedlock::FencingToken::new(Hlc::new(42, 3, "other"));
    let op = access(
        &mut t,
        lock,
        Access::Set(Bytes::from_static(b"v")),
        Fence::Token(given.clone()),
        Options::default(),
    );
    let set = t.take_one("SET");
    assert_eq!(set.prop("__ft"), Some(given.to_string().as_str()));
    t.reply(
        &set,
        StoreReply::Error(ServiceError::FencingTokenLowerVersion),
        None,
    );
    let error = accessed(&mut t, op).unwrap_err();
    assert_eq!(
        error,
        OpError::Service(ServiceError::FencingTokenLowerVersion)
    );
    assert!(error
        .to_string()
        .contains(ServiceError::FencingTokenLowerVersion.text()));

    let op = access(
        &mut t,
        lock,
        Access::Delete,
        Fence::Unfenced,
        Options::default(),
    );
    let del = t.take_one("DEL");
    assert_eq!(del.prop("__ft"), None);
    t.reply(&del, StoreReply::Integer(0), None);
    assert_eq!(
        accessed(&mut t, op),
        Ok(Accessed::Deleted { existed: false })
    );
}

#[test]
fn a_store_write_without_a_definite_answer_is_indeterminate_and_never_repeated() {
    // No answer before the timeout, the connection lost, a 5xx.
    for fault in ["timeout", "disconnect", "503"] {
        let mut t = T::connected("c1");
        let lock = t.lock("K");
        let op = access(
            &mut t,
            lock,
            Access::Set(Bytes::from_static(b"v")),
            Fence::Unfenced,
            Options::default(),
        );
        let set = t.take_one("SET");
        match fault {
            "timeout" => t.run_to_timeout(),
            "disconnect" => {
                t.client.handle_disconnected(t.now);
                t.drain();
            }
            _ => protocol_error(&mut t, &set, 503),
        }
        assert_eq!(accessed(&mut t, op), Err(OpError::Indeterminate), "{fault}");
        if fault == "disconnect" {
            t.connect();
        }
        assert!(
            t.take_sent().iter().all(|s| s.verb() != "SET"),
            "{fault}: not repeated"
        );
    }
}

#[test]
fn a_store_read_lost_with_the_connection_is_sent_again() {
    let mut t = T::connected("c1");
    let lock = t.lock("K");
    let op = access(
        &mut t,
        lock,
        Access::Get,
        Fence::Unfenced,
        Options::default(),
    );
    t.take_one("GET");
    t.client.handle_disconnected(t.now);
    t.connect();
    let get = t.take_one("GET");
    t.reply(&get, StoreReply::NotFound, None);
    assert_eq!(accessed(&mut t, op), Ok(Accessed::Value(None)));
}

/// Starts a hold (or a keep) of `L` under `options` and answers its KEYNOTIFY and first SET with
/// `first`; returns the op and the events.
fn hold_answered(
    t: &mut T,
    keep: Option<bool>,
    options: Options,
    first: StoreReply,
) -> (OpId, Vec<Event>) {
    let lock = t.lock("L");
    let op = match keep {
        None => t.client.hold(t.now, lock, 10 * SEC, 3 * SEC, options),
        Some(wait) => t.client.keep(t.now, lock, 10 * SEC, 3 * SEC, wait, options),
    }
    .unwrap();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET"]
    );
    t.ok(&sent[0]);
    let v = t.next_version();
    t.reply(&sent[1], first, Some(v));
    (op, t.take_events())
}

#[test]
fn a_release_under_another_session_leaves_the_hold_of_this_one_alone() {
    let mut t = T::connected("c1");
    let s1 = Options::default().with_session_id("s1");
    let (hold, events) = hold_answered(&mut t, None, s1, StoreReply::Ok);
    assert!(matches!(events.as_slice(), [Event::Acquired { op, .. }] if *op == hold));
    let lock = t.lock("L");
    let other = Options::default().with_session_id("s2");
    let release = t.client.release(t.now, lock, other).unwrap();
    let vdel = t.take_one("VDEL");
    assert_eq!(
        vdel.command,
        Command::VDel {
            key: Bytes::from_static(b"L"),
            value: Bytes::from_static(b"c1:s2")
        }
    );
    assert!(t.take_events().is_empty(), "the hold of s1 goes on");
    assert!(t.client.is_held(t.now, lock));
    t.reply(&vdel, StoreReply::Integer(0), None);
    assert_eq!(
        t.take_events(),
        vec![Event::Released {
            op: release,
            lock,
            was_held: false
        }]
    );
    t.run_to_timeout();
    let renew = t.take_one("SET");
    lease_set(&renew, "L", "c1:s1", 10_000);
}

#[test]
fn a_keep_that_does_not_wait_ends_busy_at_its_one_try() {
    let mut t = T::connected("c1");
    let (op, events) = hold_answered(
        &mut t,
        Some(false),
        Options::default(),
        StoreReply::Integer(-1),
    );
    let lock = t.lock("L");
    assert_eq!(events, vec![Event::Busy { op, lock }]);
    assert_eq!(t.client.operations_in_progress(), 0);
    assert!(
        t.take_sent().iter().all(|s| s.verb() != "SET"),
        "no second try"
    );
    // Waiting, it does not give up at a refusal.
    let (_, events) = hold_answered(
        &mut t,
        Some(true),
        Options::default(),
        StoreReply::Integer(-1),
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(t.client.operations_in_progress(), 1);
}

#[test]
fn a_keep_ends_at_its_first_loss_and_releases() {
    let mut t = T::connected("c1");
    let (op, events) = hold_answered(&mut t, Some(false), Options::default(), StoreReply::Ok);
    let lock = t.lock("L");
    assert!(matches!(
        events.as_slice(),
        [Event::Acquired { hold: true, .. }]
    ));
    t.run_to_timeout();
    let renew = t.take_one("SET");
    let v = t.next_version();
    t.reply(&renew, StoreReply::Integer(-1), Some(v));
    assert_eq!(
        t.take_events(),
        vec![
            Event::Lost {
                op,
                lock,
                reason: LossReason::RenewalRefused
            },
            Event::HoldEnded { op, lock }
        ]
    );
    let sent = t.take_sent();
    assert!(sent.iter().any(|s| s.verb() == "VDEL"), "released");
    assert!(sent.iter().all(|s| s.verb() != "SET"), "not won again");
}

#[test]
fn locks_no_longer_in_use_give_their_slots_to_new_names() {
    let mut t = T::connected("c1");
    let observed = t.lock("observed");
    t.client.observe(t.now, observed).unwrap();
    let keynotify = t.take_one("KEYNOTIFY");
    t.ok(&keynotify);
    let first = t.lock("name-0");
    for i in 0..100 {
        let lock = t.lock(&format!("name-{i}"));
        let op = t
            .client
            .try_acquire(t.now, lock, 5 * SEC, Options::default())
            .unwrap();
        let set = t.take_one("SET");
        t.ok(&set);
        acquired(&t.take_events(), op);
        t.client.release(t.now, lock, Options::default()).unwrap();
        let vdel = t.take_one("VDEL");
        t.reply(&vdel, StoreReply::Integer(1), None);
    }
    assert!(t.client.locks_kept() <= 3, "{}", t.client.locks_kept());
    assert_eq!(
        t.client
            .try_acquire(t.now, first, 5 * SEC, Options::default()),
        Err(IntentError::UnknownLock),
        "a freed lock's id is stale, not another lock's"
    );
    assert_eq!(t.lock("observed"), observed, "an observed lock is kept");
}

#[test]
fn a_renewal_answered_after_the_lease_ended_reports_the_loss_first() {
    let mut t = T::connected("c1");
    let (hold, events) = hold_answered(&mut t, None, Options::default(), StoreReply::Ok);
    assert!(matches!(events.as_slice(), [Event::Acquired { .. }]));
    let lock = t.lock("L");
    t.run_to_timeout();
    let renew = t.take_one("SET");
    // The reply is handled after the lease's validity, before any timer has fired: a driver
    // that reads the socket before it looks at its timers.
    let until = t.client.valid_until(lock).unwrap();
    t.now = t.now + (until - t.now.instant) + MS;
    t.ok(&renew);
    let events = t.take_events();
    assert!(
        events.iter().all(|e| !matches!(e, Event::Renewed { .. })),
        "no renewal across the gap: {events:?}"
    );
    assert!(
        events.contains(&Event::Lost {
            op: hold,
            lock,
            reason: LossReason::ExpiredLocally
        }),
        "{events:?}"
    );
}

#[test]
fn a_delete_that_overtakes_the_refused_sets_reply_retries_at_once() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    t.client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]); // KEYNOTIFY
                    // The holder releases: its DELETE arrives before the reply to our SET, which the store
                    // refused just before.
    t.notify("L", NotificationOp::Delete, None);
    let v = t.next_version();
    t.reply(&sent[1], StoreReply::Integer(-1), Some(v));
    let retry = t.take_one("SET");
    lease_set(&retry, "L", "c1", 5_000);
}

#[test]
fn a_clock_that_refuses_to_send_loses_the_hold_lease_and_the_hold_recovers_with_the_clock() {
    let mut t = T::connected("c1");
    let (hold, events) = hold_answered(&mut t, None, Options::default(), StoreReply::Ok);
    assert!(matches!(events.as_slice(), [Event::Acquired { .. }]));
    let lock = t.lock("L");
    // The wall clock steps back by far more than the HLC tolerates: nothing can be sent.
    let back = t.client.config().max_clock_drift + 60 * SEC;
    let back_ms = u64::try_from(back.as_millis()).unwrap();
    t.now = Now::new(t.now.instant, t.now.wall_ms - back_ms);
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, Event::Lost { .. })) {
        t.run_to_timeout();
        assert!(t.take_sent().is_empty(), "the clock refuses every request");
        events.extend(t.take_events());
    }
    assert_eq!(
        events,
        vec![Event::Lost {
            op: hold,
            lock,
            reason: LossReason::ExpiredLocally
        }],
        "the hold reports the loss and goes on"
    );
    // The clock comes back: the hold takes the lock again.
    t.now = Now::new(t.now.instant, t.now.wall_ms + back_ms);
    let set = loop {
        t.run_to_timeout();
        if let Some(set) = t.take_sent().into_iter().find(|s| s.verb() == "SET") {
            break set;
        }
    };
    let v = t.ok(&set);
    assert_eq!(acquired(&t.take_events(), hold).as_hlc(), &v);
}

#[test]
fn a_suspended_host_never_trusts_a_lease_past_its_end_by_the_wall_clock() {
    let mut t = T::connected("c1");
    let (hold, events) = hold_answered(&mut t, None, Options::default(), StoreReply::Ok);
    assert!(matches!(events.as_slice(), [Event::Acquired { .. }]));
    let lock = t.lock("L");
    let before = t.now;
    // Five minutes suspended: the wall clock moved on, the monotonic one did not.
    t.now = Now::new(t.now.instant + MS, t.now.wall_ms + 300_000);
    assert!(!t.client.is_held(t.now, lock), "not held by the wall clock");
    assert!(t
        .client
        .is_held(Now::new(t.now.instant, before.wall_ms + 1), lock));
    // The next timeout reports the loss at once, not when the monotonic timers would fire.
    t.client.handle_timeout(t.now);
    t.drain();
    assert_eq!(
        t.take_events(),
        vec![Event::Lost {
            op: hold,
            lock,
            reason: LossReason::ExpiredLocally
        }]
    );
}

#[test]
fn renewals_answered_with_errors_back_off_instead_of_storming() {
    let mut t = T::connected("c1");
    let (hold, events) = hold_answered(&mut t, None, Options::default(), StoreReply::Ok);
    assert!(matches!(events.as_slice(), [Event::Acquired { .. }]));
    // Every renewal is answered with a 5xx until the lease is lost.
    let mut attempts = 0;
    loop {
        t.run_to_timeout();
        for s in t.take_sent() {
            if s.verb() == "SET" {
                attempts += 1;
                protocol_error(&mut t, &s, 503);
            }
        }
        if t.take_events()
            .iter()
            .any(|e| matches!(e, Event::Lost { op, .. } if *op == hold))
        {
            break;
        }
    }
    // A 10 s lease renewed every 3 s leaves ~7 s: retries that double from 10 ms, never waiting
    // past half the validity left, take a few dozen attempts at most (logarithmic in the lease);
    // retries every 10 ms took 681.
    assert!(
        attempts <= 32,
        "{attempts} renewal attempts before the loss"
    );
}

#[test]
fn an_acquire_that_times_out_with_its_set_in_flight_leaves_a_waiting_hold_alone() {
    let mut t = T::connected("c1");
    let (hold, events) = hold_answered(&mut t, None, Options::default(), StoreReply::Integer(-1));
    assert!(events.is_empty(), "the hold waits: {events:?}");
    let lock = t.lock("L");
    // Under the hold's own holder value a second caller is refused (one caller per holder
    // value); under another session id it runs beside the hold.
    assert_eq!(
        t.client.acquire(t.now, lock, 5 * SEC, Options::default()),
        Err(IntentError::LockInUse(hold))
    );
    let other = Options::default().with_session_id("s2").with_timeout(SEC);
    let acquire = t.client.acquire(t.now, lock, 5 * SEC, other).unwrap();
    let set = t.take_one("SET");
    t.advance(SEC); // its SET unanswered: the acquire times out, its SET is undone
    let events = t.take_events();
    assert_eq!(
        events,
        vec![Event::Failed {
            op: acquire,
            lock,
            error: OpError::Timeout
        }],
        "the hold does not end"
    );
    let _ = set;
    assert!(t.take_sent().iter().any(|s| s.verb() == "VDEL"), "undone");
    assert_eq!(
        t.client.operations_in_progress(),
        2,
        "the hold and the undoing release"
    );
    let _ = hold;
}

#[test]
fn a_try_acquire_answered_too_late_to_trust_releases_what_it_won() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .try_acquire(t.now, lock, SEC, Options::default())
        .unwrap();
    let set = t.take_one("SET");
    t.now = t.now + 2 * SEC; // the reply comes after the whole lease
    t.ok(&set);
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::LeaseLapsed
        }]
    );
    let vdel = t.take_one("VDEL");
    assert_eq!(
        vdel.command,
        Command::VDel {
            key: Bytes::from_static(b"L"),
            value: Bytes::from_static(b"c1")
        },
        "the store gave it the lock: no orphan lease until it expires"
    );
}

#[test]
fn an_edit_write_answered_after_the_lease_ended_is_indeterminate_not_written() {
    // Ended by the monotonic clock, and by a pause that only the wall clock saw.
    for pause in [false, true] {
        let mut t = T::connected_unfenced("c1");
        let lock = t.lock("L");
        let (op, _, _) = edit_to_request(&mut t, lock, StoreReply::NotFound);
        t.client
            .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"1")))
            .unwrap();
        let write = t.take_one("SET");
        let until = t.client.valid_until(lock).unwrap();
        t.now = if pause {
            Now::new(t.now.instant + MS, t.now.wall_ms + 300_000)
        } else {
            t.now + (until - t.now.instant) + MS
        };
        t.ok(&write);
        let events = t.take_events();
        assert!(
            events.contains(&Event::Failed {
                op,
                lock,
                error: OpError::Indeterminate
            }),
            "pause {pause}: {events:?}"
        );
    }
}

#[test]
fn one_holder_value_has_one_caller_per_lock_and_holder_values_cannot_collide() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let first = t
        .client
        .try_acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    // While the first attempt runs, and once it holds the lock, a second caller under the same
    // holder value is refused: the store could not tell the two apart.
    assert_eq!(
        t.client.acquire(t.now, lock, 5 * SEC, Options::default()),
        Err(IntentError::LockInUse(first))
    );
    let set = t.take_one("SET");
    t.ok(&set);
    acquired(&t.take_events(), first);
    for second in [
        t.client
            .try_acquire(t.now, lock, 5 * SEC, Options::default()),
        t.client.hold(t.now, lock, 5 * SEC, SEC, Options::default()),
    ] {
        assert_eq!(second, Err(IntentError::HeldLocally));
    }
    // Another session id is another holder: it contends at the store.
    let other = Options::default().with_session_id("s2");
    assert!(t.client.try_acquire(t.now, lock, 5 * SEC, other).is_ok());
    // A client id with `:` could equal another client's id with a session id.
    assert!(matches!(
        Client::new(Config::new("a:b"), t.now, 1),
        Err(leasedlock::lock::ConfigError::InvalidClientId(_))
    ));
}

#[test]
fn a_connection_reported_twice_without_a_disconnect_registers_notifications_again() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let op = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.ok(&sent[0]); // KEYNOTIFY
    let v = t.next_version();
    t.reply(&sent[1], StoreReply::Integer(-1), Some(v));
    // A driver reconnects over a new transport (`Connection::connect` while connected): the old
    // connection's registrations are gone with it.
    t.connect();
    let sent = t.take_sent();
    assert_eq!(
        sent.iter().map(Sent::verb).collect::<Vec<_>>(),
        vec!["KEYNOTIFY", "SET"],
        "registered again, then re-checked"
    );
    let _ = op;
}

#[test]
fn a_release_whose_first_vdel_may_have_deleted_the_lock_does_not_report_it_was_not_ours() {
    let mut t = T::connected("c1");
    let (lock, _) = acquire_l(&mut t, Options::default());
    let op = t.client.release(t.now, lock, Options::default()).unwrap();
    t.take_one("VDEL");
    // The connection drops with the VDEL unanswered: it may have been applied.
    t.client.handle_disconnected(t.now);
    t.connect();
    let again = t
        .take_sent()
        .into_iter()
        .find(|s| s.verb() == "VDEL")
        .expect("the VDEL is sent again");
    t.reply(&again, StoreReply::Integer(0), None); // the first one deleted it
    assert_eq!(
        t.take_events(),
        vec![Event::Released {
            op,
            lock,
            was_held: true
        }]
    );
}

/// A write fenced with the lease's token is given up when the lease ends: its message expires
/// with the lease (and the connection drops it if it has not left by then), and a reply that
/// comes after the lease cannot say whether it landed under it: `Indeterminate`, not `Written`.
#[test]
fn a_fenced_write_answered_after_its_lease_ended_is_indeterminate() {
    let mut t = T::connected("c1");
    let (lock, _) = acquire_l(&mut t, Options::default());
    let until = t.client.valid_until(lock).unwrap();
    // Two seconds of validity left, less than the request timeout.
    t.advance(until - t.now.instant - 2 * SEC);
    let op = access(
        &mut t,
        lock,
        Access::Set(Bytes::from_static(b"v")),
        Fence::Held,
        Options::default(),
    );
    let set = t.take_one("SET");
    assert_eq!(
        set.message.message_expiry,
        Some(2),
        "expires with the lease"
    );
    assert!(t.client.config().request_timeout > 2 * SEC);
    // The reply comes after the lease's end: the end is handled first.
    t.advance(2 * SEC + MS);
    t.ok(&set);
    let events = t.take_events();
    assert!(
        events.contains(&Event::Failed {
            op,
            lock,
            error: OpError::Indeterminate
        }),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Accessed { .. })));
}

/// Runs a (fenced) edit of `K`, read as `7`, until the user is asked; returns (op, token).
fn fenced_edit_to_request(t: &mut T, lock: LockId) -> (OpId, Hlc) {
    let (op, token, fence) = edit_to_fence(t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    t.ok(&fence);
    assert!(matches!(
        t.take_events().as_slice(),
        [Event::EditRequested { .. }]
    ));
    (op, token)
}

/// A fenced write may leave only while its lease holds, by both clocks, at the reading of the
/// moment it is written. Whole-millisecond wall readings may step up to a millisecond ahead of
/// the true wall time, and a monotonic clock within the drift bound lags it: the write's send-by
/// deadline is counted short by both, so that at every later reading the engine either still holds
/// the lease or no longer awaits the write.
#[test]
fn a_fenced_write_is_given_up_before_the_lease_ends_by_either_clock() {
    // Without the edit fence the lease stays while the write is in flight (a fenced edit
    // releases the lock behind its write); the write's send-by instant is the same.
    let mut t = T::connected_unfenced("c1");
    let ppm = u64::from(t.client.config().clock_rate_drift_ppm);
    assert!(ppm > 0, "the default config bounds a drift");
    let lock = t.lock("L");
    let (op, token, _) = edit_to_request(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    // The wall clock runs 10 ms ahead of the monotonic one (within the pause slack): the lease's
    // end by the wall clock comes first.
    t.now = Now::new(t.now.instant + SEC, t.now.wall_ms + 1_010);
    t.client.handle_timeout(t.now);
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"8")))
        .unwrap();
    let write = t.take_one("SET");
    assert_eq!(write.prop("__ft"), Some(token.to_string().as_str()));
    let cd = write.message.correlation_data.clone().unwrap();
    let (written_at, wall_at) = (t.now.instant, t.now.wall_ms);
    // The readings of a world in which the true wall time was 0.9995 ms past `wall_at` when the
    // write was made and the monotonic clock runs slow by the whole drift bound: wall reading
    // `wall_at + w` comes (w − 1 ms + 1 µs) of wall time later.
    let mut given_up = false;
    for w in 1..10_000u64 {
        let wall = Duration::from_millis(w) - MS + Duration::from_micros(1);
        let mono = wall - wall * u32::try_from(ppm).unwrap() / 1_000_000;
        let r = Now::new(written_at + mono, wall_at + w);
        t.client.handle_timeout(r);
        t.drain();
        if !t.client.awaits(&cd) {
            given_up = true;
            break;
        }
        assert!(
            t.client.token(r, lock).is_some(),
            "the write is still awaited {w} ms of wall time after it was made, at a reading at \
             which the lease no longer holds"
        );
    }
    assert!(given_up, "the write is given up before its lease ends");
}

/// The send-by instant of a fenced write is the end of its lease for it: when the write goes
/// unanswered until then, it is not repeated in the moments the lease may have left by a later
/// reading, and the edit ends `Indeterminate` (the write may have landed).
#[test]
fn a_fenced_write_unanswered_by_the_end_of_its_lease_is_not_repeated() {
    // Without the edit fence: a fenced edit releases the lock behind its write and never
    // repeats it (`a_fenced_edit_releases_the_lock_right_behind_its_write`).
    let mut t = T::connected_unfenced("c1");
    let lock = t.lock("L");
    let (op, _, _) = edit_to_request(&mut t, lock, StoreReply::Value(Bytes::from_static(b"7")));
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"8")))
        .unwrap();
    let write = t.take_one("SET");
    let cd = write.message.correlation_data.clone().unwrap();
    // The next deadline is the write's; both clocks reach it at the same rate, so the lease still
    // holds there by this reading.
    let at = t.client.poll_timeout().expect("the write's deadline");
    let reading = t.now + at.saturating_duration_since(t.now.instant);
    assert!(
        t.client.is_held(reading, lock),
        "the lease holds by this reading"
    );
    t.run_to_timeout();
    assert!(
        !t.client.awaits(&cd),
        "the write was given up at its deadline"
    );
    assert!(
        t.take_sent().iter().all(|s| s.verb() != "SET"),
        "the write is repeated in the last moments of its lease"
    );
    assert!(
        matches!(
            t.take_events().as_slice(),
            [Event::Failed {
                error: OpError::Indeterminate,
                ..
            }]
        ),
        "the edit ends with its outcome unknown"
    );
}

/// An operation held behind a release's VDEL whose deadline comes at the very instant the VDEL's
/// timeout lifts the barrier ends with `Timeout` and sends nothing: a SET made and given up in
/// the same call would leave unawaited (simulator seed 1000404, S7).
#[test]
fn an_operation_whose_deadline_comes_with_the_barrier_lifting_sends_nothing() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let rel = t.client.release(t.now, lock, Options::default()).unwrap();
    let _vdel = t.take_one("VDEL");
    t.client.cancel(t.now, rel).unwrap();
    t.take_events();
    let timeout = t.client.config().request_timeout;
    let op = t
        .client
        .try_acquire(
            t.now,
            lock,
            10 * SEC,
            Options::default().with_timeout(timeout),
        )
        .unwrap();
    assert!(
        t.take_sent().is_empty(),
        "no SET while the VDEL is in flight"
    );
    t.run_to_timeout(); // the VDEL's request timeout and the operation's deadline
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::Timeout
        }]
    );
    let sent = t.take_sent();
    assert!(
        sent.iter().all(|s| s.verb() != "SET"),
        "a SET made for an operation that ends in the same call"
    );
}

/// A fenced edit releases the lock right behind its write: the VDEL goes out with the write, not
/// a round trip later after the write's answer, and the lease goes with it, so a write that is
/// lost is never repeated (the edit ends `Indeterminate`) and no renewal or second release
/// follows. Without the fence the VDEL still waits for the write's answer
/// (`edit_reads_writes_with_the_newest_token_then_releases`).
#[test]
fn a_fenced_edit_releases_the_lock_right_behind_its_write() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let (op, token) = fenced_edit_to_request(&mut t, lock);
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"8")))
        .unwrap();
    let (write, vdel) = t.take_write_and_release("SET");
    assert_eq!(write.prop("__ft"), Some(token.to_string().as_str()));
    assert!(
        !t.client.is_held(t.now, lock),
        "the lease went with the VDEL"
    );
    assert_eq!(
        t.client.write_token(t.now, lock).map(ToString::to_string),
        Some(token.to_string()),
        "the write still goes under the released lease"
    );
    t.reply(&vdel, StoreReply::Integer(1), None);
    assert_eq!(
        t.take_events(),
        vec![],
        "the edit waits for its write's answer"
    );
    t.ok(&write);
    assert_eq!(
        t.client.write_token(t.now, lock),
        None,
        "nothing left to write"
    );
    assert_eq!(
        t.take_events(),
        vec![Event::EditDone {
            op,
            lock,
            outcome: EditOutcome::Written
        }]
    );
    assert!(
        t.take_sent().iter().all(|s| s.verb() != "VDEL"),
        "released once"
    );

    // A write whose answer is lost: its connection ends before the answer. It is not sent
    // again on the next connection: the lock was released behind it.
    let (op, _) = fenced_edit_to_request(&mut t, lock);
    t.client
        .complete_edit(t.now, op, EditAction::Set(Bytes::from_static(b"9")))
        .unwrap();
    t.take_write_and_release("SET");
    t.client.handle_disconnected(t.now);
    t.drain();
    assert_eq!(
        t.take_events(),
        vec![Event::Failed {
            op,
            lock,
            error: OpError::Indeterminate
        }]
    );
    t.connect();
    assert!(
        t.take_sent().iter().all(|s| s.verb() != "SET"),
        "the write is not repeated once the lock went with it"
    );
}

/// Acquires `lock` after one refusal and a DELETE, every reply `rt` after its request; releases
/// it (the VDEL answered at once) and returns the instant the release started.
fn contended_acquire_and_release(t: &mut T, lock: LockId, rt: Duration) -> Instant {
    let op = t
        .client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    let sent = t.take_sent();
    t.advance(rt);
    for s in &sent {
        match s.verb() {
            "SET" => t.reply(s, StoreReply::Integer(-1), None),
            _ => {
                t.ok(s);
            }
        }
    }
    t.notify("L", NotificationOp::Delete, None);
    let set = t.take_one("SET");
    t.advance(rt);
    t.ok(&set);
    acquired(&t.take_events(), op);
    t.take_sent();
    let released_at = t.now.instant;
    t.release_deleting(lock);
    released_at
}

/// The hold-back after releasing a contended lock counts the measured round trip: a waiter woken
/// by the DELETE has its SET at the store a round trip and a half after the VDEL left, and the
/// releaser's next SET, sent when its requests are answered, would otherwise tie with it at any
/// latency (BENCHMARKS.md: 6–70× between 8 workers over a 5 ms link before). A stalled answer
/// cannot make it longer than the safety margin.
#[test]
fn the_hold_back_after_a_contended_release_counts_the_round_trip() {
    let mut t = T::connected("c1");
    let lock = t.lock("L");
    let holdback = t.client.config().release_holdback;
    let jitter = t.client.config().retry_jitter_max;
    let rt = 40 * MS;
    let released_at = contended_acquire_and_release(&mut t, lock, rt);
    t.client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    assert!(t.take_sent().iter().all(|s| s.verb() != "SET"));
    t.run_to_timeout();
    assert!(
        t.now.instant >= released_at + holdback + rt,
        "held back {:?}, less than the hold-back and a round trip",
        t.now.instant - released_at
    );
    assert!(t.now.instant <= released_at + holdback + rt + jitter);
    let set = t.take_one("SET");
    t.ok(&set);
    t.take_events();
    t.take_sent();

    // Answers stalled for seconds: the round trip counts up to the safety margin only.
    let mut t = T::connected("c2");
    let lock = t.lock("L");
    let margin = t.client.config().safety_margin;
    let released_at = contended_acquire_and_release(&mut t, lock, 2 * SEC);
    t.client
        .acquire(t.now, lock, 5 * SEC, Options::default())
        .unwrap();
    assert!(t.take_sent().iter().all(|s| s.verb() != "SET"));
    t.run_to_timeout();
    assert!(t.now.instant >= released_at + holdback + margin);
    assert!(t.now.instant <= released_at + holdback + margin + jitter);
    assert_eq!(t.take_one("SET").verb(), "SET");
}

#[test]
fn operation_indexes_are_dense_and_an_ended_operations_index_is_reused() {
    let mut t = T::connected("c1");
    let locks: Vec<_> = ["A", "B", "C"].iter().map(|n| t.lock(n)).collect();
    let ops: Vec<_> = locks
        .iter()
        .map(|&lock| {
            t.client
                .try_acquire(t.now, lock, SEC, Options::default())
                .unwrap()
        })
        .collect();
    let mut indexes: Vec<_> = ops.iter().map(|op| op.index()).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        [0, 1, 2],
        "three live operations: indexes below three"
    );
    // B's try_acquire ends (busy); the next operation takes its index, under another id.
    let sets = t.take_sent();
    assert_eq!(sets.iter().map(Sent::verb).collect::<Vec<_>>(), ["SET"; 3]);
    let v = t.next_version();
    t.reply(&sets[1], StoreReply::Integer(-1), Some(v));
    assert_eq!(
        t.take_events(),
        vec![Event::Busy {
            op: ops[1],
            lock: locks[1]
        }]
    );
    let next = t
        .client
        .try_acquire(t.now, locks[1], SEC, Options::default())
        .unwrap();
    assert_eq!(next.index(), ops[1].index());
    assert_ne!(next, ops[1]);
}
