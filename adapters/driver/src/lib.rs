//! # leasedlock-driver
//!
//! Everything the runtime adapters of [`leasedlock`] share, written once and runtime-agnostic:
//!
//! - the actor: the state around a [`Connection`](leasedlock::connection::Connection) that
//!   routes each event to the handle that started its operation (final events complete the
//!   operation's future, hold events go to the [`Hold`], holder changes to [`Observer`]s, edit
//!   requests to the user's closure);
//! - the async API: a cloneable [`Client`] handle, [`Hold`], [`Observer`], [`Lease`], [`Error`]
//!   (dropping a future cancels its operation in the engine). Commands go to the driver through
//!   one shared queue whose buffers are reused; each operation's events come back through one
//!   small shared slot (its only allocation), and a [`Hold`] needs no task of its own: its
//!   latest lease is always at hand and its renewals are coalesced;
//! - the run loops: a [`Driver`] future generic over a [`Runtime`] (TCP connect, poll-based
//!   read/write, a timer), which reconnects with a capped exponential [`Backoff`] (and a longer
//!   one after a session takeover, [`Disconnection::TakenOver`]); and an [`Attached`] future
//!   ([`attach`]) that runs the same API over the application's own MQTT client, a
//!   [`Transport`], needing only the runtime's [`Timers`];
//! - [`Settings`] (from code or from the AIO SDK environment variables, [`Settings::from_env`]),
//!   the rustls configuration of TLS to the broker ([`TlsConfig`]), and the clock reading [`now`].
//! - observability: traces through `tracing` (and `log`), each operation in a span with its lock
//!   name; metrics from [`Client::stats`] ([`Stats`]); the connection state as a watch,
//!   [`Client::connection_state`] ([`ConnectionWatch`]). The README lists the levels and the
//!   metrics.
//!
//! It opens no socket and needs no runtime: `leasedlock-tokio` and `leasedlock-async-io` each
//! implement [`Runtime`] in a few lines. The API is the same through both:
//!
//! ```
//! use leasedlock_driver::{Client, Error};
//! use leasedlock::lock::{EditAction, Options};
//! use leasedlock::bytes::Bytes;
//! use std::time::Duration;
//!
//! async fn increment(client: &Client) -> Result<(), Error> {
//!     let lease = Duration::from_secs(5);
//!     let opts = Options::default().with_timeout(Duration::from_secs(10));
//!     client
//!         .edit("counter-lock", "counter", lease, opts, |current: Option<Bytes>| async move {
//!             let n: u64 = current
//!                 .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
//!                 .unwrap_or(0);
//!             EditAction::Set(Bytes::from((n + 1).to_string()))
//!         })
//!         .await?;
//!     if let Some(lease) = client.try_acquire("job", lease, Options::default()).await? {
//!         println!("won with token {}", lease.token);
//!         client.release("job", Options::default()).await?;
//!     }
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod actor;
mod changes;
mod clock;
mod driver;
mod election;
mod engine;
mod env;
mod handle;
mod lock;
mod mailbox;
mod reconnect;
mod routes;
mod settings;
mod slot;
mod state;
mod stats;
mod tls;
mod transport;

pub use clock::now;
pub use driver::{
    attach, connect, Attached, ConnectFuture, Driver, Runtime, SetupError, Target, Timers,
};
pub use election::{Election, Leadership};
pub use env::{EnvError, CLIENT_ID_SUFFIX, CLIENT_ID_SUFFIX_VAR, ENV_VARS};
pub use handle::{Change, Client, Error, Hold, HoldEvent, HoldWatch, Lease, Observer};
pub use lock::Lock;
pub use reconnect::{Backoff, Ending, Reconnect};
pub use settings::{ClientCertificate, Settings, TlsSettings, SAT_METHOD};
pub use state::{ConnectionState, ConnectionWatch, Disconnection};
pub use stats::{Outcomes, Stats};
pub use tls::{TlsConfig, TlsError};
pub use transport::{Topics, Transport, TransportEvent};

/// rustls, re-exported for the adapters' TLS streams.
pub use rustls;

/// The core crate, re-exported so that users of an adapter name the same types.
pub use leasedlock;
