//! # leasedlock
//!
//! A leased lock (a mutex with a time-limited lease and fencing tokens) over the state store of the
//! Azure IoT Operations MQTT broker, written as a **sans-IO** core: pure state machines that take
//! bytes, responses, clock readings and user intents, and return bytes, typed requests, deadlines
//! and events. The core reads no clock, spawns nothing, does no I/O and draws randomness only from
//! a seed.
//!
//! Layers, each built only on those before it (`docs/ARCHITECTURE.md` draws them):
//!
//! | module | what it is |
//! |---|---|
//! | [`hlc`] | hybrid logical clock: text form, order, update rules; [`FencingToken`] |
//! | [`resp`] | the RESP3 subset of the state store: encode requests, decode replies strictly |
//! | [`store`] | typed state-store commands, replies, notifications and errors ⇄ [`Message`] |
//! | [`lock`] | the lock engine: many leased locks over one state-store client ([`lock::Client`]); typed [`lock::Request`]s out, typed responses in, no MQTT |
//! | [`mqtt`] | a sans-IO MQTT v5 client session over bytes (knows nothing of locks) |
//! | [`connection`] | the engine and the MQTT session glued: bytes in, bytes out |
//! | `emulator` | (feature `emulator`) a sans-IO model of the state-store server |
//!
//! The wire facts the code relies on are in `docs/PROTOCOL.md`.
//!
//! # The drive contract
//!
//! [`lock::Client`], [`mqtt::Session`] and [`connection::Connection`] are driven alike. Their
//! methods come in four classes:
//!
//! - **getters** (`&self`: `token`, `is_held`, `valid_until`, `stats`, `poll_timeout`, …) change
//!   nothing and may be called at any time;
//! - **inputs from the world**, `handle_*` (bytes, messages, responses, connection changes,
//!   `handle_timeout`), each with the caller's reading of the clocks ([`Now`]);
//! - **intents** (`try_acquire`, `acquire`, `release`, `hold`, `edit`, `complete_edit`,
//!   `observe`, `cancel`, …; on a connection, `start` with a [`lock::Intent`]), also with a
//!   [`Now`]: they check their input at once (a refusal sends nothing) and return the id of the
//!   operation they started;
//! - **polls**, `poll_*` (`poll_output` / `poll_transmit` and `poll_event`, then `poll_timeout`),
//!   which hand out what the inputs and intents produced.
//!
//! The rule: after every input or intent, **drain** the polls until they return `None`, hand
//! what comes out to the wire and to the user, then sleep until `poll_timeout`, an input or a new
//! intent, and call `handle_timeout` when the deadline is reached (early, late or twice is
//! harmless). Inside the drain loop, any intent may be called (answering an edit with
//! `complete_edit` is the common case) and any getter; its outputs join the same drain. A `Now`
//! must never go backwards between calls. Polls run no protocol logic of their own: everything
//! they hand out was decided at the `Now` of the call that caused it, so a late drain never acts
//! on a stale clock. Nothing that arrives from the network can make a method panic.
//!
//! Start at [`lock`] for the engine and its safety rules, or at [`connection`] for a complete
//! runtime-free driver over a `std::net::TcpStream`. The runtime adapters (`leasedlock-tokio`,
//! `leasedlock-async-io`) are thin drivers around [`connection::Connection`]; another MQTT client
//! drives [`lock::Client`] directly and publishes [`lock::Client::to_message`] of each request.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod block;
mod burst;
pub mod connection;
mod decimal;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod hlc;
pub mod lock;
mod message;
pub mod mqtt;
pub mod resp;
pub mod store;
mod time;

/// The `bytes` crate this API is written in (`Bytes`, `BytesMut`), re-exported so callers use the
/// same version.
pub use bytes;
pub use hlc::FencingToken;
pub use message::{Message, QoS, SharedStr};
pub use time::Now;
