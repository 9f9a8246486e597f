//! How what the clients and the store produce is carried, and how it is delivered: the part of
//! the world where the two modes differ.
//!
//! Message mode carries each request, subscription, response and notification as a message of
//! its own. Byte mode carries each client's bytes to the broker and the broker's bytes back, in
//! order per connection; the broker turns requests into messages for the store and the store's
//! messages into PUBLISH packets.

use leasedlock::bytes::Bytes;
use leasedlock::connection;
use leasedlock::mqtt::{DisconnectCause, DisconnectReason};
use leasedlock::store;
use leasedlock::Message;

use super::broker::{Chunk, Received, TakenOver};
use super::codec;
use super::link::{Inbound, Mode, Out};
use super::net::{Carried, ConnId, Delivery, Dir, Fate, Reply};
use super::trace::describe;
use super::world::{Check, World, NS_PER_MS};

impl World<'_> {
    // ----- connections --------------------------------------------------------------------------

    /// A new connection for `c` if it has none (byte mode: a new transport; CONNECT goes out).
    pub(super) fn connect(&mut self, c: usize) -> Check {
        if self.clients[c].connected {
            return Ok(());
        }
        if self.clients[c].retired {
            return Ok(());
        }
        if self.mode == Mode::Messages {
            // The broker ends a twin's connection (one client id, one connection).
            if let Some(t) = self.broker.open_twin(c) {
                let line = format!(
                    "broker: {} takes over the connection of its twin {}",
                    self.clients[c].id, self.clients[t].id
                );
                self.log(line);
                self.disconnect(t)?;
            }
        }
        let now = self.client_now(c);
        let client = &mut self.clients[c];
        client.connected = true;
        client.epoch += 1;
        if self.mode == Mode::Messages {
            self.broker.open(c, client.epoch);
        }
        client.link.up(now);
        let id = client.id.clone();
        self.log(format!("{id} connected"));
        self.drain(c)
    }

    /// The user disconnects `c`: at once (message mode), or with DISCONNECT and closing the
    /// transport once it is written (byte mode).
    pub(super) fn disconnect(&mut self, c: usize) -> Check {
        if !self.clients[c].connected {
            return Ok(());
        }
        let now = self.client_now(c);
        match self.mode {
            Mode::Messages => {
                let store_now = self.store_now();
                let client = &mut self.clients[c];
                self.broker.close(c, client.epoch, self.t_ns);
                client.connected = false;
                client.epoch += 1;
                client.link.down(now);
                self.store
                    .handle_client_disconnected(store_now, &client.client_id);
                let id = client.id.clone();
                self.handoff_forget(c);
                self.log(format!("{id} disconnected"));
                self.route_store_output(None)?;
                self.drain(c)
            }
            Mode::Bytes => {
                self.clients[c].link.down(now);
                self.log(format!("{} disconnects", self.clients[c].id));
                // The session ends the connection (`Out::Ended`), and the transport is closed.
                self.drain(c)?;
                self.close_transport(c)
            }
        }
    }

    /// The process of `c` dies: its connection ends with it. Byte mode: what it wrote still
    /// goes, then its end closes (the kernel closes the socket).
    pub(super) fn process_gone(&mut self, c: usize) {
        let client = &self.clients[c];
        let conn = (c, client.epoch);
        if client.connected {
            match self.mode {
                Mode::Messages => {
                    let store_now = self.store_now();
                    self.store
                        .handle_client_disconnected(store_now, &client.client_id);
                    self.broker.close(c, client.epoch, self.t_ns);
                }
                Mode::Bytes if !self.net.is_cut(conn) => {
                    let half = self.net.max_delay_ns / 2;
                    self.net
                        .send_ordered(self.t_ns, half, conn, Dir::ToBroker, Carried::Closed);
                }
                Mode::Bytes => {}
            }
        }
        let client = &mut self.clients[c];
        client.connected = false;
        client.epoch += 1;
    }

    /// Byte mode: `c` closes its transport (its end sends FIN after what it wrote, unless the
    /// connection was cut).
    fn close_transport(&mut self, c: usize) -> Check {
        if !self.clients[c].connected {
            return Ok(());
        }
        let conn = (c, self.clients[c].epoch);
        if !self.net.is_cut(conn) {
            let half = self.net.max_delay_ns / 2;
            self.net
                .send_ordered(self.t_ns, half, conn, Dir::ToBroker, Carried::Closed);
        }
        let client = &mut self.clients[c];
        client.connected = false;
        client.epoch += 1;
        let now = self.client_now(c);
        self.clients[c].link.transport_closed(now);
        self.drain(c)
    }

    /// Byte mode: the connection breaks. What is on the wire both ways is lost; the broker's end
    /// learns at once, the client's a little later.
    fn cut(&mut self, conn: ConnId) {
        let lost = self.net.cut(conn);
        let (c, epoch) = conn;
        self.log(format!(
            "  (connection of {} cut: {lost} chunks lost)",
            self.clients[c].id
        ));
        let half = self.net.max_delay_ns / 2;
        self.net.schedule(self.t_ns, c, epoch, Carried::Closed);
        self.net
            .schedule(self.t_ns + half, c, epoch, Carried::Reset);
    }

    // ----- what the clients produce ---------------------------------------------------------

    /// Hands everything client `c` produced to the network and the checks.
    pub(super) fn drain(&mut self, c: usize) -> Check {
        while let Some(out) = self.clients[c].link.poll() {
            match out {
                Out::Request(msg) => {
                    let line = format!("{} → {}", self.clients[c].id, describe(&msg));
                    self.log(line);
                    if self.clients[c].connected {
                        self.check_fenced_write_leaves(c, &msg)?;
                        self.handoff_on_request(c, &msg);
                        // Message mode only: bytes keep their connection's order (a held write
                        // there is a held connection, which the cut and delay faults cover).
                        let fenced = msg
                            .user_properties
                            .iter()
                            .any(|(k, _)| &**k == store::PROP_FENCING_TOKEN);
                        let hold = (fenced && !self.cfg.unfenced).then(|| 3 * self.cfg.lease_ns());
                        let fate = self
                            .net
                            .fate(&mut self.input, self.healing, true, hold, false);
                        let what = Carried::Request {
                            msg,
                            reply: Reply::Sent,
                        };
                        self.send_message(c, what, fate);
                    } else {
                        self.log("  (not connected: lost)".into());
                    }
                }
                Out::Subscribe(filter) => {
                    if self.clients[c].connected {
                        let fate = Fate::Deliver(self.net.max_delay_ns / 2);
                        self.send_message(c, Carried::Subscribe(filter), fate);
                    }
                }
                Out::Bytes(bytes) => self.send_bytes(c, bytes)?,
                Out::Event(e) => self.on_event(c, e)?,
                Out::Ended(cause) => self.on_session_ended(c, cause)?,
                Out::Session(e) => self.on_session_event(c, e)?,
            }
        }
        self.check()
    }

    /// Byte mode: what client `c` wrote goes to the broker. A chunk with requests takes a fate
    /// byte: delivered after a delay, the connection cut (drop), or a reply lost; no duplicate
    /// (the client's own session re-sends, with DUP, only on a resumed session).
    fn send_bytes(&mut self, c: usize, bytes: Bytes) -> Check {
        let id = &self.clients[c].id;
        let messages =
            codec::published(&bytes).map_err(|e| format!("W1: {id} wrote a bad buffer: {e}"))?;
        let publishes = messages.len() as u64;
        let line = format!("{id} → {} bytes, {publishes} PUBLISH", bytes.len());
        self.log(line);
        let conn = (c, self.clients[c].epoch);
        if !self.clients[c].connected {
            self.log("  (no transport: lost)".into());
            return Ok(());
        }
        for (dup, msg) in &messages {
            self.check_request_awaited(c, *dup, msg)?;
            self.check_fenced_write_leaves(c, msg)?;
        }
        if self.net.is_cut(conn) {
            self.log("  (connection cut: lost)".into());
            return Ok(());
        }
        let (stamp, before) = self.clients[c].link.wrote(publishes);
        let (delay, reply) = if publishes == 0 {
            (self.net.max_delay_ns / 2, None)
        } else {
            match self
                .net
                .fate(&mut self.input, self.healing, true, None, true)
            {
                Fate::Deliver(d) | Fate::Duplicate(d, _) => (d, None),
                Fate::Stall(d) => {
                    self.log(format!("  (stalled {} ms)", d / NS_PER_MS));
                    (d, None)
                }
                Fate::Reply(d, reply) => (d, Some((before + 1, reply))),
                Fate::Drop => {
                    self.cut(conn);
                    return Ok(());
                }
            }
        };
        let sent = self.t_ns;
        self.net.send_bytes(
            self.t_ns,
            delay,
            conn,
            Dir::ToBroker,
            bytes,
            |bytes, first| {
                Carried::ToBroker(Chunk {
                    bytes,
                    stamp,
                    sent,
                    reply: if first { reply } else { None },
                })
            },
        );
        Ok(())
    }

    /// Byte mode: the session ended the connection.
    fn on_session_ended(&mut self, c: usize, cause: DisconnectCause) -> Check {
        let id = &self.clients[c].id;
        match cause {
            // We closed the transport ourselves.
            DisconnectCause::TransportClosed => Ok(()),
            DisconnectCause::ByClient
            | DisconnectCause::KeepAliveTimeout
            | DisconnectCause::ConnectTimeout => {
                self.log(format!("{id} session ended: {cause:?}"));
                self.close_transport(c)?;
                if self.healing {
                    self.connect(c)?;
                }
                Ok(())
            }
            // Only a twin (another client with this client id) takes a session over.
            DisconnectCause::ByServer(DisconnectReason::SessionTakenOver)
                if self.broker.has_twin(c) =>
            {
                self.log(format!("{id} session ended: {cause:?}"));
                self.close_transport(c)?;
                if self.healing {
                    self.connect(c)?;
                }
                Ok(())
            }
            other => Err(format!(
                "W4: the session of {id} ended the connection: {other:?}"
            )),
        }
    }

    /// Byte mode: another event of the connection.
    fn on_session_event(&mut self, c: usize, e: connection::Event) -> Check {
        let id = &self.clients[c].id;
        match e {
            connection::Event::Connected { session_present } => {
                let how = if session_present { "resumed" } else { "new" };
                self.log(format!("{id} session connected ({how})"));
                Ok(())
            }
            connection::Event::PublishRefused(e) => {
                self.log(format!("{id} publish refused: {e}"));
                Ok(())
            }
            other => Err(format!(
                "W4: {id} reports what the broker never causes: {other:?}"
            )),
        }
    }

    // ----- what the store produces ----------------------------------------------------------

    /// Publishes what the store queued to the subscribed clients; the response with correlation
    /// data `lost` (a request whose reply is lost) goes nowhere.
    pub(super) fn route_store_output(&mut self, mut lost: Option<Bytes>) -> Check {
        while let Some(msg) = self.store.poll_message() {
            if lost.is_some() && msg.correlation_data == lost {
                lost = None;
                self.log(format!("  reply lost: {}", describe(&msg)));
                continue;
            }
            self.route(&msg)?;
        }
        Ok(())
    }

    /// Publishes a message of the service to the clients subscribed to its topic.
    fn route(&mut self, msg: &Message) -> Check {
        for c in 0..self.clients.len() {
            if !self.broker.subscribed(c, &msg.topic) {
                if self.broker.queue_for_session(c, msg, self.t_ns) {
                    let line = format!("  broker: queued in the session of {}", self.clients[c].id);
                    self.log(line);
                }
                continue;
            }
            match self.mode {
                Mode::Messages => {
                    let fate = self
                        .net
                        .fate(&mut self.input, self.healing, false, None, true);
                    self.send_message(c, Carried::Message(msg.clone()), fate);
                }
                Mode::Bytes => self.publish(c, msg)?,
            }
        }
        Ok(())
    }

    /// Byte mode: the broker publishes `msg` to client `c`, subscribed to it, with a fate: after
    /// a delay, the connection cut (drop), or a copy later (the store's session sending it again).
    fn publish(&mut self, c: usize, msg: &Message) -> Check {
        let Some(epoch) = self.broker.open_epoch(c) else {
            return Ok(());
        };
        let conn = (c, epoch);
        if self.net.is_cut(conn) {
            return Ok(());
        }
        match self
            .net
            .fate(&mut self.input, self.healing, false, None, true)
        {
            Fate::Deliver(d) | Fate::Reply(d, _) => self.publish_on(conn, msg, d, false),
            Fate::Stall(d) => {
                self.log(format!("  (stalled {} ms)", d / NS_PER_MS));
                self.publish_on(conn, msg, d, false)
            }
            Fate::Drop => {
                self.cut(conn);
                Ok(())
            }
            Fate::Duplicate(d1, d2) => {
                self.publish_on(conn, msg, d1, false)?;
                self.log("  (a copy follows)".into());
                self.net
                    .schedule(self.t_ns + d2, c, epoch, Carried::Copy(msg.clone()));
                Ok(())
            }
        }
    }

    fn publish_on(&mut self, conn: ConnId, msg: &Message, delay: u64, copy: bool) -> Check {
        let (c, _) = conn;
        let Some((bytes, packet_id)) = self.broker.publish(c, msg)? else {
            return Ok(());
        };
        let line = format!(
            "broker → {}: PUBLISH p{packet_id}{} {}",
            self.clients[c].id,
            if copy { " (copy)" } else { "" },
            describe(msg)
        );
        self.log(line);
        self.net
            .send_bytes(self.t_ns, delay, conn, Dir::ToClient, bytes, |b, _| {
                Carried::ToClient(b)
            });
        Ok(())
    }

    // ----- the network ----------------------------------------------------------------------

    /// Message mode: a message on its way, with its fate.
    fn send_message(&mut self, client: usize, what: Carried, fate: Fate) {
        let epoch = self.clients[client].epoch;
        let now = self.t_ns;
        let at = |d: u64| now + d;
        match fate {
            Fate::Drop => self.log("  (dropped)".into()),
            Fate::Deliver(d) => self.net.schedule(at(d), client, epoch, what),
            Fate::Stall(d) => {
                self.log(format!("  (stalled {} ms)", d / NS_PER_MS));
                self.net.schedule(at(d), client, epoch, what);
            }
            Fate::Reply(d, reply) => {
                let what = match what {
                    Carried::Request { msg, .. } => Carried::Request { msg, reply },
                    other => other,
                };
                self.net.schedule(at(d), client, epoch, what);
            }
            Fate::Duplicate(d1, d2) => {
                self.log("  (duplicated)".into());
                let copy = match &what {
                    Carried::Request { msg, reply } => Carried::Request {
                        msg: msg.clone(),
                        reply: *reply,
                    },
                    Carried::Message(m) => Carried::Message(m.clone()),
                    Carried::Subscribe(f) => Carried::Subscribe(f.clone()),
                    Carried::SubAck(f, g) => Carried::SubAck(f.clone(), *g),
                    _ => return,
                };
                let (t1, t2) = (at(d1), at(d2));
                self.net.schedule(t1, client, epoch, what);
                self.net.schedule(t2, client, epoch, copy);
            }
        }
    }

    pub(super) fn deliver(&mut self, d: Delivery) -> Check {
        self.steps += 1;
        let (c, epoch) = (d.client, d.epoch);
        let current = self.clients[c].connected && self.clients[c].epoch == epoch;
        match d.what {
            Carried::Request { msg, reply } => {
                // Sent over a connection the broker had: processed even if it dropped since.
                self.request_reaches_store(c, &msg, reply)?;
            }
            Carried::Subscribe(filter) => {
                if current {
                    let granted = self.broker.subscribe(c, filter.clone());
                    if !granted {
                        let line = format!("broker refuses {filter} to {}", self.clients[c].id);
                        self.log(line);
                        // Known to the client once the SUBACK arrives (below).
                        self.clients[c].refused = Some((epoch, u64::MAX));
                    }
                    let fate = Fate::Deliver(self.net.max_delay_ns / 2);
                    self.send_message(c, Carried::SubAck(filter, granted), fate);
                }
            }
            Carried::Message(msg) => {
                if current {
                    let line = format!("{} ← {}", self.clients[c].id, describe(&msg));
                    self.log(line);
                    self.handoff_on_message(c, &msg);
                    let now = self.client_now(c);
                    self.clients[c].link.deliver(now, Inbound::Message(&msg));
                    self.drain(c)?;
                }
            }
            Carried::SubAck(filter, granted) => {
                if current {
                    if !granted {
                        self.clients[c].refused = Some((epoch, 0));
                    }
                    let now = self.client_now(c);
                    self.clients[c]
                        .link
                        .deliver(now, Inbound::SubAck(&filter, granted));
                    self.drain(c)?;
                }
            }
            Carried::ToBroker(chunk) => match self.broker.receive(self.t_ns, c, epoch, &chunk)? {
                Received::Stale => {
                    let line = format!(
                        "broker: bytes of an old connection of {} ignored",
                        self.clients[c].id
                    );
                    self.log(line);
                }
                Received::Buffered { took_over, twin } => {
                    if took_over {
                        let line = format!("broker: {} takes over", self.clients[c].id);
                        self.log(line);
                        self.store_disconnected(c)?;
                    }
                    if let Some(twin) = twin {
                        self.twin_taken_over(c, twin)?;
                    }
                    self.broker_reads(c)?;
                }
            },
            Carried::ToClient(bytes) => {
                if current {
                    let line = format!("{} ← {} bytes", self.clients[c].id, bytes.len());
                    self.log(line);
                    let now = self.client_now(c);
                    self.clients[c].link.deliver(now, Inbound::Bytes(&bytes));
                    self.drain(c)?;
                }
            }
            Carried::Closed => {
                if self.broker.close(c, epoch, self.t_ns) {
                    let line = format!("broker: the connection of {} closed", self.clients[c].id);
                    self.log(line);
                    self.store_disconnected(c)?;
                }
            }
            Carried::Reset => {
                if current {
                    let line = format!("{}: connection reset", self.clients[c].id);
                    self.log(line);
                    self.close_transport(c)?;
                    if self.healing {
                        self.connect(c)?;
                    }
                }
            }
            Carried::Copy(msg) => {
                let conn = (c, epoch);
                if self.broker.is_open(c, epoch)
                    && !self.net.is_cut(conn)
                    && self.broker.subscribed(c, &msg.topic)
                {
                    self.publish_on(conn, &msg, 0, true)?;
                }
            }
        }
        self.check()
    }

    /// Byte mode: a connection of `c` took over the one of its twin `t`: the store drops the
    /// client id's registrations, and the twin reads DISCONNECT 0x8E before its connection
    /// closes.
    fn twin_taken_over(&mut self, c: usize, t: TakenOver) -> Check {
        let line = format!(
            "broker: {} takes over the connection of its twin {}",
            self.clients[c].id, self.clients[t.client].id
        );
        self.log(line);
        self.store_disconnected(t.client)?;
        let conn = (t.client, t.epoch);
        if !self.net.is_cut(conn) {
            let half = self.net.max_delay_ns / 2;
            self.net.send_bytes(
                self.t_ns,
                half,
                conn,
                Dir::ToClient,
                t.disconnect,
                |b, _| Carried::ToClient(b),
            );
            self.net
                .send_ordered(self.t_ns, half, conn, Dir::ToClient, Carried::Reset);
        }
        Ok(())
    }

    /// Byte mode: the broker reads the packets of client `c` that have arrived, one at a time,
    /// each request applied to the store before the next packet is read.
    fn broker_reads(&mut self, c: usize) -> Check {
        while let Some(handled) = self.broker.next_packet(self.t_ns, c)? {
            self.log(handled.log);
            if let Some(reply) = handled.reply {
                if let Some(epoch) = self.broker.open_epoch(c) {
                    let half = self.net.max_delay_ns / 2;
                    self.net.send_bytes(
                        self.t_ns,
                        half,
                        (c, epoch),
                        Dir::ToClient,
                        reply,
                        |b, _| Carried::ToClient(b),
                    );
                }
            }
            if let (Some(at), Some(epoch)) = (handled.refused_at, self.broker.open_epoch(c)) {
                self.clients[c].refused = Some((epoch, at));
            }
            if let Some((msg, reply)) = handled.request {
                self.request_reaches_store(c, &msg, reply)?;
            }
            if let Some(packet_id) = handled.ack_later {
                if let (Some(epoch), Some(ack)) =
                    (self.broker.open_epoch(c), self.broker.puback(c, packet_id))
                {
                    let half = self.net.max_delay_ns / 2;
                    self.net
                        .send_bytes(self.t_ns, half, (c, epoch), Dir::ToClient, ack, |b, _| {
                            Carried::ToClient(b)
                        });
                }
            }
            if handled.closed {
                self.store_disconnected(c)?;
            }
        }
        Ok(())
    }

    /// A request from client `c` reaches the service: the store applies it (unless the service
    /// is unavailable and does not), and `reply` says what goes back.
    fn request_reaches_store(&mut self, c: usize, msg: &Message, reply: Reply) -> Check {
        let line = format!("store ← {}: {}", self.clients[c].id, describe(msg));
        self.log(line);
        if reply != (Reply::Unavailable { applied: false }) {
            let store_now = self.store_now();
            let id = self.clients[c].client_id.clone();
            self.store.handle_request(store_now, &id, msg);
        }
        let lost = (reply != Reply::Sent)
            .then(|| msg.correlation_data.clone())
            .flatten();
        self.route_store_output(lost)?;
        if let (Reply::Unavailable { applied }, Some(topic)) = (reply, &msg.response_topic) {
            self.log(format!("  the service answers 503 (applied: {applied})"));
            let error = store::ProtocolError {
                status: 503,
                message: Some("service unavailable".into()),
                ..store::ProtocolError::default()
            };
            let correlation_data = msg.correlation_data.clone().unwrap_or_default();
            let answer = store::protocol_error_message(topic, correlation_data, &error);
            self.route(&answer)?;
        }
        Ok(())
    }

    /// Byte mode: the broker's connection of `c` ended: the store drops its registrations.
    fn store_disconnected(&mut self, c: usize) -> Check {
        let store_now = self.store_now();
        self.store
            .handle_client_disconnected(store_now, &self.clients[c].client_id);
        self.route_store_output(None)
    }
}
