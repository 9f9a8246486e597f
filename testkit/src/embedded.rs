//! A small in-process MQTT v5 broker for machines without mosquitto: enough for the state store
//! and the lock clients, nothing more.
//!
//! Supported: CONNECT (any client id; an empty one gets an assigned id; a second connection with
//! the same id takes over, with DISCONNECT 0x8E to the old one), SUBSCRIBE/UNSUBSCRIBE with `+` and `#` wildcards and the No Local
//! option, QoS 0 and QoS 1 PUBLISH (forwarded with their property block untouched, at the lower of
//! the publish and subscription QoS, once per client), PUBACK, PINGREQ, DISCONNECT, keep-alive
//! (1.5 × the client's interval). Not supported: QoS 2 (the connection is closed), retained
//! messages, wills, persistent sessions (CONNACK always says Session Present = 0), redelivery.
//!
//! Like mosquitto with `log_dest topic`, it publishes `<unix seconds>: Client <id> disconnected.` on
//! [`LOG_TOPIC`] when a client's connection ends, and `<unix seconds>: Client <id> already
//! connected, closing old connection.` on [`ERROR_LOG_TOPIC`] when a new connection takes a
//! session over (before its CONNACK, as mosquitto 2.0.11 does), so that the state-store emulator
//! can drop that client's KEYNOTIFY registrations.
//!
//! Why not rumqttd: it pulls ~200 crates (tokio, a config-file stack) into every test build on a
//! shared 2-core machine; this broker is a few hundred lines of std.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The topic on which connection-end lines are published (mosquitto's notice-level log topic).
pub const LOG_TOPIC: &str = "$SYS/broker/log/N";

/// The topic on which session takeovers are published (mosquitto's error-level log topic).
pub const ERROR_LOG_TOPIC: &str = "$SYS/broker/log/E";

/// Largest packet accepted (remaining length).
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// A running embedded broker; stops when dropped.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_conn: u64,
    next_auto_id: u64,
    conns: BTreeMap<u64, Conn>,
    readers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Conn {
    /// Set once CONNECT was accepted.
    client_id: Option<String>,
    subs: Vec<(String, u8)>,
    writer: Arc<Mutex<TcpStream>>,
    next_packet_id: u16,
}

impl EmbeddedBroker {
    /// Starts the broker on a free port of `127.0.0.1`; it accepts connections when this returns.
    pub fn start() -> io::Result<EmbeddedBroker> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(EmbeddedBroker {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and joins the broker's threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor.
        let _ = TcpStream::connect(self.addr);
        let _ = acceptor.join();
        let readers = {
            let mut state = lock(&self.shared.state);
            for conn in state.conns.values() {
                let _ = lock(&conn.writer).shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.readers)
        };
        for r in readers {
            let _ = r.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        let mut state = lock(&shared.state);
        let id = state.next_conn;
        state.next_conn += 1;
        state.conns.insert(
            id,
            Conn {
                client_id: None,
                subs: Vec::new(),
                writer: Arc::new(Mutex::new(writer)),
                next_packet_id: 1,
            },
        );
        let s = shared.clone();
        if let Ok(h) = thread::Builder::new()
            .name(format!("embedded-broker-conn-{id}"))
            .spawn(move || serve(id, stream, s))
        {
            state.readers.push(h);
        }
        // Reap finished reader threads so that a long test does not accumulate them.
        state.readers.retain(|h| !h.is_finished());
    }
}

/// Reads packets of one connection until it ends, then forgets it.
fn serve(id: u64, mut stream: TcpStream, shared: Arc<Shared>) {
    let client_id = handle_packets(id, &mut stream, &shared).ok().flatten();
    let _ = stream.shutdown(Shutdown::Both);
    let was_current = {
        let mut state = lock(&shared.state);
        state.conns.remove(&id).is_some()
    };
    if let (Some(client_id), true) = (client_id, was_current) {
        let line = format!("{}: Client {client_id} disconnected.", unix_secs());
        route(&shared, None, LOG_TOPIC, 0, &[], line.as_bytes());
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Handles packets until the connection ends; returns the client id once connected.
fn handle_packets(id: u64, stream: &mut TcpStream, shared: &Shared) -> io::Result<Option<String>> {
    let mut client_id: Option<String> = None;
    loop {
        let (header, body) = read_packet(stream)?;
        let mut r = Reader(&body);
        match (header >> 4, client_id.is_some()) {
            (1, false) => {
                let (cid, keep_alive, assigned) = parse_connect(&mut r, shared)?;
                let _ = stream.set_read_timeout(
                    (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
                );
                // Take over an older connection with the same client id.
                let (writer, old) = {
                    let mut state = lock(&shared.state);
                    let old: Vec<u64> = state
                        .conns
                        .iter()
                        .filter(|(k, c)| **k != id && c.client_id.as_deref() == Some(&cid))
                        .map(|(k, _)| *k)
                        .collect();
                    let old: Vec<Conn> = old.iter().filter_map(|k| state.conns.remove(k)).collect();
                    let conn = state.conns.get_mut(&id).ok_or_else(closed)?;
                    conn.client_id = Some(cid.clone());
                    (conn.writer.clone(), old)
                };
                if !old.is_empty() {
                    let line = format!(
                        "{}: Client {cid} already connected, closing old connection.",
                        unix_secs()
                    );
                    route(shared, None, ERROR_LOG_TOPIC, 0, &[], line.as_bytes());
                }
                // As the AIO broker does: DISCONNECT 0x8E (session taken over), then close.
                for c in old {
                    let _ = send(&c.writer, 0xE0, &[0x8E, 0x00]);
                    let _ = lock(&c.writer).shutdown(Shutdown::Both);
                }
                let mut props = Vec::new();
                if assigned {
                    props.push(0x12);
                    put_str(&mut props, &cid);
                }
                let mut p = vec![0, 0]; // session present 0, success
                put_varint(&mut p, props.len());
                p.extend_from_slice(&props);
                send(&writer, 0x20, &p)?;
                client_id = Some(cid);
            }
            (3, true) => {
                let qos = (header >> 1) & 3;
                if qos > 1 {
                    return Err(protocol("QoS 2 is not supported"));
                }
                let topic = r.string()?;
                let packet_id = if qos == 1 { Some(r.u16()?) } else { None };
                let props_len = r.varint()?;
                let props = r.take(props_len)?;
                let payload = r.rest();
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(protocol("invalid topic name"));
                }
                route(shared, Some(id), &topic, qos, props, payload);
                if let Some(pid) = packet_id {
                    send(&*writer_of(shared, id)?, 0x40, &pid.to_be_bytes())?;
                }
            }
            (8, true) => {
                let pid = r.u16()?;
                skip_props(&mut r)?;
                let mut codes = Vec::new();
                let mut subs = Vec::new();
                while !r.0.is_empty() {
                    let filter = r.string()?;
                    let options = r.u8()?;
                    let qos = (options & 3).min(1);
                    if valid_filter(&filter) {
                        codes.push(qos);
                        subs.push((filter, (options & !3) | qos));
                    } else {
                        codes.push(0x8F); // Topic Filter invalid
                    }
                }
                let writer = {
                    let mut state = lock(&shared.state);
                    let conn = state.conns.get_mut(&id).ok_or_else(closed)?;
                    for (filter, options) in subs {
                        conn.subs.retain(|(f, _)| *f != filter);
                        conn.subs.push((filter, options));
                    }
                    conn.writer.clone()
                };
                let mut p = pid.to_be_bytes().to_vec();
                p.push(0);
                p.extend_from_slice(&codes);
                send(&writer, 0x90, &p)?;
            }
            (10, true) => {
                let pid = r.u16()?;
                skip_props(&mut r)?;
                let mut filters = Vec::new();
                while !r.0.is_empty() {
                    filters.push(r.string()?);
                }
                let writer = {
                    let mut state = lock(&shared.state);
                    let conn = state.conns.get_mut(&id).ok_or_else(closed)?;
                    conn.subs.retain(|(f, _)| !filters.contains(f));
                    conn.writer.clone()
                };
                let mut p = pid.to_be_bytes().to_vec();
                p.push(0);
                p.extend(std::iter::repeat_n(0u8, filters.len()));
                send(&writer, 0xB0, &p)?;
            }
            (4, true) => {} // PUBACK: no redelivery, nothing to track
            (12, true) => send(&*writer_of(shared, id)?, 0xD0, &[])?,
            (14, _) => return Ok(client_id),
            _ => return Err(protocol("unexpected packet")),
        }
    }
}

fn writer_of(shared: &Shared, id: u64) -> io::Result<Arc<Mutex<TcpStream>>> {
    let state = lock(&shared.state);
    Ok(state.conns.get(&id).ok_or_else(closed)?.writer.clone())
}

/// Parses CONNECT: client id (assigned when empty), keep-alive, whether the id was assigned.
fn parse_connect(r: &mut Reader<'_>, shared: &Shared) -> io::Result<(String, u16, bool)> {
    if r.string()? != "MQTT" || r.u8()? != 5 {
        return Err(protocol("only MQTT v5 is supported"));
    }
    let flags = r.u8()?;
    let keep_alive = r.u16()?;
    skip_props(r)?;
    let mut cid = r.string()?;
    if flags & 0x04 != 0 {
        skip_props(r)?;
        r.string()?;
        let n = usize::from(r.u16()?);
        r.take(n)?;
    }
    let assigned = cid.is_empty();
    if assigned {
        let mut state = lock(&shared.state);
        state.next_auto_id += 1;
        cid = format!("embedded-auto-{}", state.next_auto_id);
    }
    Ok((cid, keep_alive, assigned))
}

/// Delivers a PUBLISH to every client with a matching subscription (once per client).
fn route(shared: &Shared, from: Option<u64>, topic: &str, qos: u8, props: &[u8], payload: &[u8]) {
    let targets: Vec<(Arc<Mutex<TcpStream>>, u8, u16)> = {
        let mut state = lock(&shared.state);
        state
            .conns
            .iter_mut()
            .filter(|(_, c)| c.client_id.is_some())
            .filter_map(|(k, c)| {
                let granted = c
                    .subs
                    .iter()
                    .filter(|(f, o)| {
                        topic_matches(f, topic) && !(o & 0x04 != 0 && from == Some(*k))
                    })
                    .map(|(_, o)| o & 3)
                    .max()?;
                let q = granted.min(qos);
                let pid = c.next_packet_id;
                if q > 0 {
                    c.next_packet_id = c.next_packet_id.checked_add(1).unwrap_or(1);
                }
                Some((c.writer.clone(), q, pid))
            })
            .collect()
    };
    for (writer, q, pid) in targets {
        let mut p = Vec::with_capacity(topic.len() + props.len() + payload.len() + 8);
        put_str(&mut p, topic);
        if q > 0 {
            p.extend_from_slice(&pid.to_be_bytes());
        }
        put_varint(&mut p, props.len());
        p.extend_from_slice(props);
        p.extend_from_slice(payload);
        // A subscriber whose socket broke is cleaned up by its own reader thread.
        let _ = send(&writer, 0x30 | (q << 1), &p);
    }
}

/// MQTT topic matching with `+` and `#`; `$` topics do not match filters starting with a wildcard.
fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, l)| {
            (*l == "#" && i == levels.len() - 1)
                || *l == "+"
                || !(l.contains('+') || l.contains('#'))
        })
}

fn read_packet(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut b = [0u8; 1];
    stream.read_exact(&mut b)?;
    let header = b[0];
    let mut len = 0usize;
    for i in 0..4 {
        stream.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7F) << (7 * i);
        if b[0] & 0x80 == 0 {
            if len > MAX_PACKET {
                return Err(protocol("packet too large"));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body)?;
            return Ok((header, body));
        }
    }
    Err(protocol("malformed remaining length"))
}

fn send(writer: &Mutex<TcpStream>, header: u8, body: &[u8]) -> io::Result<()> {
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(header);
    put_varint(&mut packet, body.len());
    packet.extend_from_slice(body);
    lock(writer).write_all(&packet)
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn skip_props(r: &mut Reader<'_>) -> io::Result<()> {
    let n = r.varint()?;
    r.take(n).map(|_| ())
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection taken over")
}

/// A cursor over a packet body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(protocol("packet too short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn varint(&mut self) -> io::Result<usize> {
        let mut n = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            n |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(protocol("malformed variable byte integer"))
    }

    fn string(&mut self) -> io::Result<String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| protocol("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(topic_matches("a/+", "a/b"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a"));
        assert!(!topic_matches("#", "$SYS/broker/log/N"));
        assert!(topic_matches("$SYS/broker/log/N", "$SYS/broker/log/N"));
    }

    #[test]
    fn filter_validity() {
        assert!(valid_filter("a/+/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a+/b"));
        assert!(!valid_filter(""));
    }
}
