//! Variable byte integers (MQTT v5 §1.5.5): remaining lengths and property lengths.

use bytes::{BufMut, BytesMut};

/// A variable byte integer at the start of `buf`: (bytes used, value). `None` if truncated or longer
/// than 4 bytes.
pub(super) fn read_varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 1, value));
        }
    }
    None
}

/// Appends `value` as a variable byte integer.
pub(crate) fn put_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

/// How many bytes [`put_varint`] writes for `value`.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
