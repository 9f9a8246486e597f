//! Shared by the benchmarks: a byte-level broker + state store that answers a `Connection` the way
//! mosquitto and the state store would, at the lowest cost we can make it, and a counting allocator.
#![allow(dead_code, clippy::disallowed_methods)]

use bytes::{BufMut, BytesMut};
use leasedlock::connection::Connection;
use leasedlock::lock::{Config, Intent, Options};
use leasedlock::{mqtt, Now};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The benchmark is the driver: it reads the clock.
pub fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now::new(Instant::now(), wall)
}

/// Answers every packet of a client: CONNACK, SUBACK, PUBACK, and a state-store response to each
/// request (SET → +OK, VDEL/DEL → :1, GET → $-1, KEYNOTIFY → +OK).
pub struct Broker {
    /// A response without its fixed header and reply: topic, properties (correlation data,
    /// `__stat` = 200, `__ts` = `{version:015}:00000:store`).
    skeleton: Vec<u8>,
    /// Where the correlation data and the version's digits are in `skeleton`.
    corr_at: usize,
    ts_at: usize,
    version: u64,
    pub requests: u64,
}

impl Broker {
    pub fn new(client_id: &str) -> Self {
        let topic = leasedlock::store::response_topic(client_id).into_bytes();
        let mut props = BytesMut::new();
        props.put_u8(0x09);
        props.put_u16(16);
        let corr_at = props.len();
        props.put_slice(&[0; 16]);
        let mut ts_at = 0;
        for (k, v) in [("__stat", "200"), ("__ts", "000000000000000:00000:store")] {
            props.put_u8(0x26);
            props.put_u16(k.len() as u16);
            props.put_slice(k.as_bytes());
            props.put_u16(v.len() as u16);
            ts_at = props.len();
            props.put_slice(v.as_bytes());
        }
        let mut skeleton = BytesMut::new();
        skeleton.put_u16(topic.len() as u16);
        skeleton.put_slice(&topic);
        put_varint(&mut skeleton, props.len());
        let props_at = skeleton.len();
        skeleton.put_slice(&props);
        Broker {
            skeleton: skeleton.to_vec(),
            corr_at: props_at + corr_at,
            ts_at: props_at + ts_at,
            version: 1_800_000_000_000,
            requests: 0,
        }
    }

    /// Reads whole packets from `input` and appends the answers to `out`.
    pub fn answer(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while let Some((kind, body, rest)) = frame(input) {
            input = rest;
            match kind >> 4 {
                1 => out.extend_from_slice(&[0x20, 0x03, 0x00, 0x00, 0x00]),
                8 => {
                    let (pid, filters) = (&body[..2], body.len() - 3);
                    let _ = filters;
                    out.extend_from_slice(&[0x90, 0x04, pid[0], pid[1], 0x00, 0x01]);
                }
                3 => self.on_publish(kind, body, out),
                12 => out.extend_from_slice(&[0xD0, 0x00]),
                _ => {}
            }
        }
    }

    fn on_publish(&mut self, kind: u8, body: &[u8], out: &mut BytesMut) {
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let mut at = 2 + topic_len;
        if kind & 0x06 != 0 {
            out.extend_from_slice(&[0x40, 0x02, body[at], body[at + 1]]);
            at += 2;
        }
        let (props_len, n) = varint(&body[at..]);
        let props = &body[at + n..at + n + props_len];
        let payload = &body[at + n + props_len..];
        let corr = find_correlation(props);
        self.requests += 1;
        self.version += 1;
        let reply: &[u8] = if payload.starts_with(b"*3\r\n$4\r\nVDEL")
            || payload.starts_with(b"*2\r\n$3\r\nDEL")
        {
            b":1\r\n"
        } else if payload.starts_with(b"*2\r\n$3\r\nGET") {
            b"$-1\r\n"
        } else {
            b"+OK\r\n"
        };
        // The response is the same bytes every time but for the correlation data, the version
        // and the reply: copy the skeleton and patch it (the broker's cost is not what the
        // benchmark measures).
        assert_eq!(corr.len(), 16, "the engine's correlation data is 16 bytes");
        let remaining = self.skeleton.len() + reply.len();
        out.put_u8(0x30);
        put_varint(out, remaining);
        let at = out.len();
        out.extend_from_slice(&self.skeleton);
        out[at + self.corr_at..at + self.corr_at + 16].copy_from_slice(corr);
        let mut v = self.version;
        for slot in out[at + self.ts_at..at + self.ts_at + 15].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(reply);
    }
}

/// The PUBACK for a QoS 1 PUBLISH packet.
pub fn puback_for(publish: &[u8]) -> [u8; 4] {
    let (_, body, _) = frame(publish).expect("a whole packet");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    [0x40, 0x02, body[2 + topic_len], body[3 + topic_len]]
}

fn find_correlation(mut props: &[u8]) -> &[u8] {
    // Walk the property list: 0x09 is Correlation Data; we only need to skip what we send.
    while let Some((&id, rest)) = props.split_first() {
        let (skip, value): (usize, &[u8]) = match id {
            0x01 => (1, &[]),
            0x02 => (4, &[]),
            0x03 | 0x08 | 0x09 => {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                (2 + len, &rest[2..2 + len])
            }
            0x26 => {
                let k = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let v = usize::from(u16::from_be_bytes([rest[2 + k], rest[3 + k]]));
                (4 + k + v, &[])
            }
            _ => return &[],
        };
        if id == 0x09 {
            return value;
        }
        props = &rest[skip..];
    }
    &[]
}

fn frame(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = input.split_first()?;
    let (len, n) = varint(rest);
    let body = rest.get(n..n + len)?;
    Some((kind, body, &rest[n + len..]))
}

fn varint(b: &[u8]) -> (usize, usize) {
    let mut value = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    (value, 4)
}

fn put_varint(out: &mut BytesMut, mut v: usize) {
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

/// Moves bytes between a connection and the broker until both are quiet; returns how many
/// events came out.
pub fn pump(
    conn: &mut leasedlock::connection::Connection,
    broker: &mut Broker,
    now: Now,
    scratch: &mut BytesMut,
) -> usize {
    let mut events = 0;
    loop {
        let mut moved = false;
        while let Some(bytes) = conn.poll_transmit() {
            moved = true;
            broker.answer(&bytes, scratch);
        }
        if !scratch.is_empty() {
            moved = true;
            conn.handle_bytes(now, scratch);
            scratch.clear();
        }
        while conn.poll_event().is_some() {
            moved = true;
            events += 1;
        }
        if !moved {
            return events;
        }
    }
}

/// Counts live heap bytes, to show that long runs do not grow.
pub struct Counting;

pub static LIVE: AtomicIsize = AtomicIsize::new(0);
pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// One connected client, its broker and one lock: the try_acquire → release cycle that the
/// core, memory and instruction benchmarks run.
pub struct Cycle {
    pub conn: Connection,
    broker: Broker,
    scratch: BytesMut,
    lock: leasedlock::lock::LockId,
}

impl Cycle {
    /// Connected as `bench`, with the lock `bench-lock`.
    pub fn new() -> Cycle {
        let t = now();
        let mut conn = Connection::new(Config::new("bench"), mqtt::Options::new("bench"), t, 1)
            .expect("a valid client id");
        let mut broker = Broker::new("bench");
        let mut scratch = BytesMut::with_capacity(4096);
        conn.connect(t);
        pump(&mut conn, &mut broker, t, &mut scratch);
        let lock = conn.lock_id("bench-lock").expect("a name");
        Cycle {
            conn,
            broker,
            scratch,
            lock,
        }
    }

    /// One try_acquire of a 10 s lease, then its release, each answered in full.
    pub fn run(&mut self) {
        self.run_on(self.lock);
    }

    /// [`Cycle::run`] on the lock called `name`.
    #[allow(dead_code)] // only the memory benchmark names locks
    pub fn run_named(&mut self, name: &str) {
        let lock = self.conn.lock_id(name).expect("a name");
        self.run_on(lock);
    }

    fn run_on(&mut self, lock: leasedlock::lock::LockId) {
        let (t, lease) = (now(), Duration::from_secs(10));
        let acquire = Intent::TryAcquire { lease };
        self.conn
            .start(t, lock, acquire, Options::default())
            .expect("an intent");
        let acquired = pump(&mut self.conn, &mut self.broker, t, &mut self.scratch);
        self.conn
            .start(t, lock, Intent::Release, Options::default())
            .expect("an intent");
        let released = pump(&mut self.conn, &mut self.broker, t, &mut self.scratch);
        assert_eq!((acquired, released), (1, 1));
    }
}

/// A connected `Connection` holding `n` locks (30 s lease, renewed every 10 s), with its broker.
pub fn holding(client_id: &str, n: usize) -> (Connection, Broker, BytesMut, Now) {
    let t = now();
    let mut conn = Connection::new(Config::new(client_id), mqtt::Options::new(client_id), t, 2)
        .expect("a valid client id");
    let mut broker = Broker::new(client_id);
    let mut scratch = BytesMut::with_capacity(1 << 16);
    conn.connect(t);
    pump(&mut conn, &mut broker, t, &mut scratch);
    for i in 0..n {
        let lock = conn.lock_id(format!("lock-{i:05}")).expect("a name");
        let hold = Intent::Hold {
            lease: Duration::from_secs(30),
            interval: Duration::from_secs(10),
        };
        conn.start(t, lock, hold, Options::default())
            .expect("a valid hold");
        pump(&mut conn, &mut broker, t, &mut scratch);
    }
    (conn, broker, scratch, t)
}
