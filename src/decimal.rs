//! Decimal digits without allocation, shared by the text forms of the wire.

/// Writes `n` in decimal into `buf`, returning the digits.
pub(crate) fn write(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n;
    while let Some(slot) = i.checked_sub(1).and_then(|j| buf.get_mut(j)) {
        *slot = b'0' + (v % 10) as u8;
        i -= 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Parses ASCII decimal digits (at least one, leading zeros allowed, no sign) as a `u64`.
pub(crate) fn parse(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Up to 19 digits cannot overflow: no checked arithmetic needed.
    if digits.len() <= 19 {
        let mut n = 0u64;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + u64::from(d);
        }
        return Some(n);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_and_parse() {
        for n in [0, 7, 10, 99_999, u64::MAX] {
            let mut buf = [0; 20];
            let text = super::write(n, &mut buf);
            assert_eq!(text, n.to_string().as_bytes());
            assert_eq!(super::parse(text), Some(n));
        }
        assert_eq!(super::parse(b"007"), Some(7));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 ",
            b"18446744073709551616",
            b"1a",
        ] {
            assert_eq!(super::parse(bad), None, "{bad:?}");
        }
    }
}
