//! The input bytes as a source of choices, seed expansion, and the mode bit.

use super::link::Mode;

/// Reads choices from the fuzz input; `None` once it is used up.
pub(crate) struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// A byte, or 0 when the input is used up (for configuration, read before any step).
    pub(crate) fn byte_or_zero(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    /// One of `n` choices (`n` ≥ 1).
    pub(crate) fn choose(&mut self, n: usize) -> Option<usize> {
        self.byte().map(|b| usize::from(b) % n.max(1))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// The bit of the first input byte that chooses byte mode.
const BYTE_MODE: u8 = 0x80;

/// Which mode `data` runs in.
pub fn mode_of(data: &[u8]) -> Mode {
    match data.first() {
        Some(b) if b & BYTE_MODE != 0 => Mode::Bytes,
        _ => Mode::Messages,
    }
}

/// Makes `data` run in `mode` (nothing else about the run changes).
pub fn set_mode(data: &mut [u8], mode: Mode) {
    if let Some(b) = data.first_mut() {
        match mode {
            Mode::Bytes => *b |= BYTE_MODE,
            Mode::Messages => *b &= !BYTE_MODE,
        }
    }
}

/// The bits of the second input byte that choose how often a message is lost (see
/// `World::new`).
const LOSS_BITS: u8 = 0b0000_0110;

/// Makes `data` run without lost messages (nothing else about the configuration changes): for
/// showing that a fault class, not a lost message, is what finds a bug.
pub fn set_lossless(data: &mut [u8]) {
    if let Some(b) = data.get_mut(1) {
        *b &= !LOSS_BITS;
    }
}

/// The bits of the second input byte that, both set, make the store fill up (see `World::new`).
const FILLS_UP_BITS: u8 = 0b0001_1000;

/// The fourth input byte of a 4 s lease with a 500 ms request timeout and no jitter (see
/// `World::new`).
const LONG_LEASE_SHORT_TIMEOUT: u8 = 2;

/// Makes `data` run where an edit's write is most often repeated into a full store: the store
/// fills up and has room again, messages are lost the most, and requests time out (500 ms) long
/// before the lease (4 s) ends. The rest of the configuration stays.
pub fn set_repeats_into_a_full_store(data: &mut [u8]) {
    if let Some(b) = data.get_mut(1) {
        *b |= FILLS_UP_BITS | LOSS_BITS;
    }
    if let Some(b) = data.get_mut(3) {
        *b = LONG_LEASE_SHORT_TIMEOUT;
    }
}

/// The bits of the first input byte that choose four clients, and of the second that choose two
/// locks (see `World::new`).
const FOUR_CLIENTS: u8 = 0b0000_0011;
const TWO_LOCKS: u8 = 0b0000_0001;

/// Makes `data` run four clients on one lock (nothing else about the configuration changes):
/// where waiters most often make a herd, for bugs only a herd can show.
pub fn set_herd(data: &mut [u8]) {
    if let Some(b) = data.get_mut(0) {
        *b |= FOUR_CLIENTS;
    }
    if let Some(b) = data.get_mut(1) {
        *b &= !TWO_LOCKS;
    }
}

/// The bits of the third input byte that, all set, run the clients' edits without the edit
/// fence (message mode; see `World::new`).
const UNFENCED_BITS: u8 = 0b1110_0000;

/// Makes `data` run its clients' edits without the edit fence, and hold no fenced write, in
/// message mode (nothing else about the configuration changes): for faults whose bugs only an
/// edit that repeats its write can show.
pub fn set_unfenced(data: &mut [u8]) {
    if let Some(b) = data.get_mut(2) {
        *b |= UNFENCED_BITS;
    }
}

/// The engine's own PRNG: seeds for the engines and the expansion of a seed into input bytes.
pub(crate) use leasedlock::lock::SplitMix64;

/// The input bytes a seed stands for: `len` bytes of SplitMix64 output.
pub fn seed_input(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}
