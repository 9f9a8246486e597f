//! The state store of Azure IoT Operations, emulated over any MQTT v5 broker.
//!
//! [`run`] connects to a broker as an MQTT client (the core's sans-IO [`mqtt::Session`] over a
//! blocking [`TcpStream`] with `TCP_NODELAY`), subscribes to [`store::REQUEST_TOPIC`] (QoS 1),
//! hands every request to the core's sans-IO [`Emulator`] and publishes every response and
//! notification it produces (QoS 1). When the broker goes away it reconnects with backoff
//! (50 ms doubling to 2 s); the store's contents survive, like the real store's do across a
//! client's reconnects.
//!
//! **Client disconnects and session takeovers.** The real service drops a client's KEYNOTIFY
//! registrations when that client disconnects, or when a new connection with its client id takes
//! its session over. A plain MQTT client cannot see other clients' connections, so the emulator
//! reads the broker's log instead ([`BROKER_LOG_TOPICS`]): mosquitto configured with
//! `log_dest topic` (as `leasedlock-testkit` does) publishes `… Client X disconnected.` (and
//! similar) on `$SYS/broker/log/N` and `… Client X already connected, closing old connection.` on
//! `$SYS/broker/log/E`; the testkit's embedded broker publishes the same lines. With a broker that
//! publishes no such log, registrations are only dropped when the same client id registers again
//! or never; clients of this crate re-register after every reconnect, so that costs nothing but
//! notifications published to nobody.
//!
//! **Packet sizes.** The emulator's session advertises the largest Maximum Packet Size MQTT allows
//! ([`MAX_PACKET_SIZE`]), so the broker never has to drop a packet on its way to the emulator
//! (mosquitto 2.0.11 crashes when it must drop packets for a client that also subscribes to its
//! log). It reads the broker's Maximum Packet Size from each CONNACK and answers a request whose
//! response or notifications would exceed it with status 413 instead of publishing them; mosquitto's
//! `Dropping too large outgoing PUBLISH for X (N bytes)` log lines teach it the limit of client X
//! (see `Emulator::handle_client_packet_dropped`).
//!
//! **Who sent a request.** Registrations belong to the sender's MQTT client id, which a
//! subscriber does not see; the emulator takes it from `__srcId` (the SDKs and `leasedlock` set
//! it to the MQTT client id), else from a response topic of the recommended form
//! `clients/{clientId}/…`.
#![forbid(unsafe_code)]
// The emulator is a driver of the sans-IO core: reading the clocks is its job (the rule is for the core).
#![allow(clippy::disallowed_methods)]
#![deny(missing_docs)]

pub use leasedlock::emulator::MAX_PACKET_SIZE;
use leasedlock::emulator::{mqtt_packet_size, Emulator, EmulatorConfig};
use leasedlock::store::{self, Command, NotificationOp, SetCondition, StoreReply};
use leasedlock::{mqtt, Message, Now, QoS};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The broker log topic carrying "Client X disconnected" lines (mosquitto's notice level).
pub const BROKER_LOG_TOPIC: &str = "$SYS/broker/log/N";

/// The broker log topics the emulator reads: mosquitto's notice level (disconnects, dropped
/// packets) and error level (session takeovers). Not `$SYS/broker/log/#`: with `log_type debug`
/// mosquitto logs every PUBLISH it sends, including those carrying its log to the emulator, on
/// `$SYS/broker/log/D`, and would feed itself.
pub const BROKER_LOG_TOPICS: [&str; 2] = [BROKER_LOG_TOPIC, "$SYS/broker/log/E"];

/// Longest sleep of the run loop: how quickly [`Control::stop`] is noticed.
const TICK: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How to run the emulator.
#[derive(Clone, Debug)]
pub struct Options {
    /// The broker, `host:port` (resolved again on every connection attempt).
    pub broker: String,
    /// The emulator's MQTT client id.
    pub client_id: String,
    /// Print every request, response and notification as one line on stdout.
    pub log: bool,
    /// Print connection changes on stderr.
    pub verbose: bool,
    /// Subscribe to [`BROKER_LOG_TOPICS`]: drop the registrations of clients that disconnect or
    /// whose session is taken over, and learn the packet limits of clients the broker dropped
    /// packets for.
    pub learn_disconnects: bool,
    /// Print [`ready_line`] on stdout the first time the emulator is ready.
    pub ready_line: bool,
    /// The store model's configuration.
    pub store: EmulatorConfig,
}

impl Options {
    /// Options for `broker` (`host:port`): client id `statestore-emulator-<pid>`, no request
    /// log, connection changes printed, disconnects learned from the broker log.
    pub fn new(broker: impl Into<String>) -> Options {
        Options {
            broker: broker.into(),
            client_id: format!("statestore-emulator-{}", std::process::id()),
            log: false,
            verbose: true,
            learn_disconnects: true,
            ready_line: false,
            store: EmulatorConfig::default(),
        }
    }
}

/// What the emulator reports about itself while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Connected and subscribed to the request topic: requests are answered.
    pub ready: bool,
    /// How many times it became ready (1 after the first connection, 2 after one reconnect, …).
    pub connections: u64,
    /// Requests handled so far.
    pub requests: u64,
}

/// Stops a running [`run`] and observes its [`Status`]; share it between threads (e.g. in an
/// `Arc`).
#[derive(Debug, Default)]
pub struct Control {
    stopped: Mutex<bool>,
    status: Mutex<Status>,
    changed: Condvar,
}

impl Control {
    /// A control for one run.
    pub fn new() -> Control {
        Control::default()
    }

    /// Asks [`run`] to disconnect and return (within about 50 ms).
    pub fn stop(&self) {
        *lock(&self.stopped) = true;
    }

    /// Whether [`Control::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        *lock(&self.status)
    }

    /// Waits until `pred` holds for the status, at most `timeout`; the status then, or `None` on
    /// timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&Status) -> bool) -> Option<Status> {
        let deadline = Instant::now() + timeout;
        let mut status = lock(&self.status);
        loop {
            if pred(&status) {
                return Some(*status);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            status = self
                .changed
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
        self.changed.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The line printed on stdout when the emulator serving through `broker` is first ready (with
/// [`Options::ready_line`]).
pub fn ready_line(broker: &str) -> String {
    format!("statestore-emulator ready on {broker}")
}

/// One reading of the clocks.
fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Now::new(Instant::now(), wall)
}

/// Runs the emulator until `control` is stopped, reconnecting whenever the broker goes away.
pub fn run(options: &Options, control: &Control) {
    let start = now();
    let mut server = Server {
        options,
        control,
        store: Emulator::new(options.store.clone(), start),
        session: mqtt::Session::new(session_options(&options.client_id)),
        request_sub: None,
        connack: ConnackReader::default(),
        started: start.instant,
    };
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    while !control.is_stopped() {
        match connect(&options.broker) {
            Ok(stream) => {
                failures = 0;
                backoff = BACKOFF_MIN;
                let cause = server.serve(stream);
                control.update(|s| s.ready = false);
                if options.verbose && !control.is_stopped() {
                    eprintln!(
                        "statestore-emulator: connection to {} ended: {cause}; reconnecting",
                        options.broker
                    );
                }
            }
            Err(e) => {
                failures += 1;
                if options.verbose && (failures == 1 || failures % 30 == 0) {
                    eprintln!(
                        "statestore-emulator: cannot connect to {}: {e}; retrying",
                        options.broker
                    );
                }
            }
        }
        // Sleep in ticks so that a stop is noticed quickly.
        let until = Instant::now() + backoff;
        while !control.is_stopped() && Instant::now() < until {
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The emulator's MQTT session: it accepts every packet size MQTT allows.
fn session_options(client_id: &str) -> mqtt::Options {
    let mut o = mqtt::Options::new(client_id);
    o.max_packet_size = u32::try_from(MAX_PACKET_SIZE).unwrap_or(u32::MAX);
    o
}

fn connect(broker: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in broker.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

struct Server<'a> {
    options: &'a Options,
    control: &'a Control,
    store: Emulator,
    session: mqtt::Session,
    request_sub: Option<mqtt::SubscribeId>,
    connack: ConnackReader,
    started: Instant,
}

/// Reads the Maximum Packet Size of the broker from the first packet of a connection (the
/// CONNACK), next to the session that reads it for itself (and keeps it to itself).
#[derive(Debug, Default)]
struct ConnackReader {
    buf: leasedlock::bytes::BytesMut,
    done: bool,
}

impl ConnackReader {
    fn reset(&mut self) {
        self.buf.clear();
        self.done = false;
    }

    /// Feeds bytes received; once the CONNACK is complete, `Some` of its Maximum Packet Size
    /// (`None` in it: the broker sets no limit), and nothing after that.
    fn feed(&mut self, bytes: &[u8]) -> Option<Option<u32>> {
        if self.done {
            return None;
        }
        self.buf.extend_from_slice(bytes);
        let mut buf = self.buf.clone();
        match mqttbytes::v5::read(&mut buf, MAX_PACKET_SIZE) {
            Err(mqttbytes::Error::InsufficientBytes(_)) => None,
            Ok(mqttbytes::v5::Packet::ConnAck(ack)) => {
                self.done = true;
                self.buf = Default::default();
                Some(ack.properties.and_then(|p| p.max_packet_size))
            }
            // Not a CONNACK, or one mqttbytes cannot read: the limit stays unknown (the session
            // still refuses to send what the broker would not take).
            _ => {
                self.done = true;
                self.buf = Default::default();
                None
            }
        }
    }
}

impl Server<'_> {
    /// Serves one connection; returns why it ended.
    fn serve(&mut self, mut stream: TcpStream) -> String {
        self.connack.reset();
        self.store
            .set_max_packet_size(self.options.store.max_packet_size);
        self.session.connect(now().instant);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = self.flush(&mut stream) {
                self.session.handle_transport_closed(now().instant);
                return format!("write failed: {e}");
            }
            if let Some(cause) = self.drain_events() {
                return cause;
            }
            if let Err(e) = self.flush(&mut stream) {
                self.session.handle_transport_closed(now().instant);
                return format!("write failed: {e}");
            }
            if self.control.is_stopped() {
                self.session
                    .disconnect(now().instant, mqtt::DisconnectReason::NormalDisconnection);
                let _ = self.flush(&mut stream);
                return "stopped".into();
            }
            let t = now();
            let deadline = [self.session.poll_timeout(), self.store.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(t.instant + TICK);
            let wait = deadline
                .saturating_duration_since(t.instant)
                .clamp(Duration::from_millis(1), TICK);
            if let Err(e) = stream.set_read_timeout(Some(wait)) {
                self.session.handle_transport_closed(t.instant);
                return format!("socket error: {e}");
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.session.handle_transport_closed(now().instant);
                    let _ = self.drain_events();
                    return "closed by the broker".into();
                }
                Ok(n) => {
                    if let Some(Some(max)) = self.connack.feed(&buf[..n]) {
                        let max = usize::try_from(max).unwrap_or(usize::MAX);
                        self.store
                            .set_max_packet_size(max.min(self.options.store.max_packet_size));
                        if self.options.verbose {
                            eprintln!(
                                "statestore-emulator: the broker accepts packets of at most {max} bytes"
                            );
                        }
                    }
                    self.session.handle_bytes(now().instant, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    self.session.handle_transport_closed(now().instant);
                    let _ = self.drain_events();
                    return format!("read failed: {e}");
                }
            }
            let t = now();
            self.session.handle_timeout(t.instant);
            self.store.handle_timeout(t);
            self.publish_outputs(t);
        }
    }

    fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while let Some(bytes) = self.session.poll_transmit() {
            stream.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Handles the session's events; `Some(cause)` when the connection ended.
    fn drain_events(&mut self) -> Option<String> {
        while let Some(event) = self.session.poll_event() {
            let t = now();
            match event {
                mqtt::Event::Connected { .. } => {
                    // One SUBSCRIBE: when it is granted, the broker log is read too.
                    let mut filters = vec![(store::REQUEST_TOPIC, QoS::AtLeastOnce)];
                    if self.options.learn_disconnects {
                        filters.extend(BROKER_LOG_TOPICS.map(|t| (t, QoS::AtMostOnce)));
                    }
                    self.request_sub = self.session.subscribe(t.instant, &filters).ok();
                }
                mqtt::Event::ConnectFailed(reason) => {
                    return Some(format!("CONNECT refused: {reason:?}"));
                }
                mqtt::Event::Subscribed { id, results } if Some(id) == self.request_sub => {
                    if matches!(results.first(), Some(Ok(_))) {
                        if self.options.verbose {
                            eprintln!(
                                "statestore-emulator: serving the state store on {} as {}",
                                self.options.broker, self.options.client_id
                            );
                            if results[1..].iter().any(Result::is_err) {
                                eprintln!(
                                    "statestore-emulator: the broker refused its log topics \
                                     ({results:?}): registrations of clients that disconnect are kept"
                                );
                            }
                        }
                        let first = self.control.status().connections == 0;
                        if first && self.options.ready_line {
                            println!("{}", ready_line(&self.options.broker));
                        }
                        self.control.update(|s| {
                            s.ready = true;
                            s.connections += 1;
                        });
                    } else {
                        return Some(format!(
                            "SUBSCRIBE to the request topic refused: {results:?}"
                        ));
                    }
                }
                mqtt::Event::Message(msg) => self.on_message(t, &msg),
                mqtt::Event::Disconnected(cause) => return Some(format!("{cause:?}")),
                mqtt::Event::Subscribed { .. }
                | mqtt::Event::PublishAcked { .. }
                | mqtt::Event::PublishDropped { .. }
                | mqtt::Event::AuthenticationChallenge { .. }
                | mqtt::Event::Reauthenticated => {}
            }
        }
        None
    }

    fn on_message(&mut self, t: Now, msg: &Message) {
        if BROKER_LOG_TOPICS.contains(&&*msg.topic) {
            let line = String::from_utf8_lossy(&msg.payload);
            if let Some(client) = disconnected_client(&line) {
                if client != self.options.client_id {
                    self.store.handle_client_disconnected(t, client);
                    if self.options.log {
                        println!("{} disconnected {client}", self.stamp(t));
                    }
                }
            } else if let Some((client, remaining)) = dropped_publish(&line) {
                if client != self.options.client_id {
                    let size = mqtt_packet_size(remaining);
                    self.store.handle_client_packet_dropped(t, client, size);
                    if self.options.log || self.options.verbose {
                        eprintln!(
                            "statestore-emulator: the broker dropped a packet of {size} bytes for \
                             {client} (larger than it accepts); answering it with 413 from now on"
                        );
                    }
                }
            }
            return;
        }
        if msg.topic != store::REQUEST_TOPIC {
            return;
        }
        let client = sender_of(msg);
        if self.options.log {
            println!("{} {}", self.stamp(t), describe_request(&client, msg));
        }
        self.store.handle_request(t, &client, msg);
        self.control.update(|s| s.requests += 1);
        self.publish_outputs(t);
    }

    fn publish_outputs(&mut self, t: Now) {
        while let Some(mut msg) = self.store.poll_message() {
            if self.options.log {
                println!("{} {}", self.stamp(t), describe_output(&msg));
            }
            msg.qos = QoS::AtLeastOnce;
            // Not connected: the requester times out, as with a real store behind a broken link.
            if let Err(e) = self.session.publish(t.instant, msg) {
                if let mqtt::PublishError::TooLarge { max, .. } = e {
                    // The store checks sizes against the broker's limit read from the CONNACK;
                    // this is the net for a CONNACK that could not be read.
                    self.store.set_max_packet_size(max);
                }
                if self.options.verbose {
                    eprintln!("statestore-emulator: could not publish: {e}");
                }
            }
        }
    }

    fn stamp(&self, t: Now) -> String {
        format!("{:>9.3}s", (t.instant - self.started).as_secs_f64())
    }
}

/// The MQTT client id of a request's sender: `__srcId`, else the `{clientId}` of a response topic
/// `clients/{clientId}/…`, else empty.
pub fn sender_of(msg: &Message) -> String {
    if let Some(id) = msg.user_property(store::PROP_SOURCE_ID) {
        return id.to_owned();
    }
    msg.response_topic
        .as_deref()
        .and_then(|t| t.strip_prefix("clients/"))
        .and_then(|t| t.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The client id in a broker log line that says a client's connection ended (mosquitto's
/// wording: "Client X disconnected…", "Client X closed its connection.", "Client X has exceeded
/// timeout, disconnecting.", "Socket error on client X, disconnecting.", "Client X already
/// connected, closing old connection.").
pub fn disconnected_client(line: &str) -> Option<&str> {
    if let Some(at) = line.find("Socket error on client ") {
        let rest = &line[at + "Socket error on client ".len()..];
        return rest.split(',').next().filter(|id| !id.is_empty());
    }
    let at = line.find("Client ")?;
    let rest = &line[at + "Client ".len()..];
    let (id, tail) = rest.split_once(' ')?;
    let ended = tail.starts_with("disconnected")
        || tail.starts_with("closed its connection")
        || tail.starts_with("has exceeded timeout")
        || tail.starts_with("already connected");
    (ended && !id.is_empty()).then_some(id)
}

/// The client id and the remaining length in mosquitto's log line about a PUBLISH it did not send
/// because the receiving client's Maximum Packet Size is smaller ("Dropping too large outgoing
/// PUBLISH for X (N bytes)").
pub fn dropped_publish(line: &str) -> Option<(&str, usize)> {
    const MARK: &str = "Dropping too large outgoing PUBLISH for ";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let (id, size) = rest.trim_end().rsplit_once(" (")?;
    let size = size.strip_suffix(" bytes)")?.parse().ok()?;
    (!id.is_empty()).then_some((id, size))
}

fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

fn short_hex(bytes: Option<&leasedlock::bytes::Bytes>) -> String {
    bytes
        .map(|b| {
            b.iter()
                .skip(b.len().saturating_sub(4))
                .fold(String::new(), |mut s, x| {
                    let _ = write!(s, "{x:02x}");
                    s
                })
        })
        .unwrap_or_else(|| "-".into())
}

/// One line describing a request: sender, `#` + the last 4 bytes of the correlation data in hex,
/// command and its fencing token.
pub fn describe_request(client: &str, msg: &Message) -> String {
    let parsed = store::parse_request(msg);
    let mut line = format!(
        "req  {client} #{} ",
        short_hex(parsed.correlation_data.as_ref())
    );
    match &parsed.command {
        Ok(Command::Set {
            key,
            value,
            options,
        }) => {
            let _ = write!(line, "SET {} {}", show(key), show(value));
            match options.condition {
                SetCondition::Always => {}
                SetCondition::NotExists => line.push_str(" NX"),
                SetCondition::NotExistsOrEqual => line.push_str(" NEX"),
            }
            if let Some(px) = options.expiry {
                let _ = write!(line, " PX {px}");
            }
        }
        Ok(Command::Get { key }) => line += &format!("GET {}", show(key)),
        Ok(Command::Del { key }) => line += &format!("DEL {}", show(key)),
        Ok(Command::VDel { key, value }) => {
            line += &format!("VDEL {} {}", show(key), show(value));
        }
        Ok(Command::KeyNotify { key }) => line += &format!("KEYNOTIFY {}", show(key)),
        Ok(Command::KeyNotifyStop { key }) => line += &format!("KEYNOTIFY {} STOP", show(key)),
        Err(e) => line += &format!("(bad payload: {e:?})"),
    }
    if let Ok(Some(ft)) = &parsed.fencing_token {
        let _ = write!(line, " __ft={ft}");
    }
    line
}

/// One line describing a response or notification the emulator publishes.
pub fn describe_output(msg: &Message) -> String {
    if let Ok(n) = store::parse_notification(msg) {
        let what = match &n.op {
            NotificationOp::Set(v) => format!("SET {}", show(v)),
            NotificationOp::Delete => "DELETE".into(),
        };
        let version = n.version.map(|v| format!(" __ts={v}")).unwrap_or_default();
        return format!("note {} {what}{version} -> {}", show(&n.key), msg.topic);
    }
    let to = msg
        .topic
        .strip_prefix("clients/")
        .and_then(|t| t.split('/').next())
        .unwrap_or(&msg.topic);
    let cd = short_hex(msg.correlation_data.as_ref());
    match store::parse_response(msg).map(|r| r.outcome) {
        Ok(Ok(body)) => {
            let reply = match &body.reply {
                StoreReply::Ok => "+OK".to_owned(),
                StoreReply::Integer(n) => format!(":{n}"),
                StoreReply::Value(v) => format!("${} {}", v.len(), show(v)),
                StoreReply::NotFound => "$-1 (not found)".to_owned(),
                StoreReply::Error(e) => format!("-ERR {}", e.text()),
            };
            let version = body
                .version
                .map(|v| format!(" __ts={v}"))
                .unwrap_or_default();
            format!("resp {to} #{cd} {reply}{version}")
        }
        Ok(Err(e)) => format!("resp {to} #{cd} error: {e}"),
        Err(e) => format!("resp {to} #{cd} unparsable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_lines() {
        assert_eq!(
            disconnected_client("1700000000: Client w-1 disconnected."),
            Some("w-1")
        );
        assert_eq!(
            disconnected_client("Client w-2 closed its connection."),
            Some("w-2")
        );
        assert_eq!(
            disconnected_client("1: Client w-3 has exceeded timeout, disconnecting."),
            Some("w-3")
        );
        assert_eq!(
            disconnected_client("1: Socket error on client w-4, disconnecting."),
            Some("w-4")
        );
        assert_eq!(
            disconnected_client("1: New client connected from 127.0.0.1:5 as w-5 (p5, c1, k60)."),
            None
        );
        assert_eq!(
            disconnected_client("1: Client w-6 disconnected due to protocol error."),
            Some("w-6")
        );
        // mosquitto 2.0.11 publishes this one on $SYS/broker/log/E.
        assert_eq!(
            disconnected_client(
                "1796160132: Client w-7 already connected, closing old connection."
            ),
            Some("w-7")
        );
        assert_eq!(
            disconnected_client("1: Dropping too large outgoing PUBLISH for w-8 (5008 bytes)"),
            None
        );
    }

    #[test]
    fn dropped_publish_lines() {
        assert_eq!(
            dropped_publish(
                "1796160149: Dropping too large outgoing PUBLISH for small (5008 bytes)"
            ),
            Some(("small", 5008))
        );
        assert_eq!(
            dropped_publish("1: Dropping too large outgoing PUBLISH for a (b) c (17 bytes)\n"),
            Some(("a (b) c", 17))
        );
        for other in [
            "1: Client w-1 disconnected.",
            "1: Dropping too large outgoing PUBLISH for  (17 bytes)",
            "1: Dropping too large outgoing PUBLISH for x (many bytes)",
            "1: Dropping too large outgoing PUBLISH for x",
        ] {
            assert_eq!(dropped_publish(other), None, "{other}");
        }
    }

    #[test]
    fn the_session_accepts_every_packet_size() {
        assert_eq!(session_options("e").max_packet_size, 268_435_460);
    }

    #[test]
    fn connack_reader_finds_the_maximum_packet_size() {
        // mosquitto's CONNACK with `max_packet_size 100000`: Topic Alias Maximum 10, Receive
        // Maximum 20, Maximum Packet Size 100 000; fed in two pieces.
        let ack = [
            0x20, 0x0e, 0x00, 0x00, 0x0b, 0x22, 0x00, 0x0a, 0x21, 0x00, 0x14, 0x27, 0x00, 0x01,
            0x86, 0xa0,
        ];
        let mut r = ConnackReader::default();
        assert_eq!(r.feed(&ack[..5]), None);
        assert_eq!(r.feed(&ack[5..]), Some(Some(100_000)));
        assert_eq!(r.feed(&ack), None, "only the first packet");
        // Without the property.
        r.reset();
        assert_eq!(
            r.feed(&[0x20, 0x09, 0x00, 0x00, 0x06, 0x22, 0x00, 0x0a, 0x21, 0x00, 0x14]),
            Some(None)
        );
        // Not a CONNACK: nothing learned.
        r.reset();
        assert_eq!(r.feed(&[0xd0, 0x00]), None);
        assert_eq!(r.feed(&ack), None);
    }

    #[test]
    fn sender_from_source_id_or_response_topic() {
        let mut m = Message {
            response_topic: Some(store::response_topic("w-7").into()),
            ..Message::default()
        };
        assert_eq!(sender_of(&m), "w-7");
        m.user_properties.push(("__srcId".into(), "w-8".into()));
        assert_eq!(sender_of(&m), "w-8");
    }
}
