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
//! | [`lock`] | the lock engine: many leased locks over one state-store client ([`lock::Client`]) |
//! | [`mqtt`] | a sans-IO MQTT v5 client session over bytes |
//! | [`connection`] | the engine and the MQTT session glued: bytes in, bytes out |
//! | `emulator` | (feature `emulator`) a sans-IO model of the state-store server |
//!
//! Start at [`lock`] for the drive loop and the safety rules, or at [`connection`] for a complete
//! runtime-free driver over a `std::net::TcpStream`. The runtime adapters (`leasedlock-tokio`,
//! `leasedlock-async-std`) are thin drivers around [`connection::Connection`].
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
mod request_packet;
pub mod resp;
pub mod store;
mod time;

/// The `bytes` crate this API is written in (`Bytes`, `BytesMut`), re-exported so callers use the
/// same version.
pub use bytes;
pub use hlc::FencingToken;
pub use message::{Message, QoS, SharedStr};
pub use time::Now;
