//! The shared real-broker scenarios through the rumqttc adapter: each client is a rumqttc
//! connection whose event loop runs in its own task, and the lock rides on it.
#![allow(clippy::disallowed_methods)] // the test is the driver

/// The adapter under test, with the settings the scenarios describe clients by.
mod adapter {
    pub use leasedlock_rumqttc::*;
    pub use leasedlock_tokio::Settings;
}

#[path = "../../tests-common/scenarios.rs"]
#[macro_use]
mod scenarios;

use adapter::leasedlock::lock::{Config, Options};
use adapter::{Client, Settings};
use leasedlock_testkit::{Broker, StoreEmulator};
use rumqttc::v5::MqttOptions;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The shortest keep-alive rumqttc accepts.
const RUMQTTC_MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A current-thread tokio runtime per test; the lock and rumqttc's event loop are tasks on it.
enum Rumqttc {}

/// A rumqttc connection for `settings` (its broker address, client id and keep-alive) and the
/// lock of `config` over it: the lock's handle and the two tasks.
fn over_rumqttc(settings: &Settings, config: Config) -> (Client, [JoinHandle<()>; 2]) {
    let mut options = MqttOptions::new(
        settings.lock.client_id.clone(),
        settings.host.clone(),
        settings.port,
    );
    // rumqttc refuses keep-alives under 5 s (it panics): the scenarios' shorter ones are raised.
    options.set_keep_alive(settings.mqtt.keep_alive.max(RUMQTTC_MIN_KEEP_ALIVE));
    options.set_clean_start(true);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, _mqtt, tasks) = adapter::spawn(options, config).unwrap();
    (client, tasks)
}

impl scenarios::Rt for Rumqttc {
    type Task = [JoinHandle<()>; 2];

    tokio_rt!();

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        over_rumqttc(settings, settings.lock.clone())
    }

    /// The lock's task and the connection go: the socket closes, and leases expire at the store.
    async fn kill(tasks: Self::Task) {
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

scenarios!(Rumqttc);

/// A request published before the state store is up gets a PUBACK with reason 0x10 (no
/// matching subscribers): the adapter maps it, and the engine repeats the request shortly
/// instead of waiting for its (here one-minute) timeout. Once the store is up, the lock is won.
#[test]
fn a_puback_without_subscribers_repeats_the_request_until_the_store_is_up() {
    <Rumqttc as scenarios::Rt>::block_on(async {
        let broker = Broker::start();
        let addr = broker.addr();
        let settings = Settings::new("127.0.0.1", addr.port(), "rumqttc-no-store");
        let mut config = settings.lock.clone();
        config.request_timeout = Duration::from_secs(60);
        let (client, _tasks) = over_rumqttc(&settings, config);
        scenarios::within::<Rumqttc, _>(client.connected())
            .await
            .unwrap();
        let opts = Options::default().with_timeout(scenarios::WAIT);
        let acquire = client.try_acquire("L", Duration::from_secs(10), opts);
        let start_store = async {
            // The store starts once a request has been repeated: only a mapped PUBACK can
            // repeat it before the minute is over.
            while client.stats().await.unwrap().retries == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            StoreEmulator::start(addr)
        };
        let (won, _store) =
            scenarios::within::<Rumqttc, _>(async { tokio::join!(acquire, start_store) }).await;
        assert!(won.unwrap().is_some(), "free once the store is up");
    });
}
