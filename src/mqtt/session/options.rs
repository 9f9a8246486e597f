//! The configuration of a [`Session`].

use std::time::Duration;

use bytes::Bytes;

#[cfg(doc)]
use super::Session;

/// Configuration of a [`Session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Client identifier. Empty asks the server to assign one (then kept for reconnects).
    pub client_id: String,
    /// Clean Start on the first connection; later connections always resume (Clean Start = 0).
    pub clean_start: bool,
    /// Keep-alive interval, in whole seconds (fractions are dropped, at most 65 535); zero turns
    /// keep-alive off. A PINGREQ goes out when nothing was sent for this long; its PINGRESP must
    /// arrive within half of it.
    pub keep_alive: Duration,
    /// Session Expiry Interval, in seconds.
    pub session_expiry: u32,
    /// User name.
    pub username: Option<String>,
    /// Password (binary data in MQTT v5).
    pub password: Option<Bytes>,
    /// Authentication Method property (enhanced authentication).
    pub authentication_method: Option<String>,
    /// Authentication Data property.
    pub authentication_data: Option<Bytes>,
    /// Maximum Packet Size we advertise and enforce on inbound packets, in bytes (0 counts as 1).
    pub max_packet_size: u32,
    /// Our own cap on unacknowledged QoS 1 publishes (further ones wait in a queue); 0 counts as 1.
    pub max_inflight: u16,
    /// How long to wait for the CONNACK after [`Session::connect`]. The driver of
    /// `leasedlock-driver` gives its TCP connect and TLS handshake the same bound.
    pub connect_timeout: Duration,
}

impl Options {
    /// Options with defaults: clean start, keep-alive 60 s, session expiry 3600 s, no credentials,
    /// maximum inbound packet 1 MiB, at most 100 publishes in flight, connect timeout 30 s.
    pub fn new(client_id: impl Into<String>) -> Self {
        Options {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: Duration::from_secs(60),
            session_expiry: 3600,
            username: None,
            password: None,
            authentication_method: None,
            authentication_data: None,
            max_packet_size: 1 << 20,
            max_inflight: 100,
            connect_timeout: Duration::from_secs(30),
        }
    }
}
