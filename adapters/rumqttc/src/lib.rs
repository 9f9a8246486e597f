//! # leasedlock-rumqttc
//!
//! [`leasedlock`] over the application's own rumqttc v5 connection: the whole async lock API of
//! `leasedlock-tokio` (`try_acquire`, `acquire`, `release`, `holder`, `hold`, `try_hold`,
//! `edit`, `observe`, store access, elections, metrics, the connection state, cancel on drop)
//! without a second MQTT session.
//!
//! rumqttc splits a connection in two: the [`AsyncClient`] sends, the [`EventLoop`] must be
//! polled to make anything happen and yields what happened. The lock needs both sides, so
//! [`attach`] takes a clone of the `AsyncClient` and returns, beside the lock's [`Client`]
//! handle and its task, a [`Feed`] for the event loop's side:
//!
//! - an application that polls its `EventLoop` itself (it handles its own messages) hands every
//!   result of [`EventLoop::poll`] to [`Feed::handle`], and goes on with it as before;
//! - an application that needs nothing from the event loop gives it to [`run_event_loop`].
//!
//! ```no_run
//! use leasedlock_rumqttc::{attach, Feed};
//! use leasedlock_rumqttc::leasedlock::lock::{Config, Options};
//! use rumqttc::v5::{AsyncClient, MqttOptions};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mqtt, mut eventloop) = AsyncClient::new(MqttOptions::new("my-app", "aio-broker", 1883), 64);
//! // The lock holder's name: the MQTT client id, as the AIO SDKs do.
//! let (client, feed, _task) = attach(Config::new("my-app"), mqtt.clone())?;
//! tokio::spawn(async move {
//!     loop {
//!         let polled = eventloop.poll().await;
//!         feed.handle(&polled);
//!         match polled {
//!             Ok(event) => { /* the application's own messages */ let _ = event; }
//!             Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
//!         }
//!     }
//! });
//! let lease = client.acquire("my-lock", Duration::from_secs(10), Options::default()).await?;
//! println!("holding with token {}", lease.token);
//! client.release("my-lock", Options::default()).await?;
//! # Ok(()) }
//! ```
//!
//! What the adapter maps:
//!
//! - CONNACK → link up (the engine subscribes again and re-checks its locks after every one);
//!   a refused CONNACK, a DISCONNECT from the broker (0x8E, session taken over, as
//!   [`Disconnection::TakenOver`]), a keep-alive timeout or an I/O error → link down, with the
//!   cause in [`Client::connection_state`]; errors while not connected are failed attempts;
//! - PUBACK reason codes → the engine's `handle_not_delivered`: 0x10 (no matching subscribers:
//!   the state store is not up) repeats the request shortly, other failures fail the operation;
//! - SUBACKs → granted or refused subscriptions;
//! - PUBLISHes on the lock's response topic and notification filter → the engine (the rest is
//!   the application's and is not copied).
//!
//! rumqttc names a PUBACK or SUBACK by packet id only, and gives a packet its id when the event
//! loop sends it (`Outgoing::Publish(pkid)`, `Outgoing::Subscribe(pkid)`, in the order the
//! requests were made). The adapter takes those ids for its own requests in order, so the
//! application may share the connection for receiving, for QoS 0 publishes and for everything
//! else at any time, but **while the lock runs, QoS 1/2 publishes and subscribes of the
//! application through the same `AsyncClient` would take ids the adapter counts as its own**.
//! Such an application passes [`Acks::Trusted`] to [`attach_with`]: the adapter then counts a
//! subscription as granted once rumqttc has it (rumqttc sends it before any later request, and
//! the broker handles packets in order) and maps no PUBACK (a request the broker could not
//! deliver times out instead).
//!
//! Set TCP_NODELAY on the connection (`NetworkOptions::set_tcp_nodelay`, then
//! `MqttOptions::set_network_options`): rumqttc leaves Nagle's algorithm on, which holds each
//! small request back until the previous one is acknowledged (about 40 ms on Linux).
//!
//! Reconnecting is rumqttc's: its event loop connects again at the next poll after an error.
//! Give the connection a client id of its own; two connections with one id take the session
//! from each other (DISCONNECT 0x8E).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use leasedlock::bytes::Bytes;
use leasedlock::lock::{self, ConfigError};
use leasedlock::mqtt::{ConnectReason, DisconnectCause, DisconnectReason};
use leasedlock::{Message, QoS};
use leasedlock_driver::{Ending, Reconnect};
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Packet, PubAckReason, Publish, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS as RQoS;
use rumqttc::v5::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions, StateError,
};
use rumqttc::Outgoing;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

pub use leasedlock_tokio::{
    leasedlock, Change, Client, ConnectionState, ConnectionWatch, Disconnection, Election, Error,
    Hold, HoldEvent, HoldWatch, Leadership, Lease, Lock, Observer, Outcomes, Stats, Topics,
    Transport, TransportEvent,
};

/// How the adapter learns the outcome of its publishes and subscribes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acks {
    /// PUBACKs and SUBACKs are matched to the lock's requests by packet id, in the order rumqttc
    /// sends them: the application makes no QoS 1/2 publish and no subscribe through the same
    /// `AsyncClient` while the lock runs.
    #[default]
    Matched,
    /// The application publishes with QoS 1/2 or subscribes through the same `AsyncClient`:
    /// subscriptions count as granted once handed to rumqttc, PUBACKs are not mapped.
    Trusted,
}

/// What the event loop's side tells the transport.
#[derive(Debug)]
enum Report {
    Connected { session_present: bool },
    Lost(Lost),
    Message(Message),
    PublishSent(u16),
    SubscribeSent(u16),
    PubAck { pkid: u16, code: u8 },
    SubAck { pkid: u16, granted: bool },
}

/// Why rumqttc's connection ended or its attempt failed, kept from a [`ConnectionError`].
#[derive(Debug)]
enum Lost {
    ByServer(DisconnectReason),
    KeepAlive,
    Refused(ConnectReason),
    Timeout,
    Io(std::io::ErrorKind, String),
    Other(String),
}

impl Lost {
    fn of(error: &ConnectionError) -> Lost {
        match error {
            ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
                Lost::ByServer(DisconnectReason::from_code(*reason_code as u8))
            }
            ConnectionError::MqttState(StateError::AwaitPingResp) => Lost::KeepAlive,
            ConnectionError::MqttState(StateError::ConnFail { reason })
            | ConnectionError::ConnectionRefused(reason) => Lost::Refused(connect_reason(*reason)),
            ConnectionError::Timeout(_) => Lost::Timeout,
            ConnectionError::Io(e) => Lost::Io(e.kind(), e.to_string()),
            other => Lost::Other(other.to_string()),
        }
    }

    /// The cause the driver reports, given whether the connection was up.
    fn cause(self, connected: bool) -> Disconnection {
        match self {
            Lost::ByServer(DisconnectReason::SessionTakenOver) => Disconnection::TakenOver,
            Lost::ByServer(reason) => Disconnection::Ended(DisconnectCause::ByServer(reason)),
            Lost::KeepAlive => Disconnection::Ended(DisconnectCause::KeepAliveTimeout),
            Lost::Refused(reason) => Disconnection::Refused(reason),
            Lost::Timeout if !connected => Disconnection::Ended(DisconnectCause::ConnectTimeout),
            _ if connected => Disconnection::Ended(DisconnectCause::TransportClosed),
            Lost::Io(kind, message) => Disconnection::Transport { kind, message },
            Lost::Timeout => Disconnection::Ended(DisconnectCause::ConnectTimeout),
            Lost::Other(message) => Disconnection::Transport {
                kind: std::io::ErrorKind::Other,
                message,
            },
        }
    }
}

/// The v5 reason code of a refused CONNACK.
fn connect_reason(code: ConnectReturnCode) -> ConnectReason {
    use ConnectReturnCode as C;
    let code = match code {
        C::MalformedPacket => 0x81,
        C::ProtocolError => 0x82,
        C::ImplementationSpecificError => 0x83,
        C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => 0x84,
        C::BadClientId | C::ClientIdentifierNotValid => 0x85,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServiceUnavailable | C::ServerUnavailable => 0x88,
        C::ServerBusy => 0x89,
        C::Banned => 0x8A,
        C::BadAuthenticationMethod => 0x8C,
        C::TopicNameInvalid => 0x90,
        C::PacketTooLarge => 0x95,
        C::QuotaExceeded => 0x97,
        C::PayloadFormatInvalid => 0x99,
        C::RetainNotSupported => 0x9A,
        C::QoSNotSupported => 0x9B,
        C::UseAnotherServer => 0x9C,
        C::ServerMoved => 0x9D,
        C::ConnectionRateExceeded => 0x9F,
        C::Success | C::UnspecifiedError => 0x80,
    };
    ConnectReason::from_code(code)
}

/// The v5 reason code of a PUBACK.
fn puback_code(reason: PubAckReason) -> u8 {
    match reason {
        PubAckReason::Success => 0x00,
        PubAckReason::NoMatchingSubscribers => 0x10,
        PubAckReason::UnspecifiedError => 0x80,
        PubAckReason::ImplementationSpecificError => 0x83,
        PubAckReason::NotAuthorized => 0x87,
        PubAckReason::TopicNameInvalid => 0x90,
        PubAckReason::PacketIdentifierInUse => 0x91,
        PubAckReason::QuotaExceeded => 0x97,
        PubAckReason::PayloadFormatInvalid => 0x99,
    }
}

/// A rumqttc PUBLISH as a [`Message`].
fn to_message(p: &Publish) -> Message {
    let props = p.properties.clone().unwrap_or_default();
    Message {
        topic: String::from_utf8_lossy(&p.topic).into_owned().into(),
        payload: p.payload.clone(),
        qos: match p.qos {
            RQoS::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        },
        correlation_data: props.correlation_data,
        response_topic: props.response_topic.map(Into::into),
        message_expiry: props.message_expiry_interval,
        content_type: props.content_type.map(Into::into),
        user_properties: props
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    }
}

/// The event loop's side of the lock: hand it everything rumqttc's [`EventLoop::poll`] returns.
/// Cheap to clone; sending to a lock that has stopped does nothing. Once every clone is
/// dropped, the lock stops (its operations end with `Error::Closed`).
#[derive(Clone, Debug)]
pub struct Feed {
    reports: mpsc::UnboundedSender<Report>,
    topics: Topics,
}

impl Feed {
    /// One result of [`EventLoop::poll`]. Only what the lock needs is kept: connection changes,
    /// the ids and acknowledgements of packets, and PUBLISHes on the lock's topics.
    pub fn handle(&self, polled: &Result<Event, ConnectionError>) {
        let report = match polled {
            Ok(Event::Incoming(packet)) => match packet {
                Packet::ConnAck(ack) => Report::Connected {
                    session_present: ack.session_present,
                },
                Packet::Publish(p) => match std::str::from_utf8(&p.topic) {
                    Ok(topic) if self.topics.matches(topic) => Report::Message(to_message(p)),
                    _ => return,
                },
                Packet::PubAck(ack) => Report::PubAck {
                    pkid: ack.pkid,
                    code: puback_code(ack.reason),
                },
                Packet::SubAck(ack) => Report::SubAck {
                    pkid: ack.pkid,
                    granted: matches!(
                        ack.return_codes.first(),
                        Some(SubscribeReasonCode::Success(_))
                    ),
                },
                _ => return,
            },
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if *pkid != 0 => {
                Report::PublishSent(*pkid)
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => Report::SubscribeSent(*pkid),
            Ok(Event::Outgoing(_)) => return,
            Err(error) => Report::Lost(Lost::of(error)),
        };
        let _ = self.reports.send(report);
    }

    /// Whether the lock has stopped (every handle and its task are gone): nothing needs this
    /// feed any more.
    pub fn is_closed(&self) -> bool {
        self.reports.is_closed()
    }
}

/// Polls `eventloop` and feeds the lock until the lock stops or every [`AsyncClient`] is gone,
/// for an application that needs nothing of the event loop itself. After an error it waits
/// before the next poll (rumqttc reconnects at that poll), by a [`Reconnect`]: 50 ms, doubling
/// up to 2 s, for failed attempts and keep-alive timeouts; after a session takeover
/// (DISCONNECT 0x8E: another connection uses the client id), or a connection the broker ended
/// within 10 s of its CONNACK (mosquitto 2.0 closes a session taken over without 0x8E), 2 s,
/// doubling with every such connection in a row up to 5 min. Only a connection that lasted
/// starts both over, so that two clients with one id do not take the session from each other
/// in a tight loop.
pub async fn run_event_loop(mut eventloop: EventLoop, feed: Feed) {
    let second = Duration::from_secs(1);
    let seed =
        std::collections::hash_map::RandomState::new().hash_one(eventloop.options.client_id());
    let mut reconnect = Reconnect::new(second / 20, 2 * second, 300 * second, 10 * second, seed);
    while !feed.is_closed() {
        let polled = eventloop.poll().await;
        feed.handle(&polled);
        let error = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                reconnect.connected(leasedlock_driver::now().instant);
                continue;
            }
            Ok(_) => continue,
            Err(ConnectionError::RequestsDone) => return,
            Err(error) => error,
        };
        let ending = match Lost::of(&error) {
            Lost::ByServer(DisconnectReason::SessionTakenOver) => Ending::TakenOver,
            Lost::ByServer(_) | Lost::Io(..) | Lost::Other(_) => Ending::ByBroker,
            Lost::KeepAlive | Lost::Refused(_) | Lost::Timeout => Ending::ByClient,
        };
        reconnect.ended(leasedlock_driver::now().instant, ending);
        tokio::time::sleep(reconnect.next_delay()).await;
    }
}

/// A request on its way into rumqttc's request queue.
enum Out {
    Publish(Message),
    Subscribe(String),
}

/// A request rumqttc's full queue did not take at once, and its correlation data or filter.
struct Sending {
    send: Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>,
    out: Sent,
}

/// What a request handed to rumqttc is remembered by, until rumqttc gives it a packet id.
enum Sent {
    Publish(Option<Bytes>),
    Subscribe(String),
}

/// The [`Transport`] over a rumqttc [`AsyncClient`]; its events come through the [`Feed`]
/// made with it. [`attach`] builds both; use this with [`leasedlock_tokio::attach`] only to
/// keep the task handle yourself.
pub struct Rumqttc {
    client: AsyncClient,
    acks: Acks,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Requests not yet in rumqttc's queue, in order.
    outbox: VecDeque<Out>,
    sending: Option<Sending>,
    /// Publishes in rumqttc's queue, by Correlation Data, until their packet id.
    publishes: VecDeque<Option<Bytes>>,
    /// Subscribes in rumqttc's queue, until their packet id.
    subscribes: VecDeque<String>,
    /// Publishes sent, by packet id, until their PUBACK.
    published: BTreeMap<u16, Bytes>,
    /// Subscribes sent, by packet id, until their SUBACK.
    subscribed: BTreeMap<u16, String>,
    /// Events to report, ahead of new reports.
    ready: VecDeque<TransportEvent>,
    connected: bool,
}

impl std::fmt::Debug for Rumqttc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rumqttc")
            .field("acks", &self.acks)
            .field("queued", &self.outbox.len())
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl Rumqttc {
    /// The transport over `client` for the lock client whose client id is `client_id`, and
    /// the feed of its events.
    pub fn new(client: AsyncClient, client_id: &str, acks: Acks) -> (Rumqttc, Feed) {
        let (tx, reports) = mpsc::unbounded_channel();
        let transport = Rumqttc {
            client,
            acks,
            reports,
            outbox: VecDeque::new(),
            sending: None,
            publishes: VecDeque::new(),
            subscribes: VecDeque::new(),
            published: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            ready: VecDeque::new(),
            connected: false,
        };
        let feed = Feed {
            reports: tx,
            topics: Topics::new(client_id),
        };
        (transport, feed)
    }

    /// Hands queued requests to rumqttc until its queue is full; `Pending` while one waits for
    /// room.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(sending) = &mut self.sending {
                match sending.send.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        let sending = self.sending.take().map(|s| s.out);
                        if let (Ok(()), Some(out)) = (result, sending) {
                            self.sent(out);
                        }
                    }
                }
            }
            let Some(out) = self.outbox.pop_front() else {
                return Poll::Ready(());
            };
            let (tried, remembered) = match out {
                Out::Publish(message) => {
                    let correlation = message.correlation_data.clone();
                    let (topic, payload, properties) = publish_parts(message);
                    let tried = self.client.try_publish_with_properties(
                        topic,
                        RQoS::AtLeastOnce,
                        false,
                        payload,
                        properties,
                    );
                    (tried, Sent::Publish(correlation))
                }
                Out::Subscribe(filter) => {
                    let tried = self.client.try_subscribe(filter.clone(), RQoS::AtLeastOnce);
                    (tried, Sent::Subscribe(filter))
                }
            };
            match tried {
                Ok(()) => self.sent(remembered),
                // rumqttc's queue is full: wait for room.
                Err(ClientError::TryRequest(request)) => {
                    let client = self.client.clone();
                    let send: Pin<Box<dyn Future<Output = _> + Send>> = match (&remembered, request)
                    {
                        (Sent::Subscribe(filter), _) => {
                            let filter = filter.clone();
                            Box::pin(
                                async move { client.subscribe(filter, RQoS::AtLeastOnce).await },
                            )
                        }
                        (Sent::Publish(_), rumqttc::v5::Request::Publish(p)) => {
                            let topic = String::from_utf8_lossy(&p.topic).into_owned();
                            let properties = p.properties.unwrap_or_default();
                            Box::pin(async move {
                                client
                                    .publish_with_properties(
                                        topic, p.qos, false, p.payload, properties,
                                    )
                                    .await
                            })
                        }
                        // Not so: rumqttc gives a refused publish back as it is.
                        (Sent::Publish(_), _) => continue,
                    };
                    self.sending = Some(Sending {
                        send,
                        out: remembered,
                    });
                }
                // Every event loop is gone: the request is lost, and times out in the engine.
                Err(ClientError::Request(_)) => {}
            }
        }
    }

    /// A request is in rumqttc's queue.
    fn sent(&mut self, out: Sent) {
        match (out, self.acks) {
            (Sent::Publish(correlation), Acks::Matched) => self.publishes.push_back(correlation),
            (Sent::Publish(_), Acks::Trusted) => {}
            (Sent::Subscribe(filter), Acks::Matched) => self.subscribes.push_back(filter),
            (Sent::Subscribe(filter), Acks::Trusted) => {
                self.ready.push_back(TransportEvent::Subscribed {
                    filter,
                    granted: true,
                });
            }
        }
    }

    /// What a report of the event loop means to the lock, if anything.
    fn report(&mut self, report: Report) -> Option<TransportEvent> {
        match report {
            Report::Connected { session_present } => {
                self.connected = true;
                Some(TransportEvent::Connected { session_present })
            }
            Report::Lost(lost) => {
                let cause = lost.cause(self.connected);
                self.connected = false;
                // Whatever was in flight died with the connection: the engine gives it up.
                self.published.clear();
                self.subscribed.clear();
                Some(TransportEvent::Disconnected(cause))
            }
            Report::Message(message) => Some(TransportEvent::Message(message)),
            Report::PublishSent(pkid) => {
                if let Some(Some(correlation)) = self.publishes.pop_front() {
                    self.published.insert(pkid, correlation);
                }
                None
            }
            Report::SubscribeSent(pkid) => {
                if let Some(filter) = self.subscribes.pop_front() {
                    self.subscribed.insert(pkid, filter);
                }
                None
            }
            Report::PubAck { pkid, code } => {
                let correlation = self.published.remove(&pkid)?;
                TransportEvent::puback(correlation, code)
            }
            Report::SubAck { pkid, granted } => {
                let filter = self.subscribed.remove(&pkid)?;
                Some(TransportEvent::Subscribed { filter, granted })
            }
        }
    }
}

/// The topic, payload and properties of a PUBLISH of `message`.
fn publish_parts(m: Message) -> (String, Bytes, PublishProperties) {
    let properties = PublishProperties {
        message_expiry_interval: m.message_expiry,
        response_topic: m.response_topic.map(Into::into),
        correlation_data: m.correlation_data,
        user_properties: m
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        content_type: m.content_type.map(Into::into),
        ..PublishProperties::default()
    };
    (m.topic.into(), m.payload, properties)
}

impl Transport for Rumqttc {
    fn publish(&mut self, message: Message) {
        self.outbox.push_back(Out::Publish(message));
    }

    fn subscribe(&mut self, filter: &str) {
        self.outbox.push_back(Out::Subscribe(filter.to_owned()));
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<TransportEvent>> {
        // Requests first: their packet ids may be among the reports.
        let _ = self.poll_send(cx);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            match self.reports.poll_recv(cx) {
                Poll::Ready(Some(report)) => {
                    if let Some(event) = self.report(report) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_send(cx)
    }
}

/// The lock of `config` over the application's rumqttc connection, with [`Acks::Matched`]:
/// the lock's [`Client`] handle, the [`Feed`] for the event loop's side, and the lock's task,
/// spawned on the current tokio runtime. `config.client_id` is the lock holder's name; give it
/// the connection's MQTT client id.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn attach(
    config: lock::Config,
    client: AsyncClient,
) -> Result<(Client, Feed, tokio::task::JoinHandle<()>), ConfigError> {
    attach_with(config, client, Acks::Matched)
}

/// [`attach`], with the way acknowledgements are learned.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn attach_with(
    config: lock::Config,
    client: AsyncClient,
    acks: Acks,
) -> Result<(Client, Feed, tokio::task::JoinHandle<()>), ConfigError> {
    let (transport, feed) = Rumqttc::new(client, &config.client_id, acks);
    let (client, task) = leasedlock_tokio::attach(config, transport)?;
    Ok((client, feed, task))
}

/// A rumqttc connection with `options` and the lock of `config` over it, both spawned on the
/// current tokio runtime: the lock's handle, the connection's [`AsyncClient`] (for the
/// application's own traffic; see [`Acks`]), and the two tasks (the lock's and the event loop's,
/// [`run_event_loop`]; abort both to kill the connection). rumqttc's request queue holds 64
/// requests.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn(
    options: MqttOptions,
    config: lock::Config,
) -> Result<(Client, AsyncClient, [tokio::task::JoinHandle<()>; 2]), ConfigError> {
    let (mqtt, eventloop) = AsyncClient::new(options, 64);
    let (client, feed, lock) = attach(config, mqtt.clone())?;
    let events = tokio::spawn(run_event_loop(eventloop, feed));
    Ok((client, mqtt, [lock, events]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasedlock::lock::NotDelivered;
    use rumqttc::v5::mqttbytes::v5::{ConnAck, PubAck, SubAck};
    use std::task::Waker;

    /// A transport and its feed over a client whose event loop is never polled (kept, so that
    /// rumqttc's queue stays open).
    fn transport(acks: Acks) -> (Rumqttc, Feed, EventLoop) {
        let (client, eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 8);
        let (transport, feed) = Rumqttc::new(client, "t", acks);
        (transport, feed, eventloop)
    }

    fn poll(t: &mut Rumqttc) -> Poll<Option<TransportEvent>> {
        t.poll_event(&mut Context::from_waker(Waker::noop()))
    }

    fn request(correlation: &'static [u8]) -> Message {
        Message {
            topic: "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke".into(),
            payload: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
            qos: QoS::AtLeastOnce,
            correlation_data: Some(Bytes::from_static(correlation)),
            response_topic: None,
            message_expiry: None,
            content_type: None,
            user_properties: Vec::new(),
        }
    }

    fn puback(pkid: u16, reason: PubAckReason) -> Result<Event, ConnectionError> {
        Ok(Event::Incoming(Packet::PubAck(PubAck {
            pkid,
            reason,
            properties: None,
        })))
    }

    #[test]
    fn pubacks_are_matched_to_the_requests_by_their_packet_ids_in_order() {
        let (mut t, feed, _eventloop) = transport(Acks::Matched);
        t.publish(request(b"first"));
        t.publish(request(b"second"));
        assert_eq!(poll(&mut t), Poll::Pending, "both handed to rumqttc");
        feed.handle(&Ok(Event::Outgoing(Outgoing::Publish(7))));
        feed.handle(&Ok(Event::Outgoing(Outgoing::Publish(8))));
        feed.handle(&puback(7, PubAckReason::Success));
        feed.handle(&puback(8, PubAckReason::NoMatchingSubscribers));
        assert_eq!(
            poll(&mut t),
            Poll::Ready(Some(TransportEvent::NotDelivered {
                correlation_data: Bytes::from_static(b"second"),
                reason: NotDelivered::NoSubscribers,
            })),
            "0x10: the state store is not up"
        );
        t.publish(request(b"third"));
        assert_eq!(poll(&mut t), Poll::Pending);
        feed.handle(&Ok(Event::Outgoing(Outgoing::Publish(9))));
        feed.handle(&puback(9, PubAckReason::NotAuthorized));
        assert!(matches!(
            poll(&mut t),
            Poll::Ready(Some(TransportEvent::NotDelivered {
                reason: NotDelivered::Refused(_),
                ..
            }))
        ));
        // A PUBACK of a packet the lock did not send is the application's.
        feed.handle(&puback(10, PubAckReason::NoMatchingSubscribers));
        assert_eq!(poll(&mut t), Poll::Pending);
    }

    #[test]
    fn subacks_grant_or_refuse_the_filters() {
        let (mut t, feed, _eventloop) = transport(Acks::Matched);
        t.subscribe("responses");
        t.subscribe("notifications/+");
        assert_eq!(poll(&mut t), Poll::Pending);
        feed.handle(&Ok(Event::Outgoing(Outgoing::Subscribe(1))));
        feed.handle(&Ok(Event::Outgoing(Outgoing::Subscribe(2))));
        for (pkid, code) in [
            (2, SubscribeReasonCode::NotAuthorized),
            (1, SubscribeReasonCode::Success(RQoS::AtLeastOnce)),
        ] {
            feed.handle(&Ok(Event::Incoming(Packet::SubAck(SubAck {
                pkid,
                return_codes: vec![code],
                properties: None,
            }))));
        }
        let granted = |filter: &str, granted| {
            Poll::Ready(Some(TransportEvent::Subscribed {
                filter: filter.into(),
                granted,
            }))
        };
        assert_eq!(poll(&mut t), granted("notifications/+", false));
        assert_eq!(poll(&mut t), granted("responses", true));
    }

    #[test]
    fn trusted_acks_grant_at_once_and_map_no_puback() {
        let (mut t, feed, _eventloop) = transport(Acks::Trusted);
        t.subscribe("responses");
        t.publish(request(b"first"));
        let granted = TransportEvent::Subscribed {
            filter: "responses".into(),
            granted: true,
        };
        assert_eq!(poll(&mut t), Poll::Ready(Some(granted)));
        feed.handle(&Ok(Event::Outgoing(Outgoing::Publish(1))));
        feed.handle(&puback(1, PubAckReason::NoMatchingSubscribers));
        assert_eq!(poll(&mut t), Poll::Pending);
    }

    #[test]
    fn connection_changes_carry_their_cause() {
        let (mut t, feed, _eventloop) = transport(Acks::Matched);
        let connack = |code| {
            Ok(Event::Incoming(Packet::ConnAck(ConnAck {
                session_present: false,
                code,
                properties: None,
            })))
        };
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        feed.handle(&Err(ConnectionError::Io(refused)));
        feed.handle(&Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        )));
        feed.handle(&connack(ConnectReturnCode::Success));
        feed.handle(&Err(ConnectionError::MqttState(
            StateError::ServerDisconnect {
                reason_code: rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver,
                reason_string: None,
            },
        )));
        feed.handle(&connack(ConnectReturnCode::Success));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        feed.handle(&Err(ConnectionError::Io(reset)));
        let expected = [
            TransportEvent::Disconnected(Disconnection::Transport {
                kind: std::io::ErrorKind::ConnectionRefused,
                message: "refused".into(),
            }),
            TransportEvent::Disconnected(Disconnection::Refused(ConnectReason::NotAuthorized)),
            TransportEvent::Connected {
                session_present: false,
            },
            TransportEvent::Disconnected(Disconnection::TakenOver),
            TransportEvent::Connected {
                session_present: false,
            },
            // Up, an I/O error is the end of the connection, not a failed attempt.
            TransportEvent::Disconnected(Disconnection::Ended(DisconnectCause::TransportClosed)),
        ];
        for event in expected {
            assert_eq!(poll(&mut t), Poll::Ready(Some(event)));
        }
        drop(feed);
        assert_eq!(poll(&mut t), Poll::Ready(None), "the feed is gone");
    }
}
