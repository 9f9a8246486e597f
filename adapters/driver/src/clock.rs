//! The one place that reads the clocks.

use leasedlock::Now;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The current reading of both clocks: monotonic for deadlines, wall-clock ms for the HLC.
///
/// The core never reads a clock; a driver reads both, once per call into the core.
#[allow(clippy::disallowed_methods)] // the driver is where the clock is read
pub fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Now::new(Instant::now(), wall)
}
