//! The network: what is on its way, when it arrives, and the fate each input byte gives it.
//!
//! Message mode carries messages, each on its own (so a delay reorders). Byte mode carries the
//! chunks of each connection in order, as TCP does: a chunk never arrives before an earlier chunk
//! of the same connection and direction, and may be split into pieces that arrive one after the
//! other; a cut drops what is still on the wire both ways.

use std::collections::{BTreeMap, BTreeSet};

use leasedlock::bytes::{Bytes, BytesMut};
use leasedlock::Message;

use super::broker::Chunk;
use super::input::{Input, SplitMix64};

/// The shortest stall: longer than the engine's safety margin (100 ms) and any ordinary delay.
const STALL_MIN_NS: u64 = 150_000_000;

/// What one input byte decides for a message (or, in byte mode, a chunk or a published message).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fate {
    Deliver(u64),
    /// Delivered after a delay beyond the safety margin.
    Stall(u64),
    Drop,
    Duplicate(u64, u64),
    /// A request delivered after a delay, its reply not the store's.
    Reply(u64, Reply),
}

/// What becomes of the reply to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The store's reply goes back.
    Sent,
    /// The store applies the request; its reply is lost.
    Lost,
    /// The service answers 503 (unavailable) instead, the store having applied the request
    /// (`applied`) or not: the client cannot tell which.
    Unavailable { applied: bool },
}

/// What is carried.
pub(crate) enum Carried {
    // Message mode.
    Request {
        msg: Message,
        reply: Reply,
    },
    Subscribe(String),
    Message(Message),
    /// Message mode: the broker's answer to a subscription: granted or refused.
    SubAck(String, bool),
    // Byte mode.
    /// Bytes from the client to the broker.
    ToBroker(Chunk),
    /// Bytes from the broker to the client.
    ToClient(Bytes),
    /// The broker's end learns that the connection closed: the client's FIN after what it had
    /// written, or a cut.
    Closed,
    /// The client learns that its connection was cut.
    Reset,
    /// The broker sends a copy of a message it delivered (the store's QoS 1 publish, sent again
    /// by its session): a new PUBLISH, after what the broker wrote in between.
    Copy(Message),
}

impl Carried {
    /// Whether the client reads it (rather than the broker or the store).
    pub(crate) fn is_for_client(&self) -> bool {
        matches!(
            self,
            Carried::Message(_) | Carried::SubAck(..) | Carried::ToClient(_) | Carried::Reset
        )
    }
}

/// A connection: (client, epoch).
pub(crate) type ConnId = (usize, u64);

pub(crate) struct Delivery {
    pub client: usize,
    pub epoch: u64,
    pub what: Carried,
}

/// Direction of a connection's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    ToBroker = 0,
    ToClient = 1,
}

pub(crate) struct Net {
    queue: BTreeMap<(u64, u64), Delivery>,
    seq: u64,
    /// One message in `loss_mod` is dropped / duplicated / loses its reply (0: never).
    pub loss_mod: u8,
    pub max_delay_ns: u64,
    /// The longest stall: how long a message (or, in byte mode, a connection's bytes one way)
    /// may wait beyond the safety margin.
    pub stall_ns: u64,
    /// Byte mode: when the last chunk of each connection (client, epoch) is due, each way.
    tails: BTreeMap<ConnId, [u64; 2]>,
    /// Byte mode: connections that were cut.
    cut: BTreeSet<ConnId>,
    /// Byte mode: where chunks are split.
    rng: SplitMix64,
}

impl Net {
    pub(crate) fn new(loss_mod: u8, max_delay_ns: u64, stall_ns: u64, seed: u64) -> Net {
        Net {
            queue: BTreeMap::new(),
            seq: 0,
            loss_mod,
            max_delay_ns,
            stall_ns,
            tails: BTreeMap::new(),
            cut: BTreeSet::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// The fate of the next message (`request`: one sent to the store), from the next input byte;
    /// while healing, or once the input is used up, delivery after half the maximum delay.
    /// `hold_ns`: for a fenced write, how long a held one waits (past its lease and the next
    /// holder's read of the key); `None` for anything else. `may_stall`: it may wait longer than
    /// the safety margin (up to [`Net::stall_ns`] more).
    pub(crate) fn fate(
        &self,
        input: &mut Input<'_>,
        healing: bool,
        request: bool,
        hold_ns: Option<u64>,
        may_stall: bool,
    ) -> Fate {
        let half = self.max_delay_ns / 2;
        if healing {
            return Fate::Deliver(half);
        }
        let Some(b) = input.byte() else {
            return Fate::Deliver(half);
        };
        let delay = |x: u8| u64::from(x) * self.max_delay_ns / 255;
        if self.loss_mod != 0 {
            match b % self.loss_mod {
                0 => return Fate::Drop,
                // A request's copy reaches the store right after the original (a redelivery
                // before anything the client sent later); other copies come at any delay.
                1 if request => return Fate::Duplicate(delay(b), delay(b)),
                1 => return Fate::Duplicate(delay(b), delay(b.rotate_left(4))),
                2 if request => return Fate::Reply(delay(b), Reply::Lost),
                // The service is unavailable: it answers 503, whether or not the store applied
                // the request.
                5 if request => {
                    let applied = b & 0x80 != 0;
                    return Fate::Reply(delay(b), Reply::Unavailable { applied });
                }
                // A fenced write held far beyond the margin: the lease ends, another client
                // takes the lock and reads the key before the write reaches the store.
                3 => {
                    if let Some(hold) = hold_ns {
                        return Fate::Deliver(hold + delay(b));
                    }
                }
                // A stall beyond the safety margin (a broker or a route that stops for a while).
                4 if may_stall => {
                    let stall = u64::from(b) * self.stall_ns / 255;
                    return Fate::Stall(STALL_MIN_NS + stall);
                }
                _ => {}
            }
        }
        Fate::Deliver(delay(b))
    }

    /// `what` arrives at `at`, after everything already due then.
    pub(crate) fn schedule(&mut self, at: u64, client: usize, epoch: u64, what: Carried) {
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Delivery {
                client,
                epoch,
                what,
            },
        );
    }

    /// When the next delivery is due.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// The next delivery due at or before `now`. Byte mode: bytes for a client may come with
    /// the later ones of its connection that are due too, as one read (TCP coalesces).
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Delivery> {
        let mut first = self
            .queue
            .first_entry()
            .filter(|e| e.key().0 <= now)?
            .remove();
        if let Carried::ToClient(bytes) = &mut first.what {
            if self.rng.next_u64() & 3 == 0 {
                let conn = (first.client, first.epoch);
                let mut more = Vec::new();
                for (key, d) in self.queue.range(..=(now, u64::MAX)) {
                    if (d.client, d.epoch) != conn {
                        continue;
                    }
                    match &d.what {
                        Carried::ToClient(b) => more.push((*key, b.clone())),
                        _ => break,
                    }
                }
                if !more.is_empty() {
                    let mut merged = BytesMut::from(&bytes[..]);
                    for (key, b) in more {
                        self.queue.remove(&key);
                        merged.extend_from_slice(&b);
                    }
                    *bytes = merged.freeze();
                }
            }
        }
        Some(first)
    }

    /// Byte mode: whether the connection was cut (what its ends write is lost).
    pub(crate) fn is_cut(&self, conn: ConnId) -> bool {
        self.cut.contains(&conn)
    }

    /// Byte mode: `what` goes on connection `conn` at `now`, in order: due after `delay` and not
    /// before what went earlier the same way.
    pub(crate) fn send_ordered(
        &mut self,
        now: u64,
        delay: u64,
        conn: ConnId,
        dir: Dir,
        what: Carried,
    ) {
        let tail = self.tails.entry(conn).or_insert([0, 0]);
        let at = (now + delay).max(tail[dir as usize]);
        tail[dir as usize] = at;
        self.schedule(at, conn.0, conn.1, what);
    }

    /// Byte mode: `bytes` go on connection `conn` in order, maybe split into pieces that arrive
    /// one after the other, all within the maximum delay; `wrap` makes each piece (`true`: the
    /// first).
    pub(crate) fn send_bytes(
        &mut self,
        now: u64,
        delay: u64,
        conn: ConnId,
        dir: Dir,
        bytes: Bytes,
        mut wrap: impl FnMut(Bytes, bool) -> Carried,
    ) {
        let r = self.rng.next_u64();
        // Half the chunks go whole; the others in 2 to 4 pieces cut at random places, each
        // arriving with the one before or a little later.
        let pieces = if r & 1 == 0 || bytes.len() < 2 {
            1
        } else {
            2 + (r >> 1) % 3
        };
        let mut rest = bytes;
        let cap = delay.max(self.max_delay_ns);
        let mut delay = delay;
        for i in 0..pieces {
            let piece = if i + 1 == pieces || rest.len() < 2 {
                std::mem::take(&mut rest)
            } else {
                let at = 1 + (self.rng.next_u64() % (rest.len() as u64 - 1)) as usize;
                rest.split_to(at)
            };
            if piece.is_empty() {
                break;
            }
            if i > 0 {
                let r = self.rng.next_u64();
                if r & 1 == 1 {
                    delay = (delay + (r >> 1) % (self.max_delay_ns / 4 + 1)).min(cap);
                }
            }
            self.send_ordered(now, delay, conn, dir, wrap(piece, i == 0));
        }
    }

    /// Byte mode: the connection is cut: what is still on the wire both ways is lost, and what
    /// its ends write from now on too.
    pub(crate) fn cut(&mut self, (client, epoch): ConnId) -> usize {
        self.cut.insert((client, epoch));
        let before = self.queue.len();
        self.queue.retain(|_, d| {
            !(d.client == client
                && d.epoch == epoch
                && matches!(
                    d.what,
                    Carried::ToBroker(_)
                        | Carried::ToClient(_)
                        | Carried::Closed
                        | Carried::Copy(_)
                ))
        });
        before - self.queue.len()
    }
}
