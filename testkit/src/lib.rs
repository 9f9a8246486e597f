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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
pub mod embedded;

pub use broker::{Broker, MOSQUITTO, REQUIRE_MOSQUITTO_ENV};
