//! When to connect again: [`Backoff`], a capped exponential delay with jitter, and
//! [`Reconnect`], which tells failed attempts from connections that did not last.

use std::time::{Duration, Instant};

/// Exponential reconnect backoff with a cap and a seeded jitter: the `n`-th delay is drawn from
/// `[d/2, d]` with `d = min(min · 2ⁿ, max)`.
///
/// ```
/// use leasedlock_driver::Backoff;
/// use std::time::Duration;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
/// let first = b.next_delay();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// for _ in 0..10 {
///     assert!(b.next_delay() <= Duration::from_secs(1));
/// }
/// b.reset();
/// assert!(b.next_delay() <= Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max` (at least `min`), with jitter from `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: seed,
        }
    }

    /// The delay before the next attempt; each call doubles the next one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let full = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.random() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// A connection succeeded: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// SplitMix64.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// When to connect again. Failed attempts, and connections the client gave up itself (a
/// keep-alive timeout), back off from `min` to `max` ([`Backoff`]). A session takeover
/// (DISCONNECT 0x8E), and a connection that the broker ended before it lasted `stable` (mosquitto
/// 2.0 closes a session taken over without 0x8E), go on the longer flapping backoff, from `max`
/// doubling up to `flapping_max`: reconnecting at once would take the session back from the
/// client that shares the id and start a ping-pong. A CONNACK alone resets nothing: only a
/// connection that lasted `stable` and did not end in a takeover resets both. The driver's own connection uses it with [`Settings::reconnect_min`](crate::Settings::reconnect_min),
/// [`Settings::reconnect_max`](crate::Settings::reconnect_max), [`Settings::takeover_backoff_max`](crate::Settings::takeover_backoff_max) and
/// [`Settings::stable_connection`](crate::Settings::stable_connection); a transport that reconnects its client itself can use it too.
///
/// ```
/// use leasedlock_driver::{Ending, Reconnect};
/// use std::time::{Duration, Instant};
///
/// let s = Duration::from_secs(1);
/// let mut r = Reconnect::new(s / 20, 2 * s, 300 * s, 10 * s, 7);
/// let t0 = Instant::now();
/// r.connected(t0);
/// r.ended(t0 + s / 10, Ending::ByBroker); // closed by the broker right after the CONNACK
/// assert!(r.next_delay() >= s); // not 50 ms again
/// r.connected(t0 + 2 * s);
/// r.ended(t0 + 60 * s, Ending::ByBroker); // a connection that lasted
/// assert!(r.next_delay() <= s / 20);
/// ```
#[derive(Clone, Debug)]
pub struct Reconnect {
    backoff: Backoff,
    flapping: Backoff,
    /// How long a connection must last to count as stable.
    stable: Duration,
    /// When the current connection was accepted.
    connected_at: Option<Instant>,
    /// The last accepted connection ended before it was stable.
    flapped: bool,
}

impl Reconnect {
    /// Failed attempts from `min` up to `max`; connections shorter than `stable` from `max` up
    /// to `flapping_max`; jitter from `seed`.
    pub fn new(
        min: Duration,
        max: Duration,
        flapping_max: Duration,
        stable: Duration,
        seed: u64,
    ) -> Reconnect {
        Reconnect {
            backoff: Backoff::new(min, max, seed.rotate_left(17)),
            flapping: Backoff::new(max, flapping_max, seed.rotate_left(29)),
            stable,
            connected_at: None,
            flapped: false,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        if self.flapped {
            self.flapping.next_delay()
        } else {
            self.backoff.next_delay()
        }
    }

    /// The broker accepted a connection at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection, or the attempt, ended at `now`, as `ending` says.
    pub fn ended(&mut self, now: Instant, ending: Ending) {
        let Some(at) = self.connected_at.take() else {
            return; // an attempt that failed: the backoff goes on
        };
        let lasted = now.saturating_duration_since(at) >= self.stable;
        self.flapped = match ending {
            Ending::TakenOver => true,
            Ending::ByBroker => !lasted,
            Ending::ByClient => false,
        };
        if lasted && ending != Ending::TakenOver {
            self.backoff.reset();
            self.flapping.reset();
        }
    }
}

/// How a connection ended, as [`Reconnect`] tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The broker gave the session to another connection with the same client id
    /// (DISCONNECT 0x8E).
    TakenOver,
    /// The broker ended it: a DISCONNECT, or the socket closed from its side (mosquitto 2.0
    /// closes a session taken over so, without 0x8E; a broker restart looks the same).
    ByBroker,
    /// The client gave it up: a keep-alive timeout (a silent broker, a partition), a failed
    /// write, its own DISCONNECT. A network fault, not a ping-pong: the plain backoff.
    ByClient,
}
