//! # leasedlock
//!
//! A leased lock (a mutex with a time-limited lease and fencing tokens) over the state store of the
//! Azure IoT Operations MQTT broker, written as a **sans-IO** core: pure state machines that take
//! bytes, messages, clock readings and user intents, and return bytes, messages, deadlines and events.
//! The core reads no clock, spawns nothing, does no I/O and draws randomness only from a seed.
//!
//! Layers, each built only on those before it:
//!
//! | module | what it is |
//! |---|---|
//! | [`hlc`] | hybrid logical clock: text form, order, update rules; [`FencingToken`] |
//! | [`resp`] | the RESP3 subset of the state store: encode requests, decode replies strictly |
//! | [`store`] | typed state-store commands, replies, notifications and errors ⇄ [`Message`] |
//! | [`mqtt`] | a sans-IO MQTT v5 client session over bytes |
//! | `emulator` | (feature `emulator`) a sans-IO model of the state-store server |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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
pub use message::{Message, QoS};
pub use time::Now;
