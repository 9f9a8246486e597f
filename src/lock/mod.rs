//! The lock engine: many named leased locks multiplexed on one state-store client, sans-IO.
//!
//! [`Client`] takes user intents, state-store responses and notifications, connection changes and
//! clock readings, and returns [`Output`]s (typed [`Request`]s to send, topics to subscribe,
//! [`Event`]s) and the next deadline. It never reads a clock, never does I/O and knows nothing of
//! MQTT bytes: whoever owns the wire turns a [`Request`] into a PUBLISH
//! ([`Connection`](crate::connection::Connection) through a per-client template, or
//! [`Client::to_message`] for another MQTT client).
//!
//! # The drive loop
//!
//! The [drive contract](crate#the-drive-contract) of the crate: after every intent or `handle_*`,
//! drain [`Client::poll_output`], then sleep until [`Client::poll_timeout`]. Over another MQTT
//! client: subscribe to each [`Output::Subscribe`] filter and report its SUBACK
//! ([`Client::handle_subscribed`]); publish [`Client::to_message`] of each [`Output::Request`]
//! with QoS 1 and report a failed PUBACK ([`Client::handle_not_delivered`]); hand every message
//! received on those filters to [`Client::handle_message`].
//!
//! ```
//! use leasedlock::lock::{Client, Config, Event, Options, Output};
//! use leasedlock::Now;
//! use std::time::{Duration, Instant};
//!
//! let now = Now::new(Instant::now(), 1_700_000_000_000);
//! let mut client = Client::new(Config::new("worker-1"), now, 42).unwrap();
//! let lock = client.lock_id("my-lock").unwrap();
//! client.handle_connected(now);
//! let op = client.try_acquire(now, lock, Duration::from_secs(10), Options::default()).unwrap();
//! while let Some(output) = client.poll_output() {
//!     match output {
//!         Output::Subscribe(filter) => { /* subscribe, then call handle_subscribed */ let _ = filter; }
//!         Output::Request(request) => {
//!             let message = client.to_message(&request); // publish it with QoS 1
//!             let _ = message;
//!         }
//!         Output::Event(event) => println!("{event:?}"),
//!     }
//! }
//! let _ = (op, client.poll_timeout());
//! ```
//!
//! # Safety rules the engine keeps
//!
//! - A lease is believed held only until `send time of the SET that won it + lease − margin`; the
//!   margin covers the configured clock-rate drift. After that [`Client::token`] returns `None`, and a
//!   hold emits [`Event::Lost`] no later than that instant.
//! - A waiting acquire registers KEYNOTIFY before its first try, retries on DELETE (at once; in a
//!   herd, at the DELETE of the holder it follows, or after a short hold-back when nobody takes
//!   the lock), re-checks when a fallback timer fires and after every reconnect: a lost
//!   notification never hangs it.
//! - A release ends any hold on the lock first: no renewal response that arrives later is used.
//! - Every loss of a lease is reported ([`Event::Lost`] for holds, [`Event::Expired`] otherwise).

mod access;
mod client;
mod config;
mod error;
mod event;
mod holder;
mod intent;
mod lease;
mod notify;
mod operation;
mod options;
mod registry;
mod reply;
mod request;
mod rng;
mod slab;
mod timer;

pub use access::{Access, Accessed, Fence};
pub use client::{Client, Stats};
pub use config::{Config, ConfigError};
pub use error::{IntentError, OpError};
pub use event::{EditOutcome, Event, LossReason, NotDelivered, Output};
pub use holder::Holder;
pub use intent::Intent;
pub use operation::{OpId, ABSENT_PLACEHOLDER};
pub use options::{EditAction, Options};
pub use registry::LockId;
pub use request::Request;
pub use rng::SplitMix64;
