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

use adapter::leasedlock::lock::Config;
use adapter::{Client, Settings};
use rumqttc::v5::MqttOptions;
use tokio::task::JoinHandle;

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
    options.set_keep_alive(settings.mqtt.keep_alive);
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

/// A PUBACK 0x10 (no matching subscribers: the store is not up) repeats the request shortly.
#[test]
fn a_puback_without_subscribers_repeats_the_request_until_the_store_is_up() {
    <Rumqttc as scenarios::Rt>::block_on(
        scenarios::a_puback_without_subscribers_repeats_the_request::<Rumqttc>("rumqttc-no-store"),
    );
}
