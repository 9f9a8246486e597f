//! MQTT v5 properties: the size of each, and the check of a whole property block.

use super::varint::read_varint;
use super::{malformed, DecodeError};

/// The size of the value of property `id`, whose bytes start `tail` (`Ok(None)`: its length
/// runs past `tail`; `Err`: not an MQTT v5 property).
pub(crate) fn property_size(id: u8, tail: &[u8]) -> Result<Option<usize>, ()> {
    Ok(match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Some(1),
        0x13 | 0x21 | 0x22 | 0x23 => Some(2),
        0x02 | 0x11 | 0x18 | 0x27 => Some(4),
        0x0B => read_varint(tail).map(|(n, _)| n),
        0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => prefixed(tail, 1),
        0x26 => prefixed(tail, 2),
        _ => return Err(()),
    })
}

/// Walks the property block starting at `body[at..]` (its length, then the properties) and checks
/// that every property is known and that the last one ends exactly at the end of the block.
/// Returns the offset just after the block.
pub(super) fn check_properties(
    packet: &'static str,
    body: &[u8],
    at: usize,
) -> Result<usize, DecodeError> {
    let bad = |detail| Err(malformed(packet, detail));
    let rest = body.get(at..).unwrap_or_default();
    let Some((len_len, len)) = read_varint(rest) else {
        return bad("missing or bad property length");
    };
    let Some(mut block) = rest.get(len_len..len_len + len) else {
        return bad("property length runs past the packet");
    };
    while let Some((&id, tail)) = block.split_first() {
        let Ok(size) = property_size(id, tail) else {
            return bad("unknown property");
        };
        match size.and_then(|n| tail.get(n..)) {
            Some(next) => block = next,
            None => return bad("property runs past the property length"),
        }
    }
    Ok(at + len_len + len)
}

/// Total length of `count` consecutive length-prefixed strings at the start of `buf`.
pub(super) fn prefixed(buf: &[u8], count: usize) -> Option<usize> {
    let mut used = 0;
    for _ in 0..count {
        let len = buf.get(used..used + 2)?;
        used += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    Some(used)
}
