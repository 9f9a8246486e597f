//! Test kit of `leasedlock`: a real MQTT broker and the state-store emulator, started and stopped
//! by tests.
//!
//! ```no_run
//! use leasedlock_testkit::{Broker, StoreEmulator};
//!
//! let mut broker = Broker::start(); // mosquitto on a free loopback port (or the embedded broker)
//! let store = StoreEmulator::start(broker.addr()); // the state store, as an MQTT client of it
//! // … connect lock clients to broker.addr() …
//! if broker.can_restart() {
//!     broker.restart(); // every connection breaks; the emulator reconnects by itself
//! }
//! store.stop();
//! ```
//!
//! Faults: [`Proxy`] sits between one client and the broker (delay, freeze, cut, heal), and
//! [`Broker::pause`] stops the broker without closing anything (SIGSTOP) until
//! [`Broker::resume`].
#![forbid(unsafe_code)]
// The test kit is a driver of the sans-IO core: reading the clocks is its job (the rule is for the core).
#![allow(clippy::disallowed_methods)]
#![deny(missing_docs)]

mod broker;
pub mod embedded;
mod pki;
mod proxy;
mod store;

pub use broker::{
    Broker, BrokerBuilder, BrokerTls, MOSQUITTO, MOSQUITTO_PASSWD, REQUIRE_MOSQUITTO_ENV,
};
pub use pki::{TestPki, OPENSSL};
pub use proxy::{Direction, Proxy};
pub use statestore_emulator::Status;
pub use store::{StoreEmulator, EMULATOR_LOG_ENV};
