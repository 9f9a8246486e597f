//! Durations on the command line: a whole number and a unit, `500ms`, `10s`, `2m`, `1h`.

use std::time::Duration;

/// Parses `<number><unit>` with the unit `ms`, `s`, `m` or `h`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("bad duration {text:?}: {why} (examples: 500ms, 10s, 2m, 1h)");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("no unit"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad("unknown unit")),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| bad("too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (text, why) in [
            ("10x", "unknown unit"),
            ("10", "no unit"),
            ("s", "no number"),
            ("", "no unit"),
            ("-1s", "no number"),
            ("1.5s", "unknown unit"),
            ("10 s", "unknown unit"),
            ("99999999999999999999s", "number too large"),
            ("18446744073709551615h", "too long"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }
}
