//! The shared real-broker scenarios through the AIO SDK adapter: each client is an SDK session
//! whose `run` loop is a task of its own, and the lock rides on it.
#![allow(clippy::disallowed_methods)] // the test is the driver

/// The adapter under test, with the settings the scenarios describe clients by.
mod adapter {
    pub use leasedlock_aio::*;
    pub use leasedlock_tokio::Settings;
}

#[path = "../../tests-common/scenarios.rs"]
#[macro_use]
mod scenarios;

use adapter::azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use adapter::azure_iot_operations_mqtt::session::reconnect_policy::ExponentialBackoffWithJitter;
use adapter::azure_iot_operations_mqtt::session::{
    Session, SessionError, SessionErrorKind, SessionOptionsBuilder,
};
use adapter::leasedlock::lock::Config;
use adapter::leasedlock::lock::Options;
use adapter::{Client, ConnectionState, ConnectionWatch, HoldEvent, Settings};
use leasedlock_testkit::{Broker, Proxy, StoreEmulator};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A current-thread tokio runtime per test; the lock and the SDK session are tasks on it.
enum Aio {}

/// An SDK session for `settings` (its broker address, client id, keep-alive and reconnect
/// bound), clean at its first connection, and the lock of `config` over it: the lock's handle
/// and the two tasks (the lock's, and the session's `run`).
fn over_sdk(settings: &Settings, config: Config) -> (Client, Tasks) {
    let connection = MqttConnectionSettingsBuilder::default()
        .client_id(settings.lock.client_id.clone())
        .hostname(settings.host.clone())
        .tcp_port(settings.port)
        .keep_alive(settings.mqtt.keep_alive)
        .clean_start(true)
        .use_tls(false)
        .build()
        .unwrap();
    let options = SessionOptionsBuilder::default()
        .connection_settings(connection)
        .reconnect_policy(Box::new(ExponentialBackoffWithJitter {
            max_wait: settings.reconnect_max,
            max_reconnect_attempts: None,
        }))
        .build()
        .unwrap();
    let session = Session::new(options).unwrap();
    let (client, lock) = adapter::attach(
        config,
        session.create_managed_client(),
        session.create_session_monitor(),
    )
    .unwrap();
    (client, (lock, tokio::spawn(session.run())))
}

/// The lock's task and the SDK session's.
type Tasks = (JoinHandle<()>, JoinHandle<Result<(), SessionError>>);

impl scenarios::Rt for Aio {
    type Task = Tasks;

    /// The test broker (mosquitto with `persistence false`, killed and started again) forgets
    /// every session. The SDK reconnects with Clean Start 0, gets Session Present 0, and ends
    /// its session: `Session::run` returns `SessionLost` (`connection_runner` in
    /// azure_iot_operations_mqtt 1.2.3, session.rs), as the SDK requires of a broker that keeps
    /// sessions (the AIO broker does). The monitor then says disconnected for ever, and the lock
    /// waits until its handles go: `a_broker_that_forgets_the_session_ends_the_sdk_session`
    /// shows it, and `a_lost_connection_is_resumed_and_the_hold_goes_on` and
    /// `a_waiter_whose_connection_is_lost_still_gets_the_lock` check a hold and a wait across a
    /// lost connection whose session the broker keeps.
    const SURVIVES_A_FORGOTTEN_SESSION: bool = false;
    /// The session monitor tells connected or disconnected, never why, so a DISCONNECT 0x8E
    /// cannot be reported as `Disconnection::TakenOver`, and the SDK reconnects by its own
    /// policy; the test kit's embedded broker never resumes a session either, so a session
    /// taken over ends with `SessionLost` at its next connection.
    const TELLS_TAKEOVERS: bool = false;

    tokio_rt!();

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        over_sdk(settings, settings.lock.clone())
    }

    /// The lock's task and the session go: the socket closes, and leases expire at the store.
    async fn kill((lock, session): Self::Task) {
        lock.abort();
        session.abort();
        let _ = lock.await;
        let _ = session.await;
    }
}

scenarios!(Aio);

/// A PUBACK 0x10 (no matching subscribers: the store is not up) repeats the request shortly.
#[test]
fn a_puback_without_subscribers_repeats_the_request_until_the_store_is_up() {
    <Aio as scenarios::Rt>::block_on(
        scenarios::a_puback_without_subscribers_repeats_the_request::<Aio>("aio-no-store"),
    );
}

/// Why the broker-restart scenarios are left out: mosquitto restarted without persistence has
/// forgotten the session, and the SDK ends its session when it reconnects (`SessionLost`); the
/// lock sees the link go down.
#[test]
fn a_broker_that_forgets_the_session_ends_the_sdk_session() {
    <Aio as scenarios::Rt>::block_on(async {
        let mut broker = Broker::start();
        if !broker.can_restart() {
            eprintln!("skipped: the broker cannot restart");
            return;
        }
        let settings = Settings::new("127.0.0.1", broker.addr().port(), "aio-session-lost");
        let (client, (_lock, session)) = over_sdk(&settings, settings.lock.clone());
        let mut watch = client.connection_state();
        scenarios::within::<Aio, _>(client.connected())
            .await
            .unwrap();
        let broker = tokio::task::spawn_blocking(move || {
            broker.restart();
            broker
        });
        let ended = scenarios::within::<Aio, _>(session).await.unwrap();
        assert_eq!(
            ended.map_err(|e| e.kind()).unwrap_err(),
            SessionErrorKind::SessionLost
        );
        loop {
            match scenarios::within::<Aio, _>(watch.next()).await {
                Some(ConnectionState::Disconnected(_)) => break,
                Some(_) => {}
                None => panic!("the lock stopped"),
            }
        }
        drop(broker.await);
    });
}

/// An SDK session through `proxy` and the lock over it, with a keep-alive of one second.
fn through(proxy: &Proxy, name: &str) -> (Client, Tasks) {
    let mut settings = Settings::new("127.0.0.1", proxy.addr().port(), name);
    settings.mqtt.keep_alive = Duration::from_secs(1);
    settings.reconnect_max = Duration::from_millis(300);
    over_sdk(&settings, settings.lock.clone())
}

/// The proxy holds back what the clients send until the lock has seen its link go down, then
/// runs `while_down` and lets the clients through; returns once the link is up again.
async fn lose_and_resume(
    proxy: &Proxy,
    watch: &mut ConnectionWatch,
    while_down: impl std::future::Future<Output = ()>,
) {
    proxy.hold();
    loop {
        match scenarios::within::<Aio, _>(watch.next()).await {
            Some(ConnectionState::Disconnected(_)) => break,
            Some(_) => {}
            None => panic!("the lock stopped"),
        }
    }
    while_down.await;
    proxy.release();
    loop {
        match scenarios::within::<Aio, _>(watch.next()).await {
            Some(ConnectionState::Connected) => return,
            Some(_) => {}
            None => panic!("the lock stopped"),
        }
    }
}

/// What the broker-restart scenarios would show on a broker that keeps sessions (the AIO broker
/// does): the connection is lost, the SDK connects again and resumes its session, and the lock
/// goes on over it. The connection goes through a proxy that holds back what the client sends:
/// its keep-alive runs out, the old connection ends, and the new one gets through once the
/// proxy lets it.
#[test]
fn a_lost_connection_is_resumed_and_the_hold_goes_on() {
    <Aio as scenarios::Rt>::block_on(async {
        let broker = Broker::start();
        let _store = StoreEmulator::start(broker.addr());
        let proxy = Proxy::start(broker.addr());
        let (client, (_lock, session)) = through(&proxy, "aio-resumed");
        let mut hold = client
            .hold(
                "L",
                Duration::from_secs(10),
                Duration::from_millis(300),
                Options::default(),
            )
            .await
            .unwrap();
        let first = hold.token().expect("a fresh hold has a token");
        let mut watch = client.connection_state();
        lose_and_resume(&proxy, &mut watch, async {}).await;
        loop {
            match scenarios::within::<Aio, _>(hold.next_event()).await {
                Some(HoldEvent::Renewed(lease) | HoldEvent::Acquired(lease)) => {
                    if lease.token > first {
                        break;
                    }
                }
                Some(_) => {} // a loss while the link was down
                None => panic!("the hold ended"),
            }
        }
        assert!(!session.is_finished(), "the SDK resumed its session");
        let s = client.stats().await.unwrap();
        assert!(s.reconnects >= 1, "{s:?}");
        assert!(scenarios::within::<Aio, _>(hold.close()).await.unwrap());
    });
}

/// The waiting side of the same: a waiter whose connection is lost while the holder releases
/// (the DELETE notification is sent while it is away) still gets the lock once its session is
/// resumed.
#[test]
fn a_waiter_whose_connection_is_lost_still_gets_the_lock() {
    <Aio as scenarios::Rt>::block_on(async {
        let broker = Broker::start();
        let _store = StoreEmulator::start(broker.addr());
        let proxy = Proxy::start(broker.addr());
        let holder = Settings::new("127.0.0.1", broker.addr().port(), "aio-holder");
        let (a, _ta) = over_sdk(&holder, holder.lock.clone());
        let (b, _tb) = through(&proxy, "aio-waiter");
        let lease = Duration::from_secs(10);
        let first = a.acquire("L", lease, Options::default()).await.unwrap();
        scenarios::within::<Aio, _>(b.connected()).await.unwrap();
        let mut watch = b.connection_state();
        let before = b.stats().await.unwrap().requests_sent;
        let waiter = b.acquire("L", lease, Options::default().with_timeout(scenarios::WAIT));
        let lose = async {
            // The waiter has registered for notifications and been refused before its link goes.
            while b.stats().await.unwrap().requests_sent < before + 2 {
                tokio::task::yield_now().await;
            }
            let release = async {
                assert!(a.release("L", Options::default()).await.unwrap());
            };
            lose_and_resume(&proxy, &mut watch, release).await;
        };
        let (won, ()) = scenarios::within::<Aio, _>(async { tokio::join!(waiter, lose) }).await;
        assert!(won.unwrap().token > first.token);
    });
}
