//! A blocking state-store client for the tests: the core's MQTT session over a `TcpStream`,
//! requests built and responses parsed by `leasedlock::store`.
#![allow(dead_code)] // each test file uses part of it

use leasedlock::bytes::Bytes;
use leasedlock::hlc::Hlc;
use leasedlock::store::{
    self, Command, Notification, Request, RequestSender, ResponseBody, ResponseError, SetOptions,
};
use leasedlock::{mqtt, Message, Now, QoS};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any one wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Now::new(Instant::now(), wall)
}

pub fn set(key: &[u8], value: impl Into<Bytes>) -> Command {
    Command::Set {
        key: Bytes::copy_from_slice(key),
        value: value.into(),
        options: SetOptions::default(),
    }
}

pub fn get(key: &[u8]) -> Command {
    Command::Get {
        key: Bytes::copy_from_slice(key),
    }
}

pub fn keynotify(key: &[u8]) -> Command {
    Command::KeyNotify {
        key: Bytes::copy_from_slice(key),
    }
}

/// One MQTT client of the broker speaking the state-store protocol.
pub struct Client {
    pub id: String,
    session: mqtt::Session,
    stream: TcpStream,
    sender: RequestSender,
    next_request: u64,
    /// Messages received and not yet taken (responses, notifications).
    inbox: VecDeque<Message>,
    closed: bool,
}

impl Client {
    /// Connects as `id` advertising `max_packet_size`, subscribes to its response topic and
    /// notifications, and waits for both.
    pub fn connect(broker: SocketAddr, id: &str, max_packet_size: u32) -> Client {
        let stream = TcpStream::connect(broker).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut options = mqtt::Options::new(id);
        options.max_packet_size = max_packet_size;
        let mut c = Client {
            id: id.to_owned(),
            session: mqtt::Session::new(options),
            stream,
            sender: RequestSender::new(id).unwrap(),
            next_request: 0,
            inbox: VecDeque::new(),
            closed: false,
        };
        c.session.connect(Instant::now());
        c.drive_until(|e| match e {
            mqtt::Event::Connected { .. } => Some(()),
            mqtt::Event::ConnectFailed(reason) => panic!("CONNECT refused: {reason:?}"),
            _ => None,
        })
        .expect("connected");
        let filters = [
            (c.sender.response_topic().to_string(), QoS::AtLeastOnce),
            (store::notification_filter(id), QoS::AtLeastOnce),
        ];
        let filters: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        let sub = c.session.subscribe(Instant::now(), &filters).unwrap();
        c.drive_until(|e| match e {
            mqtt::Event::Subscribed { id, results } if *id == sub => {
                assert!(results.iter().all(Result::is_ok), "{results:?}");
                Some(())
            }
            _ => None,
        })
        .expect("subscribed");
        c
    }

    /// Sends `command` and returns the correlation data of the request.
    pub fn send(&mut self, command: Command) -> Bytes {
        self.next_request += 1;
        let mut cd = [0u8; 16];
        cd[..8].copy_from_slice(&self.next_request.to_be_bytes());
        let cd = Bytes::copy_from_slice(&cd);
        let t = now();
        let msg = Request {
            command,
            timestamp: Hlc::new(t.wall_ms, 0, self.id.as_str()),
            fencing_token: None,
        }
        .to_message(&self.sender, cd.clone(), Duration::from_secs(30))
        .unwrap();
        self.session.publish(t.instant, msg).expect("publish");
        cd
    }

    /// Sends `command` and waits for its response (at most `TIMEOUT`).
    pub fn request(&mut self, command: Command) -> Result<ResponseBody, ResponseError> {
        let cd = self.send(command);
        match self.response_to(&cd, TIMEOUT) {
            Some(result) => result,
            None if self.closed => panic!("{}: the connection closed before the response", self.id),
            None => panic!("{}: no response within {TIMEOUT:?}", self.id),
        }
    }

    /// The response to the request with correlation data `cd`, waiting at most `wait`.
    pub fn response_to(
        &mut self,
        cd: &[u8],
        wait: Duration,
    ) -> Option<Result<ResponseBody, ResponseError>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(at) = self.inbox.iter().position(|m| {
                m.correlation_data.as_deref() == Some(cd) && store::parse_notification(m).is_err()
            }) {
                let m = self.inbox.remove(at).unwrap();
                return Some(store::parse_response(&m).unwrap().outcome);
            }
            if !self.pump(deadline) {
                return None;
            }
            self.absorb();
        }
    }

    /// The notifications received so far (taken).
    pub fn notifications(&mut self) -> Vec<Notification> {
        let mut notes = Vec::new();
        self.inbox.retain(|m| match store::parse_notification(m) {
            Ok(n) => {
                notes.push(n);
                false
            }
            Err(_) => true,
        });
        notes
    }

    /// Waits (at most `TIMEOUT`) for a notification.
    pub fn next_notification(&mut self) -> Notification {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(n) = self.notifications().into_iter().next() {
                return n;
            }
            assert!(
                self.pump(deadline),
                "{}: no notification within {TIMEOUT:?}",
                self.id
            );
            self.absorb();
        }
    }

    /// Whether the broker closed this connection (read until `wait` passes or it does).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.closed && self.pump(deadline) {
            self.absorb();
        }
        self.absorb();
        self.closed
    }

    /// Drives the session until `pred` picks an event; `None` if the deadline passes first.
    fn drive_until<T>(&mut self, mut pred: impl FnMut(&mqtt::Event) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            while let Some(event) = self.session.poll_event() {
                if let Some(v) = pred(&event) {
                    return Some(v);
                }
                self.keep(event);
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// Takes the session's events: messages into the inbox, a disconnect noted.
    fn absorb(&mut self) {
        while let Some(event) = self.session.poll_event() {
            self.keep(event);
        }
    }

    fn keep(&mut self, event: mqtt::Event) {
        match event {
            mqtt::Event::Message(m) => self.inbox.push_back(m),
            mqtt::Event::Disconnected(_) => self.closed = true,
            _ => {}
        }
    }

    /// Sends what is pending and reads once (until `deadline` at most); false when the deadline
    /// passed or the connection is closed.
    fn pump(&mut self, deadline: Instant) -> bool {
        while let Some(bytes) = self.session.poll_transmit() {
            if self.stream.write_all(&bytes).is_err() {
                self.closed = true;
            }
        }
        let t = Instant::now();
        if t >= deadline || self.closed {
            return false;
        }
        let wait = (deadline - t).min(Duration::from_millis(100));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.session.handle_transport_closed(Instant::now());
                self.closed = true;
            }
            Ok(n) => self.session.handle_bytes(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.session.handle_timeout(Instant::now())
            }
            Err(_) => {
                self.session.handle_transport_closed(Instant::now());
                self.closed = true;
            }
        }
        while let Some(bytes) = self.session.poll_transmit() {
            if self.stream.write_all(&bytes).is_err() {
                self.closed = true;
            }
        }
        true
    }
}
