//! Real-broker scenarios run by every adapter: mosquitto (or the test kit's embedded broker), the
//! state-store emulator connected to it, and lock clients through the adapter under test.
//!
//! The including test crate names its adapter `crate::adapter` and implements [`Rt`] for each
//! runtime, then expands `scenarios!(RtType)`. No scenario relies on a sleep to pass: each waits
//! for events, bounded by a generous [`WAIT`].

use crate::adapter::leasedlock::bytes::Bytes;
use crate::adapter::leasedlock::lock::{
    EditAction, EditOutcome, Holder, IntentError, LossReason, OpError, Options,
};
use crate::adapter::leasedlock::mqtt::DisconnectCause;
use crate::adapter::leasedlock::store::ServiceError;
use crate::adapter::{
    Change, Client, ConnectionState, Disconnection, Error, Hold, HoldEvent, Lease, Settings,
};
use leasedlock_testkit::{Broker, Direction, Proxy, StoreEmulator};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Bound on any single wait; reaching it fails the test.
pub const WAIT: Duration = Duration::from_secs(20);
const LEASE: Duration = Duration::from_secs(10);
/// The keep-alive of the clients under network faults: a silence is noticed after 1.5 of it.
const FAULT_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Their connect timeout, so that an attempt into a frozen network is given up soon.
const FAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The lease of the locks under faults: short, so that a lost holder's lease ends soon.
const FAULT_LEASE: Duration = Duration::from_secs(2);

/// What a scenario needs from a runtime.
pub trait Rt: 'static {
    /// A running driver.
    type Task;
    /// Run a future to completion on this runtime.
    fn block_on<F: Future>(f: F) -> F::Output;
    /// Connect a client; its driver runs as `Task`.
    fn connect(settings: &Settings) -> (Client, Self::Task);
    /// Kill a driver without releasing anything.
    fn kill(task: Self::Task) -> impl Future<Output = ()>;
    /// Sleep (only to hold a lock for a moment, never to wait for an outcome).
    fn sleep(d: Duration) -> impl Future<Output = ()>;
    /// Whether the lock goes on over this carrier after the broker forgot its MQTT session (the
    /// test broker restarted without persistence). The AIO SDK's session ends then
    /// (`SessionLost`), as it must on a broker that keeps sessions.
    const SURVIVES_A_FORGOTTEN_SESSION: bool = true;
    /// Whether the lock's side reconnects and tells why a connection ended (a session
    /// takeover). A client that reconnects on its own terms and reports only up or down (the
    /// AIO SDK's session monitor) does not.
    const TELLS_TAKEOVERS: bool = true;
    /// Run blocking code off the runtime's threads.
    fn unblock<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T>;
}

/// A broker and a store emulator for one test.
pub struct Env {
    broker: Arc<Mutex<Broker>>,
    _store: StoreEmulator,
    port: u16,
    test: &'static str,
}

static NEXT_CLIENT: AtomicU32 = AtomicU32::new(0);

impl Env {
    pub fn start(test: &'static str) -> Env {
        Env::with_broker(test, Broker::start())
    }

    fn with_broker(test: &'static str, broker: Broker) -> Env {
        let store = StoreEmulator::start(broker.addr());
        Env {
            port: broker.addr().port(),
            broker: Arc::new(Mutex::new(broker)),
            _store: store,
            test,
        }
    }

    /// Whether a broker restart can be tested over `R` (said when not).
    fn restarts_keep_the_lock_going<R: Rt>(&self) -> bool {
        let why = if !self.broker.lock().unwrap().can_restart() {
            "the broker cannot restart"
        } else if !R::SURVIVES_A_FORGOTTEN_SESSION {
            "the carrier ends its session when the restarted broker has forgotten it"
        } else {
            return true;
        };
        eprintln!("skipped: {why}");
        false
    }

    fn can_pause(&self) -> bool {
        self.broker.lock().unwrap().can_pause()
    }

    fn settings(&self, name: &str) -> Settings {
        self.settings_at(name, self.port)
    }

    /// A client's settings for the broker listening on `port` (or a proxy in front of it).
    fn settings_at(&self, name: &str, port: u16) -> Settings {
        let id = format!(
            "{}-{name}-{}",
            self.test,
            NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
        );
        let mut s = Settings::new("127.0.0.1", port, id);
        s.reconnect_max = Duration::from_millis(300);
        s
    }

    fn client<R: Rt>(&self, name: &str) -> (Client, R::Task, String) {
        let s = self.settings(name);
        let (client, task) = R::connect(&s);
        (client, task, s.lock.client_id)
    }

    /// A client whose network faults the test drives: connected through its own proxy, with
    /// the short [`FAULT_KEEP_ALIVE`] and [`FAULT_CONNECT_TIMEOUT`].
    fn proxied_client<R: Rt>(&self, name: &str) -> (Client, R::Task, Proxy) {
        let proxy = Proxy::start(self.broker.lock().unwrap().addr());
        let mut s = self.settings_at(name, proxy.addr().port());
        s.mqtt.keep_alive = FAULT_KEEP_ALIVE;
        s.mqtt.connect_timeout = FAULT_CONNECT_TIMEOUT;
        let (client, task) = R::connect(&s);
        (client, task, proxy)
    }

    async fn restart_broker<R: Rt>(&self) {
        let broker = self.broker.clone();
        R::unblock(move || broker.lock().unwrap().restart()).await;
    }
}

/// Waits until `watch` reports a state `wanted` accepts, and returns it.
async fn state_where<R: Rt>(
    watch: &mut crate::adapter::ConnectionWatch,
    wanted: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    loop {
        let state = within::<R, _>(watch.next()).await.expect("the driver runs");
        if wanted(&state) {
            return state;
        }
    }
}

fn is_connected(state: &ConnectionState) -> bool {
    *state == ConnectionState::Connected
}

fn is_disconnected(state: &ConnectionState) -> bool {
    matches!(state, ConnectionState::Disconnected(_))
}

/// `f`, or a panic after [`WAIT`].
pub async fn within<R: Rt, F: Future>(f: F) -> F::Output {
    bounded::<R, F>(WAIT, f)
        .await
        .unwrap_or_else(|| panic!("no outcome within {WAIT:?}"))
}

/// `f`, or `None` (and `f` dropped) after `d`.
pub async fn bounded<R: Rt, F: Future>(d: Duration, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut sleep = std::pin::pin!(R::sleep(d));
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Runs all futures concurrently to completion.
pub async fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

fn timeout(d: Duration) -> Options {
    Options::default().with_timeout(d)
}

// ----- scenarios ---------------------------------------------------------------------------------

/// Three clients take turns on one lock: never two holders at once, tokens only increase, every
/// release finds the lock ours.
pub async fn three_clients_contend<R: Rt>(env: Env) {
    let clients: Vec<_> = (0..3).map(|i| env.client::<R>(&format!("c{i}"))).collect();
    let busy = AtomicBool::new(false);
    let tokens = Mutex::new(Vec::new());
    let work = clients
        .iter()
        .map(|(client, _, _)| {
            let (busy, tokens) = (&busy, &tokens);
            Box::pin(async move {
                for _ in 0..4 {
                    let lease = within::<R, _>(client.acquire("L", LEASE, timeout(WAIT)))
                        .await
                        .unwrap();
                    assert!(!busy.swap(true, Ordering::SeqCst), "two holders at once");
                    tokens.lock().unwrap().push(lease.token);
                    R::sleep(Duration::from_millis(2)).await;
                    busy.store(false, Ordering::SeqCst);
                    assert!(client.release("L", Options::default()).await.unwrap());
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    join_all(work).await;
    let tokens = tokens.into_inner().unwrap();
    assert_eq!(tokens.len(), 12);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// A waiter gets the lock when the holder releases it.
pub async fn handoff_on_release<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, b_id) = env.client::<R>("b");
    let first = a.acquire("L", LEASE, timeout(WAIT)).await.unwrap();
    assert_eq!(
        b.try_acquire("L", LEASE, Options::default()).await,
        Ok(None)
    );
    let waiter = b.acquire("L", LEASE, timeout(WAIT));
    let releaser = async {
        R::sleep(Duration::from_millis(50)).await;
        assert!(a.release("L", Options::default()).await.unwrap());
    };
    let (second, ()) = within::<R, _>(join2(waiter, releaser)).await;
    let second = second.unwrap();
    assert!(second.token > first.token);
    let holder = a.holder("L", Options::default()).await.unwrap();
    assert_eq!(holder.as_ref().map(Holder::as_bytes), Some(b_id.as_bytes()));
}

/// A holder killed without releasing: the waiter gets the lock once the lease expires.
pub async fn handoff_on_expiry_after_kill<R: Rt>(env: Env) {
    let (a, ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let first = a
        .acquire("L", Duration::from_millis(800), timeout(WAIT))
        .await
        .unwrap();
    R::kill(ta).await;
    let second = within::<R, _>(b.acquire("L", LEASE, timeout(WAIT)))
        .await
        .unwrap();
    assert!(second.token > first.token);
    // The killed client's handle reports its driver gone.
    assert_eq!(a.holder("L", Options::default()).await, Err(Error::Closed));
}

/// A hold renews with ever newer tokens, then closes and frees the lock.
pub async fn hold_renews_with_newer_tokens<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let mut hold = a
        .hold(
            "L",
            Duration::from_secs(2),
            Duration::from_millis(150),
            Options::default(),
        )
        .await
        .unwrap();
    let mut last = hold.token().expect("a fresh hold has a token");
    let watch = hold.watch();
    for _ in 0..3 {
        // The token is read through the watch while the hold's events are awaited.
        let (event, seen) = join2(within::<R, _>(hold.next_event()), async { watch.token() }).await;
        assert!(seen.is_some_and(|t| t >= last));
        match event {
            Some(HoldEvent::Renewed(lease)) => {
                assert!(lease.token > last);
                last = lease.token;
            }
            other => panic!("expected a renewal, got {other:?}"),
        }
    }
    assert!(hold.token().is_some_and(|t| t >= last));
    assert!(watch.token().is_some_and(|t| t >= last));
    assert!(hold.close().await.unwrap());
    assert_eq!(watch.token(), None, "closed: no token");
    assert_eq!(a.holder("L", Options::default()).await, Ok(None));
}

/// A hold whose events nobody reads keeps renewing (its token stays current) with at most one
/// unread event waiting: renewals are coalesced. The reader then sees the latest renewal.
pub async fn undrained_hold_stays_bounded<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let mut hold = a
        .hold("L", LEASE, Duration::from_millis(20), Options::default())
        .await
        .unwrap();
    let mut last = hold.token().expect("a fresh hold has a token");
    let mut renewals_seen = 0;
    within::<R, _>(async {
        while renewals_seen < 25 {
            // Only to look again later: the renewals go on whether or not we look.
            R::sleep(Duration::from_millis(5)).await;
            let token = hold.token().expect("the hold keeps a valid token");
            assert!(token >= last);
            if token > last {
                renewals_seen += 1;
                last = token;
            }
            // Only renewals happen here (the lease is long): one coalesced marker at most.
            assert!(hold.queued_events() <= 1, "{}", hold.queued_events());
        }
    })
    .await;
    match within::<R, _>(hold.next_event()).await {
        Some(HoldEvent::Renewed(lease)) => assert!(lease.token >= last, "the latest renewal"),
        other => panic!("expected a renewal, got {other:?}"),
    }
    assert!(hold.queued_events() <= 1);
    assert!(hold.close().await.unwrap());
}

/// A driver killed under pending operations: each of them ends with `Error::Closed` (or, for a
/// hold, no more events) instead of waiting for ever.
pub async fn killed_driver_closes_pending_operations<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, tb, _) = env.client::<R>("b");
    a.acquire("L", LEASE, Options::default()).await.unwrap();
    let mut waiting = Box::pin(b.acquire("L", LEASE, Options::default()));
    // Polled once: its start is queued before the hold's, so it is running once the hold is.
    assert!(bounded::<R, _>(Duration::ZERO, waiting.as_mut())
        .await
        .is_none());
    let mut hold = b
        .hold("H", LEASE, Duration::from_secs(1), Options::default())
        .await
        .unwrap();
    R::kill(tb).await;
    assert_eq!(within::<R, _>(waiting).await, Err(Error::Closed));
    assert_eq!(within::<R, _>(hold.next_event()).await, None);
    assert_eq!(hold.error(), Some(&Error::Closed), "why the hold ended");
    assert_eq!(b.holder("L", Options::default()).await, Err(Error::Closed));
    assert!(a.release("L", Options::default()).await.unwrap());
}

fn parse(value: Option<Bytes>) -> u64 {
    value.map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

/// Several clients increment one counter by edits: no increment is lost.
pub async fn edits_count_exactly<R: Rt>(env: Env) {
    let clients: Vec<_> = (0..3).map(|i| env.client::<R>(&format!("e{i}"))).collect();
    let work = clients
        .iter()
        .map(|(client, _, _)| {
            Box::pin(async move {
                for _ in 0..5 {
                    let outcome = within::<R, _>(client.edit(
                        "L",
                        "counter",
                        LEASE,
                        timeout(WAIT),
                        |current| async move {
                            EditAction::Set(Bytes::from((parse(current) + 1).to_string()))
                        },
                    ))
                    .await
                    .unwrap();
                    assert_eq!(outcome, EditOutcome::Written);
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    join_all(work).await;
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let outcome = clients[0]
        .0
        .edit(
            "L",
            "counter",
            LEASE,
            Options::default(),
            |current| async move {
                *s.lock().unwrap() = Some(parse(current));
                EditAction::Abort
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome, EditOutcome::Unchanged);
    assert_eq!(*seen.lock().unwrap(), Some(15));
}

/// The holder value carries the session id; another session of the same client is another
/// holder.
pub async fn session_ids_make_distinct_holders<R: Rt>(env: Env) {
    let (a, _ta, a_id) = env.client::<R>("a");
    let s1 = Options::default().with_session_id("s1");
    let s2 = Options::default().with_session_id("s2");
    a.acquire("L", LEASE, s1.clone()).await.unwrap();
    let holder = a.holder("L", Options::default()).await.unwrap();
    assert!(holder.is_some_and(|h| h.is(&a_id, Some("s1"))));
    assert_eq!(a.release("L", s2.clone()).await, Ok(false));
    assert!(a.release("L", s1.clone()).await.unwrap());
    assert!(a
        .try_acquire("L", LEASE, s2.clone())
        .await
        .unwrap()
        .is_some());
    assert!(a.release("L", s2.clone()).await.unwrap());
    // A release under another session leaves this session's hold alone: it keeps its token
    // and goes on renewing.
    let mut hold = a
        .hold("H", LEASE, Duration::from_millis(200), s1)
        .await
        .unwrap();
    assert_eq!(a.release("H", s2).await, Ok(false));
    assert!(hold.token().is_some());
    assert!(matches!(
        within::<R, _>(hold.next_event()).await,
        Some(HoldEvent::Renewed(_))
    ));
    assert!(hold.close().await.unwrap(), "still ours at the store");
}

/// `holder` reads the lock; an observer sees it taken and released.
pub async fn holder_and_observe<R: Rt>(env: Env) {
    let (a, _ta, a_id) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    assert_eq!(b.holder("L", Options::default()).await, Ok(None));
    let mut observer = b.observe("L").await.unwrap();
    // The KEYNOTIFY registration may reach the store after a first change: take the lock until
    // the observer has seen it taken (each round waits for an event, none relies on a sleep).
    loop {
        a.acquire("L", LEASE, timeout(WAIT)).await.unwrap();
        let seen = bounded::<R, _>(Duration::from_millis(500), async {
            loop {
                match observer.next().await {
                    Some(Ok(Change::Held(h))) if h.is(&a_id, None) => return,
                    Some(Ok(_)) => {}
                    other => panic!("observer ended: {other:?}"),
                }
            }
        })
        .await;
        if seen.is_some() {
            break;
        }
        a.release("L", Options::default()).await.unwrap();
    }
    let holder = b.holder("L", Options::default()).await.unwrap();
    assert_eq!(holder.as_ref().map(Holder::as_bytes), Some(a_id.as_bytes()));
    assert!(a.release("L", Options::default()).await.unwrap());
    assert_eq!(
        within::<R, _>(observer.next()).await,
        Some(Ok(Change::Free))
    );
}

/// Operation timeouts end the wait with `Timeout`.
pub async fn timeouts<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    a.acquire("L", LEASE, Options::default()).await.unwrap();
    let waited = within::<R, _>(b.acquire("L", LEASE, timeout(Duration::from_millis(300)))).await;
    assert_eq!(waited, Err(Error::Op(OpError::Timeout)));
    let held = within::<R, _>(b.hold(
        "L",
        LEASE,
        Duration::from_secs(1),
        timeout(Duration::from_millis(300)),
    ))
    .await;
    assert_eq!(held.unwrap_err(), Error::Op(OpError::Timeout));
    // Misuse is refused at once.
    assert!(matches!(
        b.acquire("L", LEASE, timeout(Duration::ZERO)).await,
        Err(Error::Intent(_))
    ));
}

/// Dropping a waiting acquire cancels it: it never takes the lock later. Dropping a hold
/// releases the lock.
pub async fn cancel_by_drop<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let (c, _tc, c_id) = env.client::<R>("c");
    a.acquire("L", LEASE, Options::default()).await.unwrap();
    // b waits, then gives up by dropping its future.
    let gave_up = bounded::<R, _>(
        Duration::from_millis(300),
        b.acquire("L", Duration::from_secs(60), Options::default()),
    )
    .await;
    assert!(gave_up.is_none());
    assert!(a.release("L", Options::default()).await.unwrap());
    // Had b's waiter survived, it would hold the lock for a minute and c would time out.
    within::<R, _>(c.acquire("L", LEASE, timeout(Duration::from_secs(5))))
        .await
        .unwrap();
    let holder = b.holder("L", Options::default()).await.unwrap();
    assert_eq!(holder.as_ref().map(Holder::as_bytes), Some(c_id.as_bytes()));
    assert!(c.release("L", Options::default()).await.unwrap());

    // A dropped hold releases the lock.
    let hold = b
        .hold(
            "H",
            Duration::from_secs(60),
            Duration::from_secs(5),
            Options::default(),
        )
        .await
        .unwrap();
    drop(hold);
    within::<R, _>(c.acquire("H", LEASE, timeout(Duration::from_secs(5))))
        .await
        .unwrap();
}

/// The `Lease` of an `acquire` reads invalid as soon as the client learns that the lease is
/// gone before its time: the store reports the lock deleted by someone else, or the client
/// released it.
pub async fn a_lease_taken_away_or_released_reads_invalid<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let mut changes = a.observe("L").await.unwrap();
    // Longer than `WAIT`: only the news of its end can make it invalid within the test.
    let lease = a
        .acquire("L", Duration::from_secs(60), Options::default())
        .await
        .unwrap();
    assert!(lease.is_valid());
    // Someone deletes the lock under a's feet: a hears of it, and its lease is gone.
    assert!(b.delete("L", None, Options::default()).await.unwrap());
    within::<R, _>(async {
        while let Some(change) = changes.next().await {
            if change.unwrap() == Change::Free {
                return;
            }
        }
        panic!("the observer ended");
    })
    .await;
    within::<R, _>(async {
        while lease.is_valid() {
            R::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // A released lease reads invalid at once.
    let again = a.acquire("L", LEASE, Options::default()).await.unwrap();
    assert!(again.is_valid() && again.token > lease.token);
    assert!(a.release("L", Options::default()).await.unwrap());
    assert!(!again.is_valid());
}

/// An `acquire` dropped after its SET won but before its future read the win (a `select!` or
/// a timeout racing it) releases the lock: the win is not leaked until the lease runs out.
pub async fn a_win_nobody_read_is_released<R: Rt>(env: Env) {
    let (a, _ta, a_id) = env.client::<R>("a");
    let (c, _tc, _) = env.client::<R>("c");
    let mut won = Box::pin(a.acquire("L", Duration::from_secs(60), Options::default()));
    // One poll sends the intent; the future is not polled again.
    poll_fn(|cx| {
        assert!(won.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    // a's own answer of the holder comes after its SET's reply on the same topic: once a reads
    // itself as the holder, its win waits, unread, in the dropped future's slot.
    let holder = within::<R, _>(a.holder("L", Options::default()))
        .await
        .unwrap();
    assert_eq!(holder.as_ref().map(Holder::as_bytes), Some(a_id.as_bytes()));
    drop(won);
    // Leaked, the lease would keep c out for a minute.
    within::<R, _>(c.acquire("L", LEASE, timeout(Duration::from_secs(5))))
        .await
        .unwrap();
    assert!(c.release("L", Options::default()).await.unwrap());
    // And a can take the lock again: the abandoned win left no caller behind.
    let lease = a.try_acquire("L", LEASE, Options::default()).await.unwrap();
    assert!(lease.is_some());
}

/// A broker given by host name: the adapter resolves it (the async-io adapter off the
/// executor's threads) and the lock works as over an address.
pub async fn a_broker_named_by_host_name_is_reached<R: Rt>(env: Env) {
    let mut settings = env.settings("a");
    settings.host = "localhost".into();
    let (a, _ta) = R::connect(&settings);
    within::<R, _>(a.connected()).await.unwrap();
    assert!(a
        .try_acquire("L", LEASE, Options::default())
        .await
        .unwrap()
        .is_some());
    assert!(a.release("L", Options::default()).await.unwrap());
}

/// The broker restarts during a hold: the hold reports a renewal (or a loss and a new
/// acquisition) after reconnecting, and has a token again.
pub async fn broker_restart_during_hold<R: Rt>(env: Env) {
    if !env.restarts_keep_the_lock_going::<R>() {
        return;
    }
    let (a, _ta, _) = env.client::<R>("a");
    let mut hold = a
        .hold(
            "L",
            Duration::from_secs(3),
            Duration::from_secs(1),
            Options::default(),
        )
        .await
        .unwrap();
    env.restart_broker::<R>().await;
    loop {
        match within::<R, _>(hold.next_event()).await {
            Some(HoldEvent::Renewed(_) | HoldEvent::Acquired(_)) => break,
            Some(_) => {} // a loss while the broker was away
            None => panic!("the hold ended"),
        }
    }
    assert!(hold.token().is_some());
    assert!(within::<R, _>(hold.close()).await.unwrap());
}

/// The broker restarts while a client waits: the waiter still gets the lock.
pub async fn broker_restart_during_wait<R: Rt>(env: Env) {
    if !env.restarts_keep_the_lock_going::<R>() {
        return;
    }
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    a.acquire("L", Duration::from_secs(2), Options::default())
        .await
        .unwrap();
    let waiter = b.acquire("L", LEASE, timeout(WAIT));
    let restart = async {
        // Let the waiter register first; the outcome does not depend on it.
        R::sleep(Duration::from_millis(100)).await;
        env.restart_broker::<R>().await;
        // The release may or may not reach the store; the lease expires anyway.
        let _ = a.release("L", timeout(Duration::from_secs(5))).await;
    };
    let (won, ()) = within::<R, _>(join2(waiter, restart)).await;
    won.unwrap();
}

/// A stale fencing token is refused by the store, with its exact text: a write guarded by the
/// token of an earlier lease fails once an edit has written the key under a newer one; the token
/// of a newer lease goes through.
pub async fn stale_token_is_fenced<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let old = a.acquire("L", LEASE, Options::default()).await.unwrap();
    assert!(a.release("L", Options::default()).await.unwrap());
    let outcome = b
        .edit("L", "K", LEASE, Options::default(), |_| async {
            EditAction::Set(Bytes::from_static(b"fresh"))
        })
        .await
        .unwrap();
    assert_eq!(outcome, EditOutcome::Written);
    let refused = a
        .set("K", "stale", Some(old.token), Options::default())
        .await;
    let stale = ServiceError::FencingTokenLowerVersion;
    assert_eq!(refused, Err(Error::Op(OpError::Service(stale.clone()))));
    assert!(refused.unwrap_err().to_string().contains(stale.text()));
    let newer = a.acquire("L", LEASE, Options::default()).await.unwrap();
    a.set("K", "newer", Some(newer.token), Options::default())
        .await
        .unwrap();
    assert!(a.release("L", Options::default()).await.unwrap());
    assert_eq!(
        b.get("K", Options::default()).await.unwrap().as_deref(),
        Some(&b"newer"[..])
    );
}

/// A hold and a lock handle write the keys the lock protects with the lease's token; after the
/// lease, such a write fails without being sent; the next holder's token fences out the old one.
pub async fn fenced_store_access_with_the_held_token<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let lock = a.lock("L");
    let hold = lock
        .hold(LEASE, LEASE / 4, Options::default())
        .await
        .unwrap();
    hold.set("K", "1").await.unwrap();
    assert_eq!(hold.get("K").await.unwrap().as_deref(), Some(&b"1"[..]));
    lock.set("K2", "x", Options::default()).await.unwrap();
    assert!(hold.delete("K2").await.unwrap());
    assert!(!hold.delete("K2").await.unwrap(), "already gone");
    assert_eq!(
        b.get("K", Options::default()).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    let old = hold.token().unwrap();
    assert!(hold.close().await.unwrap());
    assert_eq!(
        lock.set("K", "late", Options::default()).await,
        Err(Error::Op(OpError::LeaseLapsed)),
        "no lease: nothing is sent"
    );
    let b_lock = b.lock("L");
    b_lock.acquire(LEASE, Options::default()).await.unwrap();
    b_lock.set("K", "2", Options::default()).await.unwrap();
    assert!(matches!(
        a.delete("K", Some(old), Options::default()).await,
        Err(Error::Op(OpError::Service(_)))
    ));
    assert_eq!(
        a.get("K", Options::default()).await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert!(b_lock.release(Options::default()).await.unwrap());
}

/// `try_hold` does not wait: busy, it is `None`; won, it renews until its first loss, which
/// ends it with `LeaseLost`.
pub async fn try_hold_does_not_wait_and_ends_at_its_first_loss<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    let interval = Duration::from_secs(2);
    a.acquire("L", LEASE, Options::default()).await.unwrap();
    let busy = b.try_hold("L", LEASE, interval, Options::default()).await;
    assert!(matches!(busy, Ok(None)), "{busy:?}");
    assert!(a.release("L", Options::default()).await.unwrap());
    let mut hold = b
        .try_hold("L", LEASE, interval, Options::default())
        .await
        .unwrap()
        .expect("free: won");
    assert!(hold.token().is_some());
    // Somebody deletes the lock key: the store no longer has b as the holder.
    assert!(a.delete("L", None, Options::default()).await.unwrap());
    let reason = LossReason::TakenAway;
    assert_eq!(
        within::<R, _>(hold.next_event()).await,
        Some(HoldEvent::Lost(reason.clone()))
    );
    assert_eq!(
        within::<R, _>(hold.next_event()).await,
        None,
        "not won again"
    );
    assert_eq!(hold.error(), Some(&Error::LeaseLost(reason)));
}

/// A campaign waits for the leader to resign, then leads; deleting the lock ends the new
/// leadership, which `lost` reports.
pub async fn election_hands_over_and_reports_the_loss<R: Rt>(env: Env) {
    let (a, _ta, a_id) = env.client::<R>("a");
    let (b, _tb, b_id) = env.client::<R>("b");
    let (ea, eb) = (a.election("E", LEASE), b.election("E", LEASE));
    let leading = ea.campaign().await.unwrap();
    assert!(leading.token().is_some());
    assert!(eb
        .leader()
        .await
        .unwrap()
        .is_some_and(|h| h.is(&a_id, None)));
    let mut changes = eb.observe().await.unwrap();
    let mut campaign = Box::pin(eb.campaign());
    assert!(bounded::<R, _>(Duration::ZERO, campaign.as_mut())
        .await
        .is_none());
    assert!(leading.resign().await.unwrap());
    let mut leading = within::<R, _>(campaign).await.unwrap();
    assert!(ea
        .leader()
        .await
        .unwrap()
        .is_some_and(|h| h.is(&b_id, None)));
    loop {
        match within::<R, _>(changes.next()).await {
            Some(Ok(Change::Held(h))) if h.is(&b_id, None) => break,
            Some(Ok(_)) => {}
            other => panic!("expected b to lead, got {other:?}"),
        }
    }
    assert!(a.delete("E", None, Options::default()).await.unwrap());
    assert_eq!(
        within::<R, _>(leading.lost()).await,
        Error::LeaseLost(LossReason::TakenAway)
    );
}

/// The metrics count what the clients did: operations by kind and outcome, locks held, the
/// waits of acquisitions, renewals and their slack.
pub async fn stats_count_operations<R: Rt>(env: Env) {
    let (a, _ta, _) = env.client::<R>("a");
    let (b, _tb, _) = env.client::<R>("b");
    a.acquire("L", LEASE, Options::default()).await.unwrap();
    assert_eq!(
        b.try_acquire("L", LEASE, Options::default()).await,
        Ok(None)
    );
    let s = a.stats().await.unwrap();
    assert_eq!((s.acquire.started, s.acquire.succeeded), (1, 1));
    assert_eq!((s.locks_held, s.acquisitions, s.connections), (1, 1, 1));
    assert_eq!(s.wait_max, s.wait_total, "one wait");
    assert!(s.requests_sent >= 2, "KEYNOTIFY and SET: {s:?}");
    assert!(a.release("L", Options::default()).await.unwrap());
    let s = a.stats().await.unwrap();
    assert_eq!((s.release.started, s.release.succeeded), (1, 1));
    assert_eq!(s.locks_held, 0);
    let s = b.stats().await.unwrap();
    let t = s.try_acquire;
    assert_eq!((t.started, t.busy, t.succeeded, t.failed), (1, 1, 0, 0));
    assert_eq!(s.acquisitions, 0, "a busy try_acquire never had the lock");
    // A call the engine refuses at once is counted apart.
    assert_eq!(
        b.try_acquire("", LEASE, Options::default()).await,
        Err(Error::Intent(IntentError::EmptyKey))
    );
    assert_eq!(b.stats().await.unwrap().try_acquire.refused, 1);
    // A hold is a lock held while it lasts; its renewals are counted with their slack.
    let mut hold = b
        .hold(
            "H",
            Duration::from_secs(2),
            Duration::from_millis(150),
            Options::default(),
        )
        .await
        .unwrap();
    match within::<R, _>(hold.next_event()).await {
        Some(HoldEvent::Renewed(_)) => {}
        other => panic!("expected a renewal, got {other:?}"),
    }
    let s = b.stats().await.unwrap();
    assert_eq!((s.hold.started, s.hold.succeeded, s.locks_held), (1, 1, 1));
    assert!(s.renewals >= 1);
    let slack = s.renewal_slack_min.expect("a renewal's slack");
    assert!(
        slack < Duration::from_secs(2),
        "within the lease: {slack:?}"
    );
    assert!(s.renewal_slack_total >= slack);
    assert!(hold.close().await.unwrap());
    let s = b.stats().await.unwrap();
    assert_eq!((s.release.succeeded, s.locks_held), (1, 0));
    // A try_hold on a held lock is busy; store accesses count as such.
    a.acquire("K", LEASE, Options::default()).await.unwrap();
    let busy = b.try_hold("K", LEASE, LEASE / 4, Options::default()).await;
    assert!(matches!(busy, Ok(None)), "{busy:?}");
    b.set("stats-key", "v", None, Options::default())
        .await
        .unwrap();
    let value = b.get("stats-key", Options::default()).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
    let s = b.stats().await.unwrap();
    assert_eq!((s.keep.started, s.keep.busy), (1, 1));
    assert_eq!((s.access.started, s.access.succeeded), (2, 2));
}

/// The connection state follows a broker restart: the watch yields `Disconnected` with the
/// cause, then `Connected`; the metrics count the reconnect. Its stream ends with the driver.
pub async fn connection_state_follows_a_broker_restart<R: Rt>(env: Env) {
    if !env.restarts_keep_the_lock_going::<R>() {
        return;
    }
    let (a, ta, _) = env.client::<R>("a");
    let mut watch = a.connection_state();
    within::<R, _>(a.connected()).await.unwrap();
    assert_eq!(watch.current(), ConnectionState::Connected);
    while within::<R, _>(watch.next()).await != Some(ConnectionState::Connected) {}
    env.restart_broker::<R>().await;
    let mut causes = Vec::new();
    loop {
        match within::<R, _>(watch.next()).await.expect("the driver runs") {
            ConnectionState::Disconnected(cause) => causes.push(cause),
            ConnectionState::Connected => break,
            _ => {}
        }
    }
    // The broker was killed: the transport closed under the session. Later attempts may have
    // found the port closed before the broker was back.
    assert_eq!(
        causes.first(),
        Some(&Disconnection::Ended(DisconnectCause::TransportClosed)),
        "{causes:?}"
    );
    let s = a.stats().await.unwrap();
    assert_eq!((s.connections, s.reconnects, s.disconnects), (2, 1, 1));
    assert_eq!(s.connect_failures, causes.len() as u64 - 1);
    // Every handle gone: the driver disconnects and stops, and the stream ends.
    drop(a);
    while within::<R, _>(watch.next()).await.is_some() {}
    drop(ta);
}

/// Two clients under one client id: each connection takes the session from the other
/// (DISCONNECT 0x8E). The one taken over reports it as such, and the pair backs off instead of
/// taking the session in turns. Over the test kit's embedded broker, which sends the DISCONNECT
/// 0x8E as the AIO broker does.
pub async fn a_session_takeover_is_reported_and_backs_off<R: Rt>(env: Env) {
    let env = Env::with_broker(env.test, Broker::embedded());
    twins_back_off::<R>(&env, Some(Disconnection::TakenOver)).await;
}

/// The same over mosquitto (when the machine has it), which closes the taken-over connection
/// without a DISCONNECT: the connections that end right after their CONNACK back off all the
/// same, since a CONNACK alone does not reset the reconnect backoff.
pub async fn a_takeover_without_a_reason_code_backs_off_too<R: Rt>(env: Env) {
    twins_back_off::<R>(&env, None).await;
}

/// Two clients with one id. The first reports the loss of its connection (as `cause` when
/// given); over a few seconds the two connect a handful of times, where a tight loop would
/// connect every few tens of milliseconds, dozens of times.
async fn twins_back_off<R: Rt>(env: &Env, cause: Option<Disconnection>) {
    if !R::TELLS_TAKEOVERS {
        eprintln!("skipped: the carrier does not tell why a connection ended");
        return;
    }
    let settings = env.settings("twin");
    let (a, _ta) = R::connect(&settings);
    within::<R, _>(a.connected()).await.unwrap();
    let mut watch = a.connection_state();
    let (b, _tb) = R::connect(&settings);
    // The first connection is ended, with `cause` among its reports when given (under load a
    // socket closed before its DISCONNECT was read shows as another cause first).
    loop {
        let state = within::<R, _>(watch.next()).await.expect("the driver runs");
        match (state, &cause) {
            (ConnectionState::Disconnected(seen), Some(cause)) if seen == *cause => break,
            (ConnectionState::Disconnected(_), None) => break,
            _ => {}
        }
    }
    if cause == Some(Disconnection::TakenOver) {
        assert!(a.stats().await.unwrap().takeovers >= 1);
    }
    // The window over which the connections are counted (the outcome is in the counts).
    R::sleep(Duration::from_secs(3)).await;
    let (sa, sb) = (a.stats().await.unwrap(), b.stats().await.unwrap());
    let connections = sa.connections + sb.connections;
    assert!(
        connections <= 12,
        "{connections} connections: a: {sa:?}, b: {sb:?}"
    );
}

/// A request published before the state store is up gets a PUBACK with reason 0x10 (no
/// matching subscribers): the transport maps it, and the engine repeats the request shortly
/// instead of waiting for its (here one-minute) timeout. Once the store is up, the lock is won.
/// Run by the tests of the transports over an application's client (not part of
/// [`scenarios!`]: it needs no store to start with).
#[allow(dead_code)]
pub async fn a_puback_without_subscribers_repeats_the_request<R: Rt>(test: &str) {
    let broker = Broker::start();
    let addr = broker.addr();
    let mut settings = Settings::new("127.0.0.1", addr.port(), test);
    settings.lock.request_timeout = Duration::from_secs(60);
    let (client, _task) = R::connect(&settings);
    within::<R, _>(client.connected()).await.unwrap();
    let acquire = client.try_acquire("L", LEASE, timeout(WAIT));
    let start_store = async {
        // The store starts once a request has been repeated: only a mapped PUBACK can repeat it
        // before the minute is over.
        while client.stats().await.unwrap().retries == 0 {
            R::sleep(Duration::from_millis(20)).await;
        }
        StoreEmulator::start(addr)
    };
    let (won, _store) = within::<R, _>(join2(acquire, start_store)).await;
    assert!(won.unwrap().is_some(), "free once the store is up");
}

// ----- network and broker faults -------------------------------------------------------------

/// Waits for `hold` (on lock `L`) to be lost and for `other` to acquire `L`, and checks that
/// the loss was reported first and that the hold had no token once `other` held the lock.
/// Returns `other`'s lease.
async fn lost_before_the_other_holds<R: Rt>(hold: &mut Hold, other: &Client) -> Lease {
    let watch = hold.watch();
    let lost = async {
        loop {
            match within::<R, _>(hold.next_event()).await {
                Some(HoldEvent::Lost(_)) => return Instant::now(),
                Some(HoldEvent::Renewed(_)) => {} // answered before the fault
                other => panic!("expected the loss, got {other:?}"),
            }
        }
    };
    let won = async {
        let lease = within::<R, _>(other.acquire("L", LEASE, timeout(WAIT)))
            .await
            .unwrap();
        let at = Instant::now();
        assert_eq!(
            watch.token(),
            None,
            "the other holds the lock: the hold must not"
        );
        (at, lease)
    };
    let (lost_at, (won_at, lease)) = join2(lost, won).await;
    assert!(lost_at <= won_at, "the loss was told after the other won");
    lease
}

/// How a holder is cut off from the store.
#[derive(Clone, Copy, Debug)]
enum CutOff {
    /// A partition: its proxy frozen, no socket closes, nothing passes either way.
    Frozen,
    /// Its replies come back later than its lease (the broker-to-client direction of its proxy
    /// delayed by more than the lease) while its requests still pass at once: the store sees
    /// renewals the holder can no longer trust.
    RepliesLate,
}

/// A holder cut off from the store is told `Lost` before anyone else holds the lock: when the
/// other client's acquisition returns, the holder's loss was reported earlier and its watch has
/// no token (and the lock is not kept from the other client for ever). After heal the hold
/// rejoins: it takes the lock again once the other client releases it.
pub async fn a_cut_off_holder_is_told_lost_before_another_holds<R: Rt>(env: Env) {
    for cut_off in [CutOff::Frozen, CutOff::RepliesLate] {
        let (a, _ta, proxy) = env.proxied_client::<R>("a");
        let (b, _tb, _) = env.client::<R>("b");
        let mut hold = a
            .hold("L", FAULT_LEASE, FAULT_LEASE / 4, Options::default())
            .await
            .unwrap();
        match cut_off {
            CutOff::Frozen => proxy.freeze(),
            CutOff::RepliesLate => {
                proxy.delay(Direction::ToClient, FAULT_LEASE + FAULT_LEASE / 2);
            }
        }
        let b_lease = lost_before_the_other_holds::<R>(&mut hold, &b).await;
        proxy.heal();
        assert!(b.release("L", Options::default()).await.unwrap());
        loop {
            match within::<R, _>(hold.next_event()).await {
                Some(HoldEvent::Acquired(lease)) => {
                    assert!(lease.token > b_lease.token, "{cut_off:?}");
                    break;
                }
                Some(HoldEvent::Lost(_)) => {} // a failed attempt while reconnecting
                other => panic!("{cut_off:?}: expected the hold to rejoin, got {other:?}"),
            }
        }
        assert!(within::<R, _>(hold.close()).await.unwrap(), "{cut_off:?}");
    }
}

/// A broker that stops answering (SIGSTOP: its sockets stay open) is noticed by the keep-alive
/// although a hold keeps sending renewals: the connection goes down, and comes back once the
/// broker goes on (SIGCONT); the hold has a token again. The two times are printed (figures
/// for RELIABILITY.md, not thresholds).
pub async fn a_silent_broker_is_noticed_and_the_connection_comes_back<R: Rt>(env: Env) {
    if !env.can_pause() {
        eprintln!("skipped: the broker cannot pause");
        return;
    }
    let mut s = env.settings("a");
    s.mqtt.keep_alive = FAULT_KEEP_ALIVE;
    s.mqtt.connect_timeout = FAULT_CONNECT_TIMEOUT;
    let (a, _ta) = R::connect(&s);
    let mut watch = a.connection_state();
    within::<R, _>(a.connected()).await.unwrap();
    let mut hold = a
        .hold(
            "L",
            Duration::from_secs(3),
            Duration::from_millis(250),
            Options::default(),
        )
        .await
        .unwrap();
    let broker = env.broker.clone();
    broker.lock().unwrap().pause();
    let paused = Instant::now();
    let down = state_where::<R>(&mut watch, is_disconnected).await;
    let detected = paused.elapsed();
    if R::TELLS_TAKEOVERS {
        // A carrier that tells why a connection ended tells this one.
        let silence = Disconnection::Ended(DisconnectCause::KeepAliveTimeout);
        assert_eq!(
            down,
            ConnectionState::Disconnected(silence),
            "noticed by the keep-alive"
        );
    }
    broker.lock().unwrap().resume();
    let resumed = Instant::now();
    state_where::<R>(&mut watch, is_connected).await;
    let recovered = resumed.elapsed();
    eprintln!(
        "silent broker: keep-alive asked {FAULT_KEEP_ALIVE:?}, noticed after {detected:?}, \
         connected {recovered:?} after SIGCONT"
    );
    loop {
        match within::<R, _>(hold.next_event()).await {
            Some(HoldEvent::Renewed(_) | HoldEvent::Acquired(_)) => break,
            Some(HoldEvent::Lost(_)) => {} // the pause outlasted the lease's validity
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("the hold ended: {:?}", hold.error()),
        }
    }
    assert!(hold.token().is_some());
    assert!(within::<R, _>(hold.close()).await.unwrap());
}

/// How a waiter misses the notification that the lock was deleted.
#[derive(Clone, Copy, Debug)]
enum MissedNotice {
    /// Its network is frozen across the release until its keep-alive gives the connection up.
    Frozen,
    /// Its connection is cut across the release.
    Cut,
}

/// A waiter whose DELETE notification was lost (its network frozen or cut across the release)
/// still takes the lock: it does not wait for ever for a notification that never comes.
pub async fn a_waiter_whose_delete_notice_was_lost_takes_the_lock<R: Rt>(env: Env) {
    for missed in [MissedNotice::Frozen, MissedNotice::Cut] {
        let (a, _ta, _) = env.client::<R>("a");
        let (b, _tb, proxy) = env.proxied_client::<R>("b");
        let mut watch = b.connection_state();
        within::<R, _>(b.connected()).await.unwrap();
        let first = a.acquire("L", LEASE, Options::default()).await.unwrap();
        let waiter = b.acquire("L", FAULT_LEASE, timeout(WAIT));
        let release_unseen = async {
            // Let the waiter register first; the outcome does not depend on it.
            R::sleep(Duration::from_millis(200)).await;
            match missed {
                MissedNotice::Frozen => proxy.freeze(),
                MissedNotice::Cut => proxy.cut(),
            }
            assert!(a.release("L", Options::default()).await.unwrap());
            state_where::<R>(&mut watch, is_disconnected).await;
            proxy.heal();
        };
        let (won, ()) = bounded::<R, _>(WAIT, join2(waiter, release_unseen))
            .await
            .unwrap_or_else(|| panic!("{missed:?}: no outcome within {WAIT:?}"));
        let won = won.unwrap_or_else(|e| panic!("{missed:?}: {e}"));
        assert!(won.token > first.token, "{missed:?}");
        assert!(b.release("L", Options::default()).await.unwrap());
    }
}

/// The lease of the edits under faults.
const EDIT_LEASE: Duration = Duration::from_secs(1);

/// What one round of [`edits_under_faults_count_what_was_reported`] does to which client.
struct FaultRound {
    frozen: &'static [usize],
    cut: &'static [usize],
    /// Delayed both ways, the replies by half an edit's lease.
    delayed: &'static [usize],
    /// The broker restarts at the start of the round.
    restart: bool,
}

/// Every client is frozen, cut and delayed in some round.
const ROUNDS: [FaultRound; 4] = [
    FaultRound {
        frozen: &[0, 1],
        cut: &[2],
        delayed: &[3, 4],
        restart: false,
    },
    FaultRound {
        frozen: &[2, 3],
        cut: &[4, 0],
        delayed: &[1],
        restart: true,
    },
    FaultRound {
        frozen: &[4],
        cut: &[1, 3],
        delayed: &[0, 2],
        restart: false,
    },
    FaultRound {
        frozen: &[0, 2, 4],
        cut: &[],
        delayed: &[1, 3],
        restart: false,
    },
];

/// Five clients increment one counter by edits while their networks freeze, their connections
/// are cut and the broker restarts. Every edit reported written is in the counter, and nothing
/// else is except edits reported `Indeterminate`: written <= counter <= written + indeterminate.
pub async fn edits_under_faults_count_what_was_reported<R: Rt>(env: Env) {
    let clients: Vec<_> = (0..5)
        .map(|i| env.proxied_client::<R>(&format!("e{i}")))
        .collect();
    let proxies: Vec<&Proxy> = clients.iter().map(|(_, _, proxy)| proxy).collect();
    let restarts = env.restarts_keep_the_lock_going::<R>();
    let faults_over = AtomicBool::new(false);
    let (written, indeterminate, failed) =
        (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    let mut work: Vec<Pin<Box<dyn Future<Output = ()>>>> = clients
        .iter()
        .map(|(client, _, _)| {
            let (faults_over, written, indeterminate, failed) =
                (&faults_over, &written, &indeterminate, &failed);
            Box::pin(async move {
                let mut edits = 0;
                while edits < 3 || !faults_over.load(Ordering::SeqCst) {
                    edits += 1;
                    let outcome = within::<R, _>(client.edit(
                        "L",
                        "counter",
                        EDIT_LEASE,
                        timeout(Duration::from_secs(10)),
                        |current| async move {
                            EditAction::Set(Bytes::from((parse(current) + 1).to_string()))
                        },
                    ))
                    .await;
                    match outcome {
                        Ok(EditOutcome::Written) => written.fetch_add(1, Ordering::SeqCst),
                        Err(Error::Op(OpError::Indeterminate)) => {
                            indeterminate.fetch_add(1, Ordering::SeqCst)
                        }
                        Ok(other) => panic!("an increment is a write: {other:?}"),
                        Err(e) => {
                            eprintln!("an edit failed: {e}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    let faults = async {
        // Each round of faults lasts a moment (the sleeps only set how long): longer than an
        // edit's lease, so that a write caught in a frozen network outlives its lease.
        for round in &ROUNDS {
            for &i in round.frozen {
                proxies[i].freeze();
            }
            for &i in round.cut {
                proxies[i].cut();
            }
            for &i in round.delayed {
                proxies[i].delay(Direction::ToBroker, EDIT_LEASE / 4);
                proxies[i].delay(Direction::ToClient, EDIT_LEASE / 2);
            }
            if round.restart && restarts {
                env.restart_broker::<R>().await;
            }
            R::sleep(EDIT_LEASE + EDIT_LEASE / 2).await;
            for proxy in &proxies {
                proxy.heal();
            }
            R::sleep(EDIT_LEASE / 4).await;
        }
        faults_over.store(true, Ordering::SeqCst);
    };
    work.push(Box::pin(faults));
    join_all(work).await;
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let outcome = within::<R, _>(clients[0].0.edit(
        "L",
        "counter",
        LEASE,
        timeout(WAIT),
        |current| async move {
            *s.lock().unwrap() = Some(parse(current));
            EditAction::Abort
        },
    ))
    .await
    .unwrap();
    assert_eq!(outcome, EditOutcome::Unchanged);
    let counter = seen.lock().unwrap().expect("the edit read the counter");
    let (written, indeterminate, failed) = (
        u64::from(written.into_inner()),
        u64::from(indeterminate.into_inner()),
        failed.into_inner(),
    );
    eprintln!(
        "counter {counter}: {written} written, {indeterminate} indeterminate, {failed} failed"
    );
    assert!(
        (written..=written + indeterminate).contains(&counter),
        "counter {counter}, {written} written, {indeterminate} indeterminate"
    );
}

async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// The parts of an [`Rt`] on tokio that do not depend on the adapter: a current-thread runtime
/// per test, its sleep and its blocking pool. Expanded inside the `impl Rt`.
#[macro_export]
macro_rules! tokio_rt {
    () => {
        fn block_on<F: std::future::Future>(f: F) -> F::Output {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        }

        async fn sleep(d: std::time::Duration) {
            tokio::time::sleep(d).await;
        }

        async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
            tokio::task::spawn_blocking(f).await.unwrap()
        }
    };
}

/// One `#[test]` per scenario, on runtime `$rt`.
#[macro_export]
macro_rules! scenarios {
    ($rt:ty) => {
        $crate::scenarios!(@each $rt;
            three_clients_contend,
            handoff_on_release,
            handoff_on_expiry_after_kill,
            hold_renews_with_newer_tokens,
            undrained_hold_stays_bounded,
            killed_driver_closes_pending_operations,
            edits_count_exactly,
            session_ids_make_distinct_holders,
            holder_and_observe,
            timeouts,
            cancel_by_drop,
            a_lease_taken_away_or_released_reads_invalid,
            a_win_nobody_read_is_released,
            a_broker_named_by_host_name_is_reached,
            broker_restart_during_hold,
            broker_restart_during_wait,
            stale_token_is_fenced,
            fenced_store_access_with_the_held_token,
            try_hold_does_not_wait_and_ends_at_its_first_loss,
            election_hands_over_and_reports_the_loss,
            stats_count_operations,
            connection_state_follows_a_broker_restart,
            a_session_takeover_is_reported_and_backs_off,
            a_takeover_without_a_reason_code_backs_off_too,
            a_cut_off_holder_is_told_lost_before_another_holds,
            a_silent_broker_is_noticed_and_the_connection_comes_back,
            a_waiter_whose_delete_notice_was_lost_takes_the_lock,
            edits_under_faults_count_what_was_reported,
        );
    };
    (@each $rt:ty; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let env = $crate::scenarios::Env::start(stringify!($name));
                <$rt as $crate::scenarios::Rt>::block_on($crate::scenarios::$name::<$rt>(env));
            }
        )*
    };
}
