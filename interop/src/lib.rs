//! # leasedlock-interop
//!
//! `leasedlock` side by side with the official Azure IoT Operations Rust SDK
//! (`azure_iot_operations_services` with its `state_store` and `leased_lock` features) on one
//! real broker: mosquitto on a free loopback port and the state-store emulator connected to it,
//! both started by [`leasedlock_testkit`].
//!
//! - `tests/interop.rs`: the two implementations exclude each other on the same lock, and the
//!   store's fencing orders their tokens.
//! - `tests/one_session.rs`: our lock and the SDK's state store on one SDK session (through
//!   `leasedlock-aio`), against the SDK's lock in another process (`src/bin/sdk_lock_edits.rs`).
//! - `benches/e2e.rs`: end-to-end numbers of both over the same broker.
//! - [`delay::DelayProxy`]: a TCP proxy adding a one-way latency, for the benchmark's latency rows.
//!
//! This crate is outside the root workspace (the SDK is a heavy build):
//! `cargo test --manifest-path interop/Cargo.toml --workspace` (with `leasedlock-aio`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::session::{
    Session, SessionExitHandle, SessionManagedClient, SessionMonitor, SessionOptionsBuilder,
};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_protocol::common::hybrid_logical_clock::HybridLogicalClock;
use azure_iot_operations_services::leased_lock::{lease, lock};
use azure_iot_operations_services::state_store;
use leasedlock::FencingToken;
use leasedlock_testkit::{Broker, StoreEmulator};
use leasedlock_tokio::{Client, Settings};
use std::future::Future;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub mod delay;

pub use azure_iot_operations_services as sdk;
pub use leasedlock_tokio;

/// Bound on any single wait of a test or a benchmark step; reaching it is a failure.
pub const WAIT: Duration = Duration::from_secs(30);

/// The request timeout given to every SDK call (the SDK rounds it up to whole seconds).
pub const SDK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker and a state-store emulator connected to it.
#[derive(Debug)]
pub struct Env {
    /// The broker (mosquitto when installed, else the test kit's embedded broker).
    pub broker: Broker,
    /// The state store.
    pub store: StoreEmulator,
    prefix: String,
    /// The port clients connect to: the broker's, or a proxy's (0: the broker's).
    client_port: AtomicU16,
}

static NEXT_CLIENT: AtomicU32 = AtomicU32::new(0);

impl Env {
    /// Starts a broker on a free loopback port and the emulator; client ids start with `prefix`.
    pub fn start(prefix: &str) -> Env {
        let broker = Broker::start();
        let store = StoreEmulator::start(broker.addr());
        Env {
            broker,
            store,
            prefix: prefix.to_owned(),
            client_port: AtomicU16::new(0),
        }
    }

    /// The broker's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.broker.addr().port()
    }

    /// Makes the clients created from now on ([`Env::settings`], [`Env::sdk`]) connect to
    /// `port` on `127.0.0.1` (a proxy in front of the broker), or to the broker with `None`.
    /// The store stays connected to the broker directly.
    pub fn route_clients(&self, port: Option<u16>) {
        self.client_port.store(port.unwrap_or(0), Ordering::Relaxed);
    }

    /// The port new clients connect to (see [`Env::route_clients`]).
    pub fn client_port(&self) -> u16 {
        match self.client_port.load(Ordering::Relaxed) {
            0 => self.port(),
            port => port,
        }
    }

    /// How many requests the store has handled so far.
    pub fn requests(&self) -> u64 {
        self.store.status().requests
    }

    /// Waits (polling, bounded by [`WAIT`]) until the store has handled at least `n` requests.
    pub async fn wait_requests(&self, n: u64) {
        within("the store to handle the expected requests", async {
            while self.requests() < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }

    /// A fresh client id: `{prefix}-{name}-{n}`.
    pub fn client_id(&self, name: &str) -> String {
        format!(
            "{}-{name}-{}",
            self.prefix,
            NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Settings of a `leasedlock` client of this broker.
    pub fn settings(&self, name: &str) -> Settings {
        Settings::new("127.0.0.1", self.client_port(), self.client_id(name))
    }

    /// Connects a `leasedlock` client (on the current tokio runtime) with `settings`.
    pub fn ours_with(&self, settings: &Settings) -> Ours {
        let (client, task) =
            leasedlock_tokio::connect(settings).expect("valid leasedlock settings");
        Ours {
            client,
            task,
            id: settings.lock.client_id.clone(),
        }
    }

    /// Connects a `leasedlock` client with the default settings.
    pub fn ours(&self, name: &str) -> Ours {
        self.ours_with(&self.settings(name))
    }

    /// Connects an SDK client and waits until it is subscribed to its responses and
    /// notifications (see [`Sdk::connect`]).
    pub async fn sdk(&self, name: &str) -> Sdk {
        Sdk::connect(self.client_port(), self.client_id(name)).await
    }
}

/// A `leasedlock` client and its driver task.
#[derive(Debug)]
pub struct Ours {
    /// The handle.
    pub client: Client,
    /// The driver task (abort it to kill the connection).
    pub task: JoinHandle<()>,
    /// Its MQTT client id: the holder value of its locks.
    pub id: String,
}

/// An SDK client: an MQTT session (its `run` loop spawned) and a state-store client on it.
pub struct Sdk {
    /// Its MQTT client id: the holder value of its locks.
    pub id: String,
    /// The state-store client.
    pub store: Arc<state_store::Client>,
    /// The session's client and monitor, for [`Sdk::attach_ours`].
    session_client: SessionManagedClient,
    monitor: SessionMonitor,
    exit: SessionExitHandle,
    session: JoinHandle<()>,
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk").field("id", &self.id).finish()
    }
}

impl Sdk {
    /// Connects to `127.0.0.1:port` as `id` and waits until the client is usable.
    ///
    /// The SDK subscribes to its key-notification topic from a background task, with nothing to
    /// wait on: a `lock()` that registers KEYNOTIFY before that subscription is in place can
    /// miss the DELETE it waits for and hang. So the connection is warmed up first: the client
    /// observes a private key and sets it until it sees its own notification.
    pub async fn connect(port: u16, id: String) -> Sdk {
        let connection = MqttConnectionSettingsBuilder::default()
            .client_id(id.clone())
            .hostname("127.0.0.1")
            .tcp_port(port)
            .keep_alive(Duration::from_secs(10))
            .use_tls(false)
            .build()
            .expect("valid SDK connection settings");
        let options = SessionOptionsBuilder::default()
            .connection_settings(connection)
            .build()
            .expect("valid SDK session options");
        let session = Session::new(options).expect("an SDK session");
        let context = ApplicationContextBuilder::default()
            .build()
            .expect("an application context");
        let (session_client, monitor) = (
            session.create_managed_client(),
            session.create_session_monitor(),
        );
        let store = state_store::Client::new(
            context,
            session_client.clone(),
            monitor.clone(),
            state_store::ClientOptionsBuilder::default()
                .build()
                .expect("state-store client options"),
        )
        .expect("an SDK state-store client");
        let exit = session.create_exit_handle();
        let session = tokio::spawn(async move {
            // The session ends with an error when the broker goes away; the tests see that as
            // failed requests.
            let _ = session.run().await;
        });
        let sdk = Sdk {
            id,
            store: Arc::new(store),
            session_client,
            monitor,
            exit,
            session,
        };
        within("the SDK client to see its own notification", sdk.warm_up()).await;
        sdk
    }

    async fn warm_up(&self) {
        let key = format!("warm-up-{}", self.id).into_bytes();
        let mut observation = self
            .store
            .observe(key.clone(), SDK_REQUEST_TIMEOUT)
            .await
            .expect("SDK observe")
            .response;
        for round in 0u32.. {
            self.store
                .set(
                    key.clone(),
                    round.to_string().into_bytes(),
                    SDK_REQUEST_TIMEOUT,
                    None,
                    state_store::SetOptions::default(),
                )
                .await
                .expect("SDK set");
            let seen =
                tokio::time::timeout(Duration::from_millis(200), observation.recv_notification())
                    .await;
            if let Ok(Some(_)) = seen {
                break;
            }
        }
        self.store
            .unobserve(key.clone(), SDK_REQUEST_TIMEOUT)
            .await
            .expect("SDK unobserve");
        self.store
            .del(key, None, SDK_REQUEST_TIMEOUT)
            .await
            .expect("SDK del");
    }

    /// The SDK's lock client for `name` (holder = this client's id).
    pub fn lock(&self, name: &str) -> lock::Client {
        lock::Client::new(self.store.clone(), name.into(), self.id.clone().into())
            .expect("valid SDK lock name and holder")
    }

    /// The SDK's lease client for `name` (holder = this client's id).
    pub fn lease(&self, name: &str) -> lease::Client {
        lease::Client::new(self.store.clone(), name.into(), self.id.clone().into())
            .expect("valid SDK lease name and holder")
    }

    /// Our lock on this client's session (through `leasedlock-aio`), beside the SDK's state
    /// store: one MQTT connection carries both. Its holder value is this client's id.
    pub fn attach_ours(&self) -> Ours {
        let config = leasedlock::lock::Config::new(self.id.clone());
        let (client, task) =
            leasedlock_aio::attach(config, self.session_client.clone(), self.monitor.clone())
                .expect("a lock on the SDK session");
        Ours {
            client,
            task,
            id: self.id.clone(),
        }
    }

    /// Shuts the state-store client and the session down.
    pub async fn close(self) {
        let _ = self.store.shutdown().await;
        if self.exit.try_exit().is_err() {
            self.exit.force_exit();
        }
        let _ = within("the SDK session to end", self.session).await;
    }
}

/// Our fencing token as the SDK's HLC (both use the store's text form).
pub fn to_sdk(token: &FencingToken) -> HybridLogicalClock {
    token
        .to_string()
        .parse()
        .expect("a fencing token is a valid HLC")
}

/// The SDK's HLC as our fencing token.
pub fn from_sdk(hlc: &HybridLogicalClock) -> FencingToken {
    hlc.to_string()
        .parse()
        .expect("an SDK HLC is a valid fencing token")
}

/// `f`, or a panic naming `what` after [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}
