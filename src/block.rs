//! Shared blocks: many short-lived byte strings cut from one allocation.
//!
//! Requests, their correlation data and payloads, and the packets of responses live only until
//! they are sent, acknowledged or read. Cutting them from a block of a few KiB costs one
//! allocation per block instead of one per string; a block is freed when its last string is.

use bytes::{Bytes, BytesMut};

/// A block that byte strings are written into and cut from.
#[derive(Debug)]
pub(crate) struct Blocks {
    block: BytesMut,
    /// The size of a new block (a larger string gets a block of its own size).
    size: usize,
}

impl Blocks {
    /// Blocks of `size` bytes; none is allocated before the first write.
    pub(crate) fn new(size: usize) -> Self {
        Blocks {
            block: BytesMut::new(),
            size,
        }
    }

    /// The bytes that `write` appends, cut from the current block, and what `write` returned.
    /// `room` is what the current block must have left, or a new one is started: the bytes
    /// `write` needs, or a bound on them (`write` may reserve more itself).
    pub(crate) fn write<T>(
        &mut self,
        room: usize,
        write: impl FnOnce(&mut BytesMut) -> T,
    ) -> (Bytes, T) {
        if self.block.capacity() - self.block.len() < room {
            self.block = BytesMut::with_capacity(room.max(self.size));
        }
        let result = write(&mut self.block);
        (self.block.split().freeze(), result)
    }

    /// A copy of `bytes` cut from the current block.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        self.write(bytes.len(), |out| out.extend_from_slice(bytes))
            .0
    }
}

/// Makes room for `room` more bytes in `buf`, a block of at least `block` bytes at a time: the
/// block policy of every buffer that many short strings are written into and split from (it
/// takes back a block whose strings are all gone, or starts a new one).
pub(crate) fn make_room(buf: &mut BytesMut, room: usize, block: usize) {
    if buf.capacity() - buf.len() < room {
        buf.reserve(room.max(block));
    }
}
