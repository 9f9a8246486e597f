//! The modelled MQTT v5 broker in front of the emulator: one connection per client.
//!
//! Both modes use its subscription table: in message mode the world opens and closes a client's
//! connection as the client connects and disconnects and hands it each SUBSCRIBE; in byte mode the
//! broker reads each connection's bytes itself — in whatever chunks they arrive — one packet at a
//! time ([`Broker::next_packet`]), so that the world can apply each request to the store before
//! the next packet is read. It answers CONNECT with CONNACK (Session Present when it resumes the
//! client's session: see the module docs of the simulator), SUBSCRIBE with SUBACK (QoS 1 granted), PINGREQ with PINGRESP and every QoS 1 PUBLISH with a
//! PUBACK; it writes the store's responses and notifications as QoS 1 PUBLISH packets
//! ([`Broker::publish`]) and takes the client's PUBACKs for them.
//!
//! It checks the client as it reads (a violation ends the run):
//!
//! - **W1** every packet is well-formed MQTT v5 ([`codec`](super::codec)) and in order: CONNECT
//!   first and once, with the client's id; requests are QoS 1 PUBLISHes to the request topic, not
//!   retained, DUP only on a connection that resumed a session; a packet identifier is reused on
//!   a connection only after the client has received the PUBACK or SUBACK that freed it; a PUBACK
//!   answers a PUBLISH of ours in flight; nothing follows DISCONNECT;
//! - **W2** the client never has more QoS 1 PUBLISHes unacknowledged than the Receive Maximum of
//!   the CONNACK;
//! - **W3** the client writes a packet at least every 1.5 × its Keep Alive (by when it wrote each,
//!   not when it arrived, and not counting the time its host was suspended).
//!
//! What the client had received when it sent a packet is known exactly: every chunk from a client
//! carries a stamp, the number of bytes of this connection the client had read when it wrote the
//! chunk; the broker knows where each of its PUBACKs and SUBACKs ends in what it wrote.

use std::collections::{BTreeSet, VecDeque};

use leasedlock::bytes::{Bytes, BytesMut};
use leasedlock::{store, Message, QoS};

use super::codec::{self, Packet};
use super::input::SplitMix64;
use super::net::Reply;

/// Bytes from a client, as the network delivers them.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub bytes: Bytes,
    /// How many bytes of the connection the client had read when it wrote these.
    pub stamp: u64,
    /// When the client wrote them, ns.
    pub sent: u64,
    /// The ordinal (1-based, on the connection) of a PUBLISH whose reply is not the store's, and
    /// what it is.
    pub reply: Option<(u64, Reply)>,
}

/// What one packet of a client asks of the world.
#[derive(Debug, Default)]
pub(crate) struct Handled {
    /// A line for the trace.
    pub log: String,
    /// The broker's answer, to be sent to the client.
    pub reply: Option<Bytes>,
    /// A request for the store, and what becomes of its reply.
    pub request: Option<(Message, Reply)>,
    /// The connection ended (DISCONNECT).
    pub closed: bool,
    /// A PUBLISH to acknowledge once the store's answer to it is out ([`Broker::puback`]).
    pub ack_later: Option<u16>,
    /// The reply holds a SUBACK that refused a filter: the stream offset where it ends (once
    /// the client has read that far, it knows).
    pub refused_at: Option<u64>,
}

/// What [`Broker::receive`] made of a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The chunk belongs to a connection the broker has closed since (taken over): ignored.
    Stale,
    /// Buffered; `took_over` when it opened a new connection and closed an older open one, and
    /// `twin` when that closed the open connection of another client with the same client id.
    Buffered {
        took_over: bool,
        twin: Option<TakenOver>,
    },
}

/// The connection of a twin (another client with the same client id) that a new connection
/// took over: the broker closes it, after a DISCONNECT "session taken over".
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TakenOver {
    pub client: usize,
    pub epoch: u64,
    pub disconnect: Bytes,
}

pub(crate) struct Broker {
    /// The expected client id of each client.
    ids: Vec<String>,
    conns: Vec<Option<Conn>>,
    /// When each client's host was suspended (from, to), ns: not counted as its silence.
    asleep: Vec<Vec<(u64, u64)>>,
    /// Receive Maximum of the CONNACK (`None`: not sent, 65 535).
    receive_maximum: Option<u16>,
    /// Chooses harmless variations of the encoding (CONNACK properties, PUBACK forms, property
    /// order), and whether a session is forgotten.
    rng: SplitMix64,
    /// Byte mode: the session each client left when its last connection ended, if it asked to
    /// keep it (Session Expiry > 0).
    kept: Vec<Option<Kept>>,
    /// In runs where the broker refuses subscriptions: decides which, and with what reason.
    refusals: Option<SplitMix64>,
}

struct Conn {
    epoch: u64,
    open: bool,
    /// Closed by the broker for a twin's new connection: what the client wrote before it read
    /// the DISCONNECT is not its fault.
    taken_over: bool,
    subs: Vec<String>,
    /// Byte mode: the wire state.
    wire: Option<Box<Wire>>,
}

/// A client's MQTT session kept while it has no connection: what a CONNECT with Clean Start 0
/// resumes.
struct Kept {
    subs: Vec<String>,
    /// Our PUBLISHes the client had not acknowledged, in the order sent: re-sent with DUP.
    unacked: Vec<(u16, Message)>,
    /// The QoS 1 messages of its subscriptions that came meanwhile: sent after those.
    queued: Vec<Message>,
    /// When the session expires, ns.
    expires: u64,
}

#[derive(Default)]
struct Wire {
    /// CONNECT received.
    connected: bool,
    /// The CONNECT's Session Expiry Interval, s.
    session_expiry: u32,
    /// The CONNACK said Session Present: the client may re-send its PUBLISHes (DUP).
    resumed: bool,
    keep_alive_ns: u64,
    /// When the client wrote the last packet read, ns.
    last_sent: u64,
    client_receive_maximum: usize,
    client_max_packet: usize,
    rx: BytesMut,
    /// Stream offset of `rx[0]`.
    rx_at: u64,
    /// Where each chunk starts in the stream, its stamp and when it was written.
    stamps: VecDeque<(u64, u64, u64)>,
    /// Ordinals of PUBLISHes whose reply is not the store's, and what it is.
    replies: VecDeque<(u64, Reply)>,
    /// PUBLISHes read so far.
    publishes: u64,
    /// Bytes written to the client so far.
    written: u64,
    /// Our PUBACKs and SUBACKs the client may not have read yet: where each ends, the packet id it
    /// frees, and whether it acknowledges a PUBLISH.
    acks: VecDeque<(u64, u16, bool)>,
    /// Packet ids of the client in use (until the client has read their acknowledgement).
    ids_in_use: BTreeSet<u16>,
    /// QoS 1 PUBLISHes of the client unacknowledged as far as the client knows.
    unacked_publishes: usize,
    /// Our PUBLISHes waiting for the client's PUBACK, in the order sent.
    ours: Vec<(u16, Message)>,
    next_id: u16,
}

impl Broker {
    /// A broker for the clients `ids`; with `refusal_seed`, it refuses one subscription in four.
    pub(crate) fn new(
        ids: Vec<String>,
        receive_maximum: Option<u16>,
        seed: u64,
        refusal_seed: Option<u64>,
    ) -> Broker {
        Broker {
            refusals: refusal_seed.map(SplitMix64::new),
            conns: ids.iter().map(|_| None).collect(),
            asleep: vec![Vec::new(); ids.len()],
            kept: ids.iter().map(|_| None).collect(),
            ids,
            receive_maximum,
            rng: SplitMix64::new(seed),
        }
    }

    /// Where the session of client `c` is kept: twins (clients with one client id) share the
    /// slot of the first of them, as a broker keeps one session per client id.
    fn session_slot(&self, c: usize) -> usize {
        self.ids
            .iter()
            .position(|id| *id == self.ids[c])
            .unwrap_or(c)
    }

    /// Whether another client has the client id of `c`.
    pub(crate) fn has_twin(&self, c: usize) -> bool {
        self.ids
            .get(c)
            .is_some_and(|me| self.ids.iter().filter(|id| *id == me).count() > 1)
    }

    /// Another client with the client id of `c` that has a connection open, if any.
    pub(crate) fn open_twin(&self, c: usize) -> Option<usize> {
        (0..self.ids.len()).find(|&t| {
            t != c
                && self.ids[t] == self.ids[c]
                && self.conns[t].as_ref().is_some_and(|conn| conn.open)
        })
    }

    /// Byte mode: a new connection of `c` takes over the open connection of its twin, if it has
    /// one: the broker writes DISCONNECT 0x8E (session taken over) on it and ends it, keeping
    /// its session for `c` to resume (MQTT v5 §3.1.4).
    fn take_over_from_twin(&mut self, c: usize, now: u64) -> Option<TakenOver> {
        let t = self.open_twin(c)?;
        let conn = self.conns[t].as_mut()?;
        conn.taken_over = true;
        let epoch = conn.epoch;
        let disconnect = match conn.wire.as_mut() {
            Some(wire) if wire.connected => write(wire, codec::server_disconnect(0x8e)),
            _ => Bytes::new(),
        };
        self.end(t, now);
        Some(TakenOver {
            client: t,
            epoch,
            disconnect,
        })
    }

    /// The host of client `c` is suspended from `from` to `to` (ns): its silence meanwhile is
    /// not held against it by W3 (the broker does not time suspended clients out; see the model
    /// limits).
    pub(crate) fn excuse_silence(&mut self, c: usize, from: u64, to: u64) {
        self.asleep[c].push((from, to));
    }

    /// Message mode: client `c` connected (its subscriptions start empty).
    pub(crate) fn open(&mut self, c: usize, epoch: u64) {
        self.conns[c] = Some(Conn {
            epoch,
            open: true,
            taken_over: false,
            subs: Vec::new(),
            wire: None,
        });
    }

    /// Closes the connection `epoch` of client `c` at `now` if it is open; `true` if it was.
    pub(crate) fn close(&mut self, c: usize, epoch: u64, now: u64) -> bool {
        match &self.conns[c] {
            Some(conn) if conn.epoch == epoch && conn.open => {
                self.end(c, now);
                true
            }
            _ => false,
        }
    }

    /// The open connection of client `c` ends at `now`: its session is kept if the client asked
    /// for it (byte mode), with our PUBLISHes it has not acknowledged.
    fn end(&mut self, c: usize, now: u64) {
        let slot = self.session_slot(c);
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        conn.open = false;
        let subs = std::mem::take(&mut conn.subs);
        let Some(wire) = conn.wire.as_mut().filter(|wire| wire.connected) else {
            return;
        };
        self.kept[slot] = (wire.session_expiry > 0).then(|| Kept {
            subs,
            unacked: std::mem::take(&mut wire.ours),
            queued: Vec::new(),
            expires: now + u64::from(wire.session_expiry) * 1_000_000_000,
        });
    }

    /// Byte mode: a message for client `c`, which has no connection: queued in its session if it
    /// kept one subscribed to the topic; `true` if so.
    pub(crate) fn queue_for_session(&mut self, c: usize, m: &Message, now: u64) -> bool {
        // Twins share one session: it is queued once, by the first of them.
        if self.session_slot(c) != c {
            return false;
        }
        if self.kept[c].as_ref().is_some_and(|k| k.expires <= now) {
            self.kept[c] = None;
        }
        match &mut self.kept[c] {
            Some(kept)
                if m.qos == QoS::AtLeastOnce
                    && kept.subs.iter().any(|f| codec::matches(f, &m.topic)) =>
            {
                kept.queued.push(m.clone());
                true
            }
            _ => false,
        }
    }

    /// From now on the broker grants every subscription (faults stop).
    pub(crate) fn stop_refusing(&mut self) {
        self.refusals = None;
    }

    /// Message mode: a SUBSCRIBE of client `c`; `false` if the broker refused it.
    pub(crate) fn subscribe(&mut self, c: usize, filter: String) -> bool {
        if refusal(&mut self.refusals).is_some() {
            return false;
        }
        if let Some(conn) = self.conns[c].as_mut().filter(|conn| conn.open) {
            add_subscription(&mut conn.subs, filter);
        }
        true
    }

    /// Whether client `c` has an open connection subscribed to `topic`.
    pub(crate) fn subscribed(&self, c: usize, topic: &str) -> bool {
        self.conns[c]
            .as_ref()
            .is_some_and(|conn| conn.open && conn.subs.iter().any(|f| codec::matches(f, topic)))
    }

    /// The epoch of the open connection of client `c`, if any.
    pub(crate) fn open_epoch(&self, c: usize) -> Option<u64> {
        self.conns[c]
            .as_ref()
            .filter(|conn| conn.open)
            .map(|conn| conn.epoch)
    }

    /// Whether the connection `epoch` of client `c` is open.
    pub(crate) fn is_open(&self, c: usize, epoch: u64) -> bool {
        self.conns[c]
            .as_ref()
            .is_some_and(|conn| conn.open && conn.epoch == epoch)
    }

    /// Byte mode: a chunk of the connection `epoch` of client `c` arrived. The
    /// first bytes of a newer connection open it (taking over an older one still open).
    pub(crate) fn receive(
        &mut self,
        now: u64,
        c: usize,
        epoch: u64,
        chunk: &Chunk,
    ) -> Result<Received, String> {
        let mut took_over = false;
        let mut twin = None;
        match &self.conns[c] {
            Some(conn) if conn.epoch > epoch || conn.epoch == epoch && conn.taken_over => {
                return Ok(Received::Stale)
            }
            Some(conn) if conn.epoch == epoch && !conn.open => {
                return Err(format!(
                    "W1: {} sent {} bytes after DISCONNECT",
                    self.ids[c],
                    chunk.bytes.len()
                ));
            }
            Some(conn) if conn.epoch == epoch => {}
            older => {
                took_over = older.as_ref().is_some_and(|conn| conn.open);
                if took_over {
                    self.end(c, now);
                }
                twin = self.take_over_from_twin(c, now);
                self.conns[c] = Some(Conn {
                    epoch,
                    open: true,
                    taken_over: false,
                    subs: Vec::new(),
                    wire: Some(Box::new(Wire {
                        last_sent: chunk.sent,
                        next_id: 1,
                        ..Wire::default()
                    })),
                });
            }
        }
        let Some(wire) = self.conns[c].as_mut().and_then(|conn| conn.wire.as_mut()) else {
            return Err(format!(
                "{}: bytes on a message-mode connection",
                self.ids[c]
            ));
        };
        let start = wire.rx_at + wire.rx.len() as u64;
        wire.stamps.push_back((start, chunk.stamp, chunk.sent));
        wire.replies.extend(chunk.reply);
        wire.rx.extend_from_slice(&chunk.bytes);
        Ok(Received::Buffered { took_over, twin })
    }

    /// Reads and handles the next whole packet of client `c`, if one has arrived.
    pub(crate) fn next_packet(&mut self, now: u64, c: usize) -> Result<Option<Handled>, String> {
        let slot = self.session_slot(c);
        let id = &self.ids[c];
        let Some(conn) = self.conns[c].as_mut().filter(|conn| conn.open) else {
            return Ok(None);
        };
        let Some(wire) = conn.wire.as_mut() else {
            return Ok(None);
        };
        let len = match codec::frame_len(&wire.rx) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("W1: {id} sent a malformed packet: {e}")),
        };
        let bytes = wire.rx.split_to(len).freeze();
        let start = wire.rx_at;
        wire.rx_at += len as u64;
        while wire.stamps.len() > 1 && wire.stamps[1].0 <= start {
            wire.stamps.pop_front();
        }
        let (stamp, sent) = wire.stamps.front().map_or((0, now), |s| (s.1, s.2));
        // What the client had read when it wrote this packet frees packet ids.
        while let Some(&(end, pid, publish)) = wire.acks.front() {
            if end > stamp {
                break;
            }
            wire.acks.pop_front();
            wire.ids_in_use.remove(&pid);
            wire.unacked_publishes -= usize::from(publish);
        }
        let packet = codec::decode(&bytes)
            .map_err(|e| format!("W1: {id} sent a malformed packet: {e} ({bytes:02x?})"))?;
        // W3 counts the time between the client's writes, not the network's delays, nor the
        // time its host was suspended.
        let last = wire.last_sent;
        self.asleep[c].retain(|&(_, to)| to > last);
        let asleep: u64 = self.asleep[c]
            .iter()
            .map(|&(from, to)| to.min(sent).saturating_sub(from.max(last)))
            .sum();
        let gap = sent.saturating_sub(last) - asleep;
        if wire.connected && wire.keep_alive_ns > 0 && gap > wire.keep_alive_ns * 3 / 2 {
            return Err(format!(
                "W3: {id} sent nothing for {:.3} ms, keep alive {} ms",
                gap as f64 / 1e6,
                wire.keep_alive_ns / 1_000_000
            ));
        }
        wire.last_sent = wire.last_sent.max(sent);
        let log = format!("broker ← {id}: {}", codec::describe(&packet));
        let mut handled = Handled {
            log,
            ..Handled::default()
        };
        if !wire.connected && !matches!(packet, Packet::Connect(_)) {
            return Err(format!("W1: {id} sent {} before CONNECT", handled.log));
        }
        match packet {
            Packet::Connect(connect) => {
                if wire.connected {
                    return Err(format!("W1: {id} sent a second CONNECT"));
                }
                if connect.client_id != *id {
                    return Err(format!("W1: {id} connected as {:?}", connect.client_id));
                }
                wire.connected = true;
                wire.session_expiry = connect.session_expiry;
                // A session kept and not expired is resumed, unless the broker forgot it (it
                // restarted without persistence while the client was away): one time in four.
                let kept = self.kept[slot].take().filter(|k| k.expires > now);
                let resumed = match kept {
                    Some(kept) if !connect.clean_start => {
                        let forgot = self.rng.next_u64() & 3 == 0;
                        if forgot {
                            handled.log.push_str(" (the broker forgot its session)");
                        }
                        (!forgot).then_some(kept)
                    }
                    _ => None,
                };
                wire.resumed = resumed.is_some();
                let extras = self.rng.next_u64();
                // Now and then the broker imposes a keep-alive of its own (Server Keep Alive).
                let server_keep_alive = (extras & 16 != 0).then_some(2);
                let keep_alive = server_keep_alive.unwrap_or(connect.keep_alive);
                wire.keep_alive_ns = u64::from(keep_alive) * 1_000_000_000;
                wire.client_receive_maximum = usize::from(connect.receive_maximum);
                wire.client_max_packet = connect
                    .maximum_packet_size
                    .map_or(usize::MAX, |m| m as usize);
                let connack = codec::connack(
                    wire.resumed,
                    self.receive_maximum,
                    server_keep_alive,
                    extras,
                );
                let mut reply = BytesMut::from(&write(wire, connack)[..]);
                if let Some(kept) = resumed {
                    // The session goes on: its subscriptions, then what the client has not
                    // acknowledged, re-sent with DUP and its packet id, then what came meanwhile.
                    conn.subs = kept.subs;
                    handled.log.push_str(" (session resumed)");
                    let resends = kept.unacked.into_iter().map(|(p, m)| (Some(p), m));
                    let queued = kept.queued.into_iter().map(|m| (None, m));
                    for (resend, m) in resends.chain(queued) {
                        let r = self.rng.next_u64();
                        if let Some((bytes, packet_id)) = send(wire, id, &m, resend, r)? {
                            let what = if resend.is_some() { " DUP" } else { "" };
                            handled.log.push_str(&format!(
                                "\n  broker → {id}: PUBLISH p{packet_id}{what} (session)"
                            ));
                            reply.extend_from_slice(&bytes);
                        }
                    }
                }
                handled.reply = Some(reply.freeze());
            }
            Packet::Publish {
                packet_id,
                dup,
                retain,
                message,
            } => {
                // DUP marks a re-send, which MQTT allows only on a resumed session.
                if message.topic != store::REQUEST_TOPIC
                    || message.qos != QoS::AtLeastOnce
                    || (dup && !wire.resumed)
                    || retain
                {
                    return Err(format!(
                        "W1: {id} published to {:?} with {:?}, DUP {dup} (session resumed: {}), RETAIN {retain}: not a request",
                        message.topic, message.qos, wire.resumed
                    ));
                }
                take_packet_id(wire, id, packet_id)?;
                wire.unacked_publishes += 1;
                let window = usize::from(self.receive_maximum.unwrap_or(u16::MAX));
                if wire.unacked_publishes > window {
                    return Err(format!(
                        "W2: {id} has {} PUBLISHes unacknowledged, Receive Maximum {window}",
                        wire.unacked_publishes
                    ));
                }
                wire.publishes += 1;
                let reply = match wire.replies.front() {
                    Some(&(n, reply)) if n == wire.publishes => {
                        wire.replies.pop_front();
                        reply
                    }
                    _ => Reply::Sent,
                };
                // The PUBACK goes before the store's answer, or (as from a broker that
                // acknowledges once it has forwarded the message) after it.
                let form = self.rng.next_u64();
                if form & 8 == 0 {
                    handled.reply = Some(puback(wire, packet_id, form));
                } else {
                    handled.ack_later = Some(packet_id);
                }
                handled.request = Some((message, reply));
            }
            Packet::PubAck { packet_id, .. } => {
                let Some(at) = wire.ours.iter().position(|(p, _)| *p == packet_id) else {
                    return Err(format!(
                        "W1: {id} acknowledged p{packet_id}, which is not in flight"
                    ));
                };
                wire.ours.remove(at);
            }
            Packet::Subscribe { packet_id, filters } => {
                take_packet_id(wire, id, packet_id)?;
                let mut codes = Vec::with_capacity(filters.len());
                for (filter, options) in filters {
                    match refusal(&mut self.refusals) {
                        Some(code) => codes.push(code),
                        None => {
                            codes.push((options & 3).min(1));
                            add_subscription(&mut conn.subs, filter);
                        }
                    }
                }
                let reply = write(wire, codec::suback(packet_id, &codes));
                wire.acks.push_back((wire.written, packet_id, false));
                if codes.iter().any(|&code| code >= 0x80) {
                    handled
                        .log
                        .push_str(&format!(" (refused: SUBACK {codes:02x?})"));
                    handled.refused_at = Some(wire.written);
                }
                handled.reply = Some(reply);
            }
            Packet::PingReq => handled.reply = Some(write(wire, codec::pingresp())),
            Packet::Disconnect { .. } => handled.closed = true,
        }
        if handled.closed {
            self.end(c, now);
        }
        Ok(Some(handled))
    }

    /// Byte mode: the PUBACK of the client's PUBLISH `packet_id`, deferred by
    /// [`Handled::ack_later`], if the connection is still open.
    pub(crate) fn puback(&mut self, c: usize, packet_id: u16) -> Option<Bytes> {
        let wire = self.conns[c]
            .as_mut()
            .filter(|conn| conn.open)
            .and_then(|conn| conn.wire.as_mut())?;
        Some(puback(wire, packet_id, self.rng.next_u64()))
    }

    /// Byte mode: the PUBLISH of `m` to client `c` on its open connection (with its packet id,
    /// 0 for QoS 0), or `None` when there is no such connection.
    pub(crate) fn publish(
        &mut self,
        c: usize,
        m: &Message,
    ) -> Result<Option<(Bytes, u16)>, String> {
        let Some(wire) = self.conns[c]
            .as_mut()
            .filter(|conn| conn.open)
            .and_then(|conn| conn.wire.as_mut())
            .filter(|wire| wire.connected)
        else {
            return Ok(None);
        };
        let r = self.rng.next_u64();
        send(wire, &self.ids[c], m, None, r)
    }
}

/// Our PUBLISH of `m` on `wire` (with its packet id, 0 for QoS 0): a new one, or the re-send
/// (DUP) of packet `resend` of the session; `None` when it is too large for the client. `r`
/// picks the packet id and the order of the properties.
fn send(
    wire: &mut Wire,
    id: &str,
    m: &Message,
    resend: Option<u16>,
    r: u64,
) -> Result<Option<(Bytes, u16)>, String> {
    if wire.ours.len() >= wire.client_receive_maximum {
        return Err(format!(
            "W1: {id} leaves {} PUBLISHes of the broker unacknowledged",
            wire.ours.len()
        ));
    }
    let mut packet_id = resend.unwrap_or(0);
    if resend.is_none() && m.qos == QoS::AtLeastOnce {
        // Any free identifier will do: half the time the next one, else one at random.
        packet_id = if r & 1 == 0 {
            wire.next_id
        } else {
            1 + ((r >> 1) % 65_535) as u16
        };
        while wire.ours.iter().any(|(p, _)| *p == packet_id) {
            packet_id = packet_id.checked_add(1).unwrap_or(1);
        }
        wire.next_id = packet_id.checked_add(1).unwrap_or(1);
    }
    let bytes = codec::publish(packet_id, m, resend.is_some(), r >> 17);
    if bytes.len() > wire.client_max_packet {
        // MQTT: a message too large for the client is discarded as if delivered.
        return Ok(None);
    }
    if packet_id != 0 {
        wire.ours.push((packet_id, m.clone()));
    }
    Ok(Some((write(wire, bytes), packet_id)))
}

/// A PUBACK for the client's `packet_id`, in one of its encodings; the client may reuse the
/// identifier once it has read it.
fn puback(wire: &mut Wire, packet_id: u16, form: u64) -> Bytes {
    let bytes = write(wire, codec::puback(packet_id, form));
    wire.acks.push_back((wire.written, packet_id, true));
    bytes
}

/// Counts what the broker writes to a connection.
fn write(wire: &mut Wire, bytes: Bytes) -> Bytes {
    wire.written += bytes.len() as u64;
    bytes
}

/// A client's packet id: not one in use.
fn take_packet_id(wire: &mut Wire, id: &str, packet_id: u16) -> Result<(), String> {
    if !wire.ids_in_use.insert(packet_id) {
        return Err(format!(
            "W1: {id} reused p{packet_id} before it read its acknowledgement"
        ));
    }
    Ok(())
}

/// Whether a broker that refuses subscriptions (`refusals`) refuses the next one, one in four,
/// and its SUBACK reason code if so: not authorized, quota exceeded, unspecified or topic filter
/// invalid (MQTT v5 §3.9.3).
fn refusal(refusals: &mut Option<SplitMix64>) -> Option<u8> {
    let r = refusals.as_mut()?.next_u64();
    (r & 3 == 0).then(|| [0x87, 0x97, 0x80, 0x8f][usize::try_from((r >> 2) & 3).unwrap_or(0)])
}

/// A subscription replaces one with the same filter.
fn add_subscription(subs: &mut Vec<String>, filter: String) {
    if !subs.contains(&filter) {
        subs.push(filter);
    }
}
