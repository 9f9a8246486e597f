//! The caller's reading of the clocks.
//!
//! The core never reads a clock. Every call that can move time forward takes a [`Now`]: a monotonic
//! [`Instant`] for deadlines and a wall-clock reading in milliseconds since the Unix epoch for the
//! hybrid logical clock ([`crate::hlc`]). A driver reads both once per call; a simulator makes them up.

use std::time::{Duration, Instant};

/// One reading of the caller's clocks, passed into every mutating call of the core.
///
/// ```
/// use leasedlock::Now;
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// let now = Now::new(start, 1_700_000_000_000);
/// let later = now + Duration::from_millis(250);
/// assert_eq!(later.wall_ms, 1_700_000_000_250);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Now {
    /// Monotonic time: all deadlines and timers are measured on it.
    pub instant: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch: feeds the hybrid logical clock.
    pub wall_ms: u64,
}

impl Now {
    /// A reading made of a monotonic instant and a wall-clock time in ms since the Unix epoch.
    pub fn new(instant: Instant, wall_ms: u64) -> Self {
        Now { instant, wall_ms }
    }
}

impl std::ops::Add<Duration> for Now {
    type Output = Now;

    /// Both clocks advanced by the same amount (wall clock saturating at `u64::MAX`).
    fn add(self, d: Duration) -> Now {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Now {
            instant: self.instant + d,
            wall_ms: self.wall_ms.saturating_add(ms),
        }
    }
}

/// How far the wall clock may run ahead of the monotonic one between two readings before the
/// difference counts as a pause of the monotonic clock (a suspended host or VM); well below the
/// smallest safety margin.
pub(crate) const PAUSE_SLACK: Duration = Duration::from_millis(20);

impl Now {
    /// How long the monotonic clock stood still between `earlier` and this reading: the time the
    /// wall clock ran ahead of it, when that is more than [`PAUSE_SLACK`]. A wall clock stepped
    /// forward counts the same; either way, deadlines on the monotonic clock come that much late.
    pub(crate) fn pause_since(self, earlier: Now) -> Option<Duration> {
        let monotonic = self.instant.checked_duration_since(earlier.instant)?;
        let wall = Duration::from_millis(self.wall_ms.saturating_sub(earlier.wall_ms));
        wall.checked_sub(monotonic)
            .filter(|pause| *pause > PAUSE_SLACK)
    }
}

/// Longest lease or timeout the core accepts: anything longer is surely a unit mistake.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// `at + d`, saturating far in the future instead of overflowing.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(MAX_DURATION))
        .unwrap_or(at)
}
