//! Hybrid logical clock (HLC): the text form, the total order and the update rules the state store
//! uses for request timestamps (`__ts`), key versions and fencing tokens (`__ft`).
//!
//! Text form: `{wall_ms:015}:{counter:05}:{node_id}`, e.g.
//! `001795770859732:00000:3e43291a-c8b7-4041-a8dd-048b4beda18e`.
//!
//! ```
//! use leasedlock::hlc::{Hlc, HlcClock, DEFAULT_MAX_DRIFT};
//!
//! let mut clock = HlcClock::new("me", DEFAULT_MAX_DRIFT);
//! let ts = clock.send(1_700_000_000_000).unwrap();
//! assert_eq!(ts.to_string(), "001700000000000:00000:me");
//! let again = clock.send(1_700_000_000_000).unwrap(); // wall clock did not move
//! assert_eq!((again.wall_ms, again.counter), (1_700_000_000_000, 1));
//! assert!(again > ts);
//! let parsed: Hlc = "001700000000000:00001:me".parse().unwrap();
//! assert_eq!(parsed, again);
//! ```

use crate::SharedStr;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default maximum drift: how far ahead of the local wall clock the HLC may run (60 s).
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

/// A hybrid-logical-clock timestamp.
///
/// The derived order is the protocol's total order: wall ms, then counter, then node id byte-wise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Wall-clock part: milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Logical counter, ordering timestamps with the same wall ms.
    pub counter: u64,
    /// Id of the node that made the timestamp; never contains `:` (may be empty). Shared: copies
    /// of a timestamp (tokens, the clock's own `__ts`) do not copy the id.
    pub node_id: SharedStr,
}

impl Hlc {
    /// A timestamp from its three parts.
    pub fn new(wall_ms: u64, counter: u64, node_id: impl Into<SharedStr>) -> Self {
        Hlc {
            wall_ms,
            counter,
            node_id: node_id.into(),
        }
    }
}

impl Hlc {
    /// The text form, `{wall_ms:015}:{counter:05}:{node_id}`, built without the formatting
    /// machinery (it is written on every request).
    pub fn to_text(&self) -> String {
        let (prefix, len) = self.text_prefix();
        let mut out = String::with_capacity(len + self.node_id.len());
        // Digits and ':' only.
        out.push_str(std::str::from_utf8(&prefix[..len]).unwrap_or_default());
        out.push_str(&self.node_id);
        out
    }

    /// The text form as a [`SharedStr`] (one allocation: the shared string itself).
    pub fn to_shared_text(&self) -> SharedStr {
        let (prefix, len) = self.text_prefix();
        let mut stack = [0u8; 128];
        let total = len + self.node_id.len();
        let Some(buf) = stack.get_mut(..total) else {
            return self.to_text().into();
        };
        buf[..len].copy_from_slice(&prefix[..len]);
        buf[len..].copy_from_slice(self.node_id.as_bytes());
        // Digits, ':' and a `str` node id: always UTF-8.
        std::str::from_utf8(buf)
            .map(SharedStr::from)
            .unwrap_or_default()
    }

    /// `{wall_ms:015}:{counter:05}:` and its length: the text form is this, then the node id.
    pub(crate) fn text_prefix(&self) -> ([u8; 48], usize) {
        text_prefix(self.wall_ms, self.counter)
    }
    /// Parses the text form like [`str::parse`], reusing `known` as the node id when it is the
    /// same (no allocation for the timestamps of a peer whose id is already known).
    pub fn parse_with_node(text: &str, known: &SharedStr) -> Result<Hlc, HlcParseError> {
        let (wall_ms, counter, node) = split_text(text)?;
        let node_id = if node == known.as_str() {
            known.clone()
        } else {
            SharedStr::from(node)
        };
        Ok(Hlc {
            wall_ms,
            counter,
            node_id,
        })
    }
}

/// `{wall_ms:015}:{counter:05}:` and its length.
pub(crate) fn text_prefix(wall_ms: u64, counter: u64) -> ([u8; 48], usize) {
    let mut buf = [b'0'; 48];
    let wall = digits(wall_ms).max(15);
    fill_decimal(&mut buf[..wall], wall_ms);
    buf[wall] = b':';
    let count = digits(counter).max(5);
    fill_decimal(&mut buf[wall + 1..wall + 1 + count], counter);
    buf[wall + 1 + count] = b':';
    (buf, wall + count + 2)
}

/// The number of decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// "00", "01", … "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n` right-aligned into `slot` (which is '0'-filled and at least `digits(n)` long), two
/// digits at a time.
fn fill_decimal(slot: &mut [u8], mut n: u64) {
    let mut end = slot.len();
    while n >= 10 && end >= 2 {
        let pair = (n % 100) as usize * 2;
        slot[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        end -= 2;
    }
    if n > 0 && end >= 1 {
        slot[end - 1] = b'0' + n as u8;
    }
}

/// The wall clock, counter and node id of an HLC text.
fn split_text(s: &str) -> Result<(u64, u64, &str), HlcParseError> {
    let b = s.as_bytes();
    // The canonical widths (15 and 5 digits), as every peer writes them.
    if let (Some(wall), Some(b':'), Some(counter), Some(b':')) =
        (b.get(..15), b.get(15), b.get(16..21), b.get(21))
    {
        if let (Some(wall_ms), Some(counter)) =
            (crate::decimal::parse(wall), crate::decimal::parse(counter))
        {
            let node = &s[22..];
            if !node.as_bytes().contains(&b':') {
                return Ok((wall_ms, counter, node));
            }
        }
    }
    let wrong = || HlcParseError::WrongPartCount {
        found: s.split(':').count(),
    };
    let first = b.iter().position(|&c| c == b':').ok_or_else(wrong)?;
    let second = b[first + 1..]
        .iter()
        .position(|&c| c == b':')
        .map(|i| first + 1 + i)
        .ok_or_else(wrong)?;
    let node = &b[second + 1..];
    if node.contains(&b':') {
        return Err(wrong());
    }
    let wall_ms = crate::decimal::parse(&b[..first]).ok_or(HlcParseError::BadWallClock)?;
    let counter = crate::decimal::parse(&b[first + 1..second]).ok_or(HlcParseError::BadCounter)?;
    Ok((wall_ms, counter, &s[second + 1..]))
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Why a text is not an HLC timestamp.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HlcParseError {
    /// The text does not have exactly three `:`-separated parts.
    #[error("an HLC has exactly three ':'-separated parts, found {found}")]
    WrongPartCount {
        /// How many parts the text has.
        found: usize,
    },
    /// The wall-clock part is not a decimal `u64` (digits only).
    #[error("the wall-clock part of an HLC is not a decimal u64")]
    BadWallClock,
    /// The counter part is not a decimal `u64` (digits only).
    #[error("the counter part of an HLC is not a decimal u64")]
    BadCounter,
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    /// Parses the text form. The node id may be empty (the SDKs accept it too); it never contains
    /// `:`. Wall and counter are digits only (no sign, no space), any number of them up to `u64::MAX`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (wall_ms, counter, node_id) = split_text(s)?;
        Ok(Hlc::new(wall_ms, counter, node_id))
    }
}

/// A fencing token: the HLC version the store gave a lock when it was acquired or renewed.
///
/// The store accepts a guarded write when its token is equal to or newer than the one protecting
/// the key, so tokens compare in HLC order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(Hlc);

impl FencingToken {
    /// The token that is this HLC.
    pub fn new(hlc: Hlc) -> Self {
        FencingToken(hlc)
    }

    /// The HLC of this token.
    pub fn as_hlc(&self) -> &Hlc {
        &self.0
    }
}

impl From<Hlc> for FencingToken {
    fn from(hlc: Hlc) -> Self {
        FencingToken(hlc)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for FencingToken {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(FencingToken)
    }
}

/// Why the clock refused to move.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HlcError {
    /// The new timestamp would be too far ahead of the local wall clock.
    #[error("HLC would be {ahead_ms} ms ahead of the local wall clock (max drift {max_ms} ms)")]
    DriftExceeded {
        /// How far ahead of the local wall clock the timestamp would be.
        ahead_ms: u64,
        /// The allowed maximum.
        max_ms: u64,
    },
    /// The logical counter would overflow `u64`.
    #[error("HLC counter overflow")]
    CounterOverflow,
}

/// A node's hybrid logical clock. It reads no clock: every update takes the wall time in ms.
///
/// On error the state is unchanged.
#[derive(Clone, Debug)]
pub struct HlcClock {
    ts: Hlc,
    max_drift: Duration,
}

impl HlcClock {
    /// A clock for `node_id`, starting at `(0, 0, node_id)`, allowed to run at most `max_drift`
    /// ahead of the local wall clock.
    pub fn new(node_id: impl Into<SharedStr>, max_drift: Duration) -> Self {
        HlcClock {
            ts: Hlc::new(0, 0, node_id),
            max_drift,
        }
    }

    /// The latest timestamp.
    pub fn current(&self) -> &Hlc {
        &self.ts
    }

    /// This clock's node id.
    pub fn node_id(&self) -> &str {
        &self.ts.node_id
    }

    /// The maximum drift ahead of the local wall clock.
    pub fn max_drift(&self) -> Duration {
        self.max_drift
    }

    fn max_drift_ms(&self) -> u64 {
        u64::try_from(self.max_drift.as_millis()).unwrap_or(u64::MAX)
    }

    fn check_drift(&self, new_wall: u64, wall_ms: u64) -> Result<(), HlcError> {
        let ahead_ms = new_wall.saturating_sub(wall_ms);
        let max_ms = self.max_drift_ms();
        if ahead_ms > max_ms {
            return Err(HlcError::DriftExceeded { ahead_ms, max_ms });
        }
        Ok(())
    }

    /// Update on send at local wall time `wall_ms`; returns the new timestamp (for `__ts`).
    ///
    /// If `wall_ms` is past the clock's wall part the clock becomes `(wall_ms, 0)`, otherwise its
    /// counter goes up by one.
    pub fn send(&mut self, wall_ms: u64) -> Result<Hlc, HlcError> {
        self.send_parts(wall_ms)?;
        Ok(self.ts.clone())
    }

    /// [`HlcClock::send`], returning only the wall clock and counter of the new timestamp (its
    /// node is this clock's).
    pub(crate) fn send_parts(&mut self, wall_ms: u64) -> Result<(u64, u64), HlcError> {
        let (wall, counter) = if wall_ms > self.ts.wall_ms {
            (wall_ms, 0)
        } else {
            let c = self
                .ts
                .counter
                .checked_add(1)
                .ok_or(HlcError::CounterOverflow)?;
            (self.ts.wall_ms, c)
        };
        self.check_drift(wall, wall_ms)?;
        self.ts.wall_ms = wall;
        self.ts.counter = counter;
        Ok((wall, counter))
    }

    /// Update on receipt of `other` at local wall time `wall_ms`. A timestamp of this same node is
    /// ignored.
    ///
    /// The wall part becomes the max of `wall_ms`, own and `other`; the counter is one more than the
    /// larger counter among those of own/`other` that have that wall part, or 0 if neither has it.
    pub fn receive(&mut self, other: &Hlc, wall_ms: u64) -> Result<(), HlcError> {
        if other.node_id == self.ts.node_id {
            return Ok(());
        }
        let own = &self.ts;
        let wall = wall_ms.max(own.wall_ms).max(other.wall_ms);
        let base = match (wall == own.wall_ms, wall == other.wall_ms) {
            (true, true) => Some(own.counter.max(other.counter)),
            (true, false) => Some(own.counter),
            (false, true) => Some(other.counter),
            (false, false) => None,
        };
        let counter = match base {
            Some(c) => c.checked_add(1).ok_or(HlcError::CounterOverflow)?,
            None => 0,
        };
        self.check_drift(wall, wall_ms)?;
        self.ts.wall_ms = wall;
        self.ts.counter = counter;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "001795770859732:00000:3e43291a-c8b7-4041-a8dd-048b4beda18e";

    #[test]
    fn protocol_example_parses_and_round_trips() {
        let h: Hlc = EXAMPLE.parse().unwrap();
        assert_eq!(
            h,
            Hlc::new(1_795_770_859_732, 0, "3e43291a-c8b7-4041-a8dd-048b4beda18e")
        );
        assert_eq!(h.to_string(), EXAMPLE);
        let t: FencingToken = EXAMPLE.parse().unwrap();
        assert_eq!(t.as_hlc(), &h);
        assert_eq!(t.to_string(), EXAMPLE);
        assert_eq!(FencingToken::from(h.clone()), FencingToken::new(h));
    }

    #[test]
    fn display_pads_and_does_not_truncate() {
        assert_eq!(Hlc::new(0, 0, "n").to_string(), "000000000000000:00000:n");
        assert_eq!(
            Hlc::new(u64::MAX, 123_456, "n").to_string(),
            "18446744073709551615:123456:n"
        );
        for h in [Hlc::new(u64::MAX, u64::MAX, "x-y"), Hlc::new(7, 99_999, "")] {
            assert_eq!(h.to_string().parse::<Hlc>().unwrap(), h);
        }
        // Every digit count, against the formatting machinery.
        let mut n = 1u64;
        for _ in 0..20 {
            for v in [n - 1, n, n + 1, n.saturating_mul(7) / 3] {
                let h = Hlc::new(v, v % 1_000_003, "node");
                let expected = format!("{v:015}:{:05}:node", v % 1_000_003);
                assert_eq!(h.to_text(), expected);
                assert_eq!(h.to_shared_text(), expected.as_str());
            }
            n = n.saturating_mul(10);
        }
    }

    #[test]
    fn parse_accepts_unpadded_and_empty_node_id() {
        assert_eq!("1:2:abc".parse::<Hlc>().unwrap(), Hlc::new(1, 2, "abc"));
        assert_eq!("1:2:".parse::<Hlc>().unwrap(), Hlc::new(1, 2, ""));
    }

    #[test]
    fn parse_rejects_malformed() {
        use HlcParseError::*;
        let cases: &[(&str, HlcParseError)] = &[
            ("", WrongPartCount { found: 1 }),
            ("1:2", WrongPartCount { found: 2 }),
            ("1:2:a:b", WrongPartCount { found: 4 }),
            (":2:a", BadWallClock),
            ("+1:2:a", BadWallClock),
            ("-1:2:a", BadWallClock),
            (" 1:2:a", BadWallClock),
            ("18446744073709551616:0:a", BadWallClock),
            ("1::a", BadCounter),
            ("1:0x1:a", BadCounter),
            ("1:2 :a", BadCounter),
            ("1:18446744073709551616:a", BadCounter),
            ("1:٣:a", BadCounter),
        ];
        for (text, err) in cases {
            assert_eq!(text.parse::<Hlc>().as_ref(), Err(err), "{text:?}");
        }
        assert!(matches!(
            "x".parse::<FencingToken>(),
            Err(WrongPartCount { .. })
        ));
    }

    #[test]
    fn order_is_wall_then_counter_then_node_bytes() {
        let a = Hlc::new(1, 9, "z");
        let b = Hlc::new(2, 0, "a");
        assert!(a < b);
        assert!(Hlc::new(2, 0, "z") < Hlc::new(2, 1, "a"));
        assert!(Hlc::new(2, 1, "A") < Hlc::new(2, 1, "a"));
        assert!(FencingToken::new(a) < FencingToken::new(b));
    }

    #[test]
    fn new_clock_starts_at_zero() {
        let c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        assert_eq!(c.current(), &Hlc::new(0, 0, "n"));
        assert_eq!(c.node_id(), "n");
        assert_eq!(c.max_drift(), Duration::from_secs(60));
    }

    #[test]
    fn send_takes_wall_when_ahead_else_counts() {
        let mut c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        assert_eq!(c.send(100).unwrap(), Hlc::new(100, 0, "n"));
        assert_eq!(c.send(100).unwrap(), Hlc::new(100, 1, "n"));
        // Wall clock stepped back: keep own wall, count.
        assert_eq!(c.send(90).unwrap(), Hlc::new(100, 2, "n"));
        assert_eq!(c.send(101).unwrap(), Hlc::new(101, 0, "n"));
        assert_eq!(c.current(), &Hlc::new(101, 0, "n"));
    }

    #[test]
    fn send_counter_overflow_leaves_state() {
        let mut c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        c.receive(&Hlc::new(100, u64::MAX - 1, "o"), 100).unwrap();
        assert_eq!(c.current(), &Hlc::new(100, u64::MAX, "n"));
        assert_eq!(c.send(100), Err(HlcError::CounterOverflow));
        assert_eq!(c.current(), &Hlc::new(100, u64::MAX, "n"));
        // A newer wall clock recovers.
        assert_eq!(c.send(101).unwrap(), Hlc::new(101, 0, "n"));
    }

    #[test]
    fn send_drift_exceeded_leaves_state() {
        let mut c = HlcClock::new("n", Duration::from_millis(50));
        c.receive(&Hlc::new(1_050, 3, "o"), 1_000).unwrap();
        assert_eq!(c.current(), &Hlc::new(1_050, 4, "n"));
        assert_eq!(
            c.send(999),
            Err(HlcError::DriftExceeded {
                ahead_ms: 51,
                max_ms: 50
            })
        );
        assert_eq!(c.current(), &Hlc::new(1_050, 4, "n"));
        assert_eq!(c.send(1_000).unwrap(), Hlc::new(1_050, 5, "n"));
    }

    #[test]
    fn receive_same_node_is_ignored() {
        let mut c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        c.receive(&Hlc::new(u64::MAX, u64::MAX, "n"), 0).unwrap();
        assert_eq!(c.current(), &Hlc::new(0, 0, "n"));
    }

    #[test]
    fn receive_counter_rules() {
        // Local wall clock ahead of both: (wall, 0).
        let mut c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        c.receive(&Hlc::new(5, 7, "o"), 10).unwrap();
        assert_eq!(c.current(), &Hlc::new(10, 0, "n"));
        // Own and other equal and max: max counter + 1.
        c.receive(&Hlc::new(10, 4, "o"), 3).unwrap();
        assert_eq!(c.current(), &Hlc::new(10, 5, "n"));
        c.receive(&Hlc::new(10, 2, "o"), 3).unwrap();
        assert_eq!(c.current(), &Hlc::new(10, 6, "n"));
        // Only own is max: own + 1.
        c.receive(&Hlc::new(9, 100, "o"), 3).unwrap();
        assert_eq!(c.current(), &Hlc::new(10, 7, "n"));
        // Only other is max: other + 1.
        c.receive(&Hlc::new(20, 100, "o"), 15).unwrap();
        assert_eq!(c.current(), &Hlc::new(20, 101, "n"));
        // Local wall equal to other and own behind: other + 1.
        c.receive(&Hlc::new(30, 4, "o"), 30).unwrap();
        assert_eq!(c.current(), &Hlc::new(30, 5, "n"));
    }

    #[test]
    fn receive_errors_leave_state() {
        let mut c = HlcClock::new("n", DEFAULT_MAX_DRIFT);
        c.send(1_000).unwrap();
        assert_eq!(
            c.receive(&Hlc::new(61_001, 0, "o"), 1_000),
            Err(HlcError::DriftExceeded {
                ahead_ms: 60_001,
                max_ms: 60_000
            })
        );
        assert_eq!(c.current(), &Hlc::new(1_000, 0, "n"));
        // Exactly max drift ahead is fine.
        c.receive(&Hlc::new(61_000, 0, "o"), 1_000).unwrap();
        assert_eq!(c.current(), &Hlc::new(61_000, 1, "n"));
        assert_eq!(
            c.receive(&Hlc::new(61_000, u64::MAX, "o"), 1_000),
            Err(HlcError::CounterOverflow)
        );
        assert_eq!(c.current(), &Hlc::new(61_000, 1, "n"));
    }

    #[test]
    fn huge_max_drift_saturates() {
        let mut c = HlcClock::new("n", Duration::MAX);
        c.receive(&Hlc::new(u64::MAX, 0, "o"), 0).unwrap();
        assert_eq!(c.current().wall_ms, u64::MAX);
    }
}
