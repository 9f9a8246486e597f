//! The client side of a simulated client: the lock engine behind one of two fronts.
//!
//! - **Message mode**: the bare [`lock::Client`], driven at the `Message` level as another MQTT
//!   client would drive it (each request becomes [`lock::Client::to_message`]).
//! - **Byte mode**: a [`Connection`], the engine glued to the crate's MQTT v5 session, as every
//!   production adapter drives it: bytes in, bytes out.
//!
//! Both take the same intents ([`Intents`]), lend the engine read-only, and hand out what they
//! produced as [`Out`]s; [`Inbound`] is what the network brings them.

use std::time::{Duration, Instant};

use leasedlock::bytes::Bytes;
use leasedlock::connection::{self, Connection};
use leasedlock::lock::{
    self, Client, Config, EditAction, Intent, IntentError, LockId, OpId, Options, Output,
};
use leasedlock::mqtt::{self, DisconnectCause};
use leasedlock::{Message, Now};

/// Which front the clients of a run have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `lock::Client` at the `Message` level.
    Messages,
    /// `connection::Connection` over bytes, through the modelled broker.
    Bytes,
}

/// The intents both fronts take, with the same meaning (see `lock::Client`).
pub(crate) trait Intents {
    fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError>;
    fn complete_edit(&mut self, now: Now, op: OpId, action: EditAction) -> Result<(), IntentError>;
    fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError>;
    fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError>;
    fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError>;
}

/// Implements [`Intents`] by calling the type's own methods of the same names.
macro_rules! intents {
    ($t:ty) => {
        impl Intents for $t {
            fn start(
                &mut self,
                now: Now,
                lock: LockId,
                intent: Intent,
                options: Options,
            ) -> Result<OpId, IntentError> {
                <$t>::start(self, now, lock, intent, options)
            }
            fn complete_edit(
                &mut self,
                now: Now,
                op: OpId,
                action: EditAction,
            ) -> Result<(), IntentError> {
                <$t>::complete_edit(self, now, op, action)
            }
            fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
                <$t>::observe(self, now, lock)
            }
            fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
                <$t>::unobserve(self, now, lock)
            }
            fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
                <$t>::cancel(self, now, op)
            }
        }
    };
}

intents!(Client);
intents!(Connection);

/// What a client hands out.
pub(crate) enum Out {
    /// For the user (and the checks).
    Event(lock::Event),
    /// Message mode: a request to publish.
    Request(Message),
    /// Message mode: a filter to subscribe to.
    Subscribe(String),
    /// Byte mode: bytes to write to the transport.
    Bytes(Bytes),
    /// Byte mode: the session ended the connection; the transport is to be closed.
    Ended(DisconnectCause),
    /// Byte mode: another event of the connection (connected, publish refused, …).
    Session(connection::Event),
}

/// What the network brings a client.
pub(crate) enum Inbound<'a> {
    /// Message mode: a message on a subscribed topic.
    Message(&'a Message),
    /// Message mode: the SUBACK for a filter.
    SubAck(&'a str, bool),
    /// Byte mode: bytes read from the transport.
    Bytes(&'a [u8]),
}

/// Byte mode: the connection and what has been read on the current transport.
pub(crate) struct ByteLink {
    conn: Connection,
    /// Bytes read on the current transport.
    received: u64,
    /// PUBLISH packets written on the current transport.
    publishes: u64,
}

pub(crate) enum Link {
    Messages(Box<Client>),
    Bytes(Box<ByteLink>),
}

/// The MQTT options of byte mode.
#[derive(Clone, Debug)]
pub(crate) struct MqttConfig {
    pub keep_alive: Duration,
}

impl Link {
    pub(crate) fn new(mode: Mode, config: Config, mqtt: &MqttConfig, now: Now, seed: u64) -> Link {
        match mode {
            Mode::Messages => Link::Messages(Box::new(
                Client::new(config, now, seed).expect("valid config"),
            )),
            Mode::Bytes => {
                let mut options = mqtt::Options::new(config.client_id.clone());
                options.keep_alive = mqtt.keep_alive;
                let conn = Connection::new(config, options, now, seed).expect("valid config");
                Link::Bytes(Box::new(ByteLink {
                    conn,
                    received: 0,
                    publishes: 0,
                }))
            }
        }
    }

    /// The engine, read-only.
    pub(crate) fn engine(&self) -> &Client {
        match self {
            Link::Messages(c) => c,
            Link::Bytes(b) => b.conn.engine(),
        }
    }

    pub(crate) fn intents(&mut self) -> &mut dyn Intents {
        match self {
            Link::Messages(c) => &mut **c,
            Link::Bytes(b) => &mut b.conn,
        }
    }

    pub(crate) fn lock_id(&mut self, name: &str) -> LockId {
        match self {
            Link::Messages(c) => c.lock_id(name),
            Link::Bytes(b) => b.conn.lock_id(name),
        }
        .expect("valid lock name")
    }

    /// The next output, until `None`.
    pub(crate) fn poll(&mut self) -> Option<Out> {
        match self {
            Link::Messages(c) => Some(match c.poll_output()? {
                Output::Request(request) => Out::Request(c.to_message(&request)),
                Output::Subscribe(filter) => Out::Subscribe(filter),
                Output::Event(e) => Out::Event(e),
            }),
            Link::Bytes(b) => {
                if let Some(bytes) = b.conn.poll_transmit() {
                    return Some(Out::Bytes(bytes));
                }
                Some(match b.conn.poll_event()? {
                    connection::Event::Lock(e) => Out::Event(e),
                    connection::Event::Disconnected(cause) => Out::Ended(cause),
                    other => Out::Session(other),
                })
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Link::Messages(c) => c.poll_timeout(),
            Link::Bytes(b) => b.conn.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Now) {
        match self {
            Link::Messages(c) => c.handle_timeout(now),
            Link::Bytes(b) => b.conn.handle_timeout(now),
        }
    }

    /// A connection is up (message mode) or a new transport is (byte mode: CONNECT goes out).
    pub(crate) fn up(&mut self, now: Now) {
        match self {
            Link::Messages(c) => c.handle_connected(now),
            Link::Bytes(b) => {
                b.received = 0;
                b.publishes = 0;
                b.conn.connect(now);
            }
        }
    }

    /// Message mode: the connection is down. Byte mode: the user disconnects (DISCONNECT goes
    /// out; the transport is to be closed once it is written).
    pub(crate) fn down(&mut self, now: Now) {
        match self {
            Link::Messages(c) => c.handle_disconnected(now),
            Link::Bytes(b) => b.conn.disconnect(now),
        }
    }

    /// Byte mode: the transport is closed or broke.
    pub(crate) fn transport_closed(&mut self, now: Now) {
        if let Link::Bytes(b) = self {
            b.conn.handle_transport_closed(now);
        }
    }

    pub(crate) fn deliver(&mut self, now: Now, inbound: Inbound<'_>) {
        match (self, inbound) {
            (Link::Messages(c), Inbound::Message(m)) => c.handle_message(now, m),
            (Link::Messages(c), Inbound::SubAck(filter, granted)) => {
                c.handle_subscribed(now, filter, granted);
            }
            (Link::Bytes(b), Inbound::Bytes(bytes)) => {
                b.received += bytes.len() as u64;
                b.conn.handle_bytes(now, bytes);
            }
            _ => {}
        }
    }

    /// Byte mode: the bytes read on the current transport (message mode: 0).
    pub(crate) fn bytes_read(&self) -> u64 {
        match self {
            Link::Messages(_) => 0,
            Link::Bytes(b) => b.received,
        }
    }

    /// Byte mode: counts the PUBLISHes of `n` more written; returns (bytes read on the transport,
    /// PUBLISHes written before these).
    pub(crate) fn wrote(&mut self, n: u64) -> (u64, u64) {
        match self {
            Link::Messages(_) => (0, 0),
            Link::Bytes(b) => {
                let before = b.publishes;
                b.publishes += n;
                (b.received, before)
            }
        }
    }
}
