//! [`StoreEmulator`]: the state-store emulator in a background thread, connected to a broker.

use statestore_emulator::{run, Control, Options, Status};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Set to `1` to print every request, response and notification of the emulators that tests
/// start.
pub const EMULATOR_LOG_ENV: &str = "LEASEDLOCK_EMULATOR_LOG";

/// How long [`StoreEmulator::start`] waits for the emulator to be subscribed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The state-store emulator (`statestore-emulator`) running in a background thread as an MQTT
/// client of a broker; stopped when dropped. It reconnects by itself when the broker restarts
/// (the store's contents survive).
#[derive(Debug)]
pub struct StoreEmulator {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl StoreEmulator {
    /// Starts the emulator against `broker` and waits until it is subscribed to the request topic.
    ///
    /// # Panics
    ///
    /// When it is not ready within 20 s.
    pub fn start(broker: SocketAddr) -> StoreEmulator {
        let mut options = Options::new(broker.to_string());
        options.client_id = format!(
            "statestore-emulator-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        options.log = std::env::var(EMULATOR_LOG_ENV).as_deref() == Ok("1");
        options.verbose = options.log;
        StoreEmulator::with_options(options)
    }

    /// Starts the emulator with explicit options and waits until it is ready.
    ///
    /// # Panics
    ///
    /// When it is not ready within 20 s.
    pub fn with_options(options: Options) -> StoreEmulator {
        let control = Arc::new(Control::new());
        let c = control.clone();
        let broker = options.broker.clone();
        let thread = std::thread::Builder::new()
            .name("statestore-emulator".into())
            .spawn(move || run(&options, &c))
            .expect("spawn the emulator thread");
        let emulator = StoreEmulator {
            control,
            thread: Some(thread),
        };
        if !emulator.wait_ready(1, READY_TIMEOUT) {
            panic!("the state-store emulator did not connect to {broker} within {READY_TIMEOUT:?}");
        }
        emulator
    }

    /// Its status: ready (connected and subscribed), connections so far, requests handled.
    pub fn status(&self) -> Status {
        self.control.status()
    }

    /// Waits until the emulator is ready for the `connections`-th time (1 = first connection;
    /// after a broker restart pass `status().connections + 1` read before the restart).
    /// False on timeout.
    pub fn wait_ready(&self, connections: u64, timeout: Duration) -> bool {
        self.control
            .wait_until(timeout, |s| s.ready && s.connections >= connections)
            .is_some()
    }

    /// Stops the emulator (disconnects from the broker) and joins its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.control.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreEmulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
