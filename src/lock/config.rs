//! [`Config`]: what one lock client is configured with, and the checks it must pass.

use std::time::Duration;

/// Configuration of a lock [`Client`](super::Client).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The MQTT client id: the holder value of every lock (with `:sessionId` when a session id is
    /// given), `__srcId` of every request, and part of the response and notification topics.
    pub client_id: String,
    /// Timeout of one request when the operation gives none (default 10 s).
    pub request_timeout: Duration,
    /// How far the hybrid logical clock may run ahead of the local wall clock (default 60 s).
    pub max_clock_drift: Duration,
    /// Fixed part of the safety margin subtracted from every lease (default 100 ms): covers the
    /// time a holder needs to act on its token after checking it.
    pub safety_margin: Duration,
    /// Bound on the relative rate drift between this client's monotonic clock and the store's, in
    /// parts per million (default 10 000 = 1 %); `lease × ppm / 10⁶` is added to the margin.
    pub clock_rate_drift_ppm: u32,
    /// Smallest random delay added to a retry's backoff and to the release hold-back (default 0).
    pub retry_jitter_min: Duration,
    /// Largest random delay added to a retry's backoff and to the release hold-back (default
    /// 3 ms), drawn from the seeded PRNG between the two bounds, so that clients that failed or
    /// released together do not try again together. A waiter woken by a DELETE is not jittered:
    /// it sends at once, or, in a herd, takes its turn (docs/PROTOCOL.md, "Herds").
    pub retry_jitter_max: Duration,
    /// After this client releases a lock it had to wait for, its own next waiting acquisition of
    /// that lock holds back by this much (default 2 ms) plus the smoothed round trip of its
    /// requests (at most [`Config::safety_margin`]) plus a retry jitter, so that the waiters
    /// woken by the DELETE go first: their SETs reach the store a round trip and a half after
    /// the VDEL left, and otherwise the releaser's next SET, on the same connection, would
    /// arrive as soon and win at every latency.
    pub release_holdback: Duration,
    /// Whether an edit raises the edited key's fence to its own token before the user sees the
    /// value (default `true`): right after reading the key it writes the value back with its
    /// fencing token (an absent key gets [`ABSENT_PLACEHOLDER`](super::ABSENT_PLACEHOLDER), which
    /// edits read as absent and an aborted edit deletes again). From then on the store refuses any write of an
    /// earlier holder that the network delayed, so the value the user's closure sees stays the
    /// key's value until the edit writes. Costs one round trip per edit. `false` leaves the
    /// window of the Go seed and the SDKs: a delayed write of a previous holder that lands
    /// between this edit's read and its write is accepted, then overwritten without being seen
    /// (`docs/PROTOCOL.md` §5).
    pub raise_edit_fence: bool,
}

impl Config {
    /// The defaults for a client id.
    pub fn new(client_id: impl Into<String>) -> Self {
        Config {
            client_id: client_id.into(),
            request_timeout: Duration::from_secs(10),
            max_clock_drift: crate::hlc::DEFAULT_MAX_DRIFT,
            safety_margin: Duration::from_millis(100),
            clock_rate_drift_ppm: 10_000,
            retry_jitter_min: Duration::ZERO,
            retry_jitter_max: Duration::from_millis(3),
            release_holdback: Duration::from_millis(2),
            // Planted bug for the simulator's canary: edits without their fence.
            raise_edit_fence: cfg!(not(feature = "canary-edit-fence")),
        }
    }

    /// The margin subtracted from a lease of this length.
    pub fn margin(&self, lease: Duration) -> Duration {
        let drift_ns = lease.as_nanos() * u128::from(self.clock_rate_drift_ppm) / 1_000_000;
        self.safety_margin + Duration::from_nanos(u64::try_from(drift_ns).unwrap_or(u64::MAX))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        // `:` separates the session id in a holder value: a client id with one could be read as
        // another client's id with a session id.
        if self.client_id.contains(['+', '#', '/', ':']) {
            return Err(ConfigError::InvalidClientId(self.client_id.clone()));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroRequestTimeout);
        }
        if self.retry_jitter_min > self.retry_jitter_max {
            return Err(ConfigError::JitterBounds);
        }
        if self.clock_rate_drift_ppm >= 1_000_000 {
            return Err(ConfigError::DriftTooLarge);
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The client id is empty.
    #[error("the client id is empty")]
    EmptyClientId,
    /// The client id contains a character that is not allowed in an MQTT topic level, or `:`,
    /// which separates the session id in a holder value.
    #[error("the client id {0:?} contains '+', '#', '/' (not allowed in a topic level) or ':' (the session separator of holder values)")]
    InvalidClientId(String),
    /// The request timeout is zero.
    #[error("the request timeout is zero")]
    ZeroRequestTimeout,
    /// The smallest retry jitter is larger than the largest.
    #[error("retry_jitter_min is larger than retry_jitter_max")]
    JitterBounds,
    /// The clock-rate drift bound is 100 % or more.
    #[error("clock_rate_drift_ppm must be below 1 000 000")]
    DriftTooLarge,
}
