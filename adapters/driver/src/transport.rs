//! The seam to an MQTT client the application already has: [`Transport`], at the level of
//! [`Message`]s, and the bridge that binds the lock engine to one.

use crate::state::Disconnection;
use leasedlock::bytes::Bytes;
use leasedlock::connection::Event as ConnEvent;
use leasedlock::lock::{self, NotDelivered};
use leasedlock::mqtt::{DisconnectCause, DisconnectReason, PubAckReason};
use leasedlock::{Message, Now};
use std::collections::VecDeque;
use std::task::{Context, Poll};

/// An MQTT v5 client the lock runs over, at the level of [`Message`]s: the application's own
/// connection (rumqttc, the AIO SDK session, …) instead of the driver's socket.
///
/// The driver ([`attach`](crate::attach)) hands the transport every request to publish and
/// every filter to subscribe to, and polls it for what happened. The transport
///
/// - publishes each message of [`Transport::publish`] with QoS 1, as given (topic, payload,
///   Correlation Data, Response Topic, Message Expiry, Content Type, user properties), and
///   reports a PUBACK with a failure reason as [`TransportEvent::NotDelivered`]
///   ([`TransportEvent::puback`] maps the reason code; a successful PUBACK needs no report);
/// - subscribes to each filter of [`Transport::subscribe`] with QoS 1 and reports its SUBACK as
///   [`TransportEvent::Subscribed`];
/// - reports every PUBLISH it receives as [`TransportEvent::Message`] (messages on other topics
///   are ignored: the transport may pass all it gets);
/// - reports every CONNACK that accepts a connection as [`TransportEvent::Connected`], and the
///   end of a connection, or a failed attempt, as [`TransportEvent::Disconnected`].
///
/// Reconnecting is the transport's business: the engine subscribes again, re-registers its
/// notifications and re-checks its locks after every [`TransportEvent::Connected`]. A transport
/// whose client is not connected yet starts with no event; the driver then waits for the first
/// [`TransportEvent::Connected`].
///
/// [`Transport::publish`] and [`Transport::subscribe`] must not block: a transport that cannot
/// hand a message to its client at once queues it and moves it on in [`Transport::poll_event`],
/// which the driver calls after every round of commands. A request that never gets out is timed
/// out by the engine.
///
/// `adapters/async-io/tests/transport.rs` in the repository is a recipe: a complete transport
/// over the core's own sans-IO [`mqtt::Session`](leasedlock::mqtt::Session) on async-io, and the
/// API run over it. `leasedlock-rumqttc` is one over rumqttc.
pub trait Transport {
    /// Publish `message` with QoS 1.
    fn publish(&mut self, message: Message);
    /// Subscribe to `filter` with QoS 1.
    fn subscribe(&mut self, filter: &str);
    /// The next thing that happened, registering `cx` for a wake-up when there is none. Also
    /// the place to move queued publishes and subscribes on. `Ready(None)`: the client is gone
    /// for good, and the driver stops.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<TransportEvent>>;
    /// Ready once every publish handed over so far is with the client (queued in it or sent):
    /// the driver waits for it before it stops, so that the releases of dropped holds go out.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _ = cx;
        Poll::Ready(())
    }
}

/// What a [`Transport`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportEvent {
    /// The broker accepted a connection (CONNACK success).
    Connected {
        /// Whether the broker resumed the MQTT session.
        session_present: bool,
    },
    /// The connection ended (after a [`TransportEvent::Connected`]), or an attempt to connect
    /// failed (before one): why. [`Disconnection::TakenOver`] for a DISCONNECT 0x8E.
    Disconnected(Disconnection),
    /// A PUBLISH received.
    Message(Message),
    /// The PUBACK of a published message carried a failure reason.
    NotDelivered {
        /// The Correlation Data of the message.
        correlation_data: Bytes,
        /// Why it was not delivered.
        reason: NotDelivered,
    },
    /// The SUBACK of a subscribe.
    Subscribed {
        /// The filter.
        filter: String,
        /// Whether the broker granted it.
        granted: bool,
    },
}

impl TransportEvent {
    /// The report of a PUBACK with reason `code` for the message with this Correlation Data:
    /// `None` for success, [`NotDelivered::NoSubscribers`] for 0x10 (no matching subscribers:
    /// the state store is not up, and the request is repeated shortly), a refusal otherwise.
    ///
    /// ```
    /// use leasedlock_driver::TransportEvent;
    /// use leasedlock_driver::leasedlock::lock::NotDelivered;
    /// use leasedlock_driver::leasedlock::bytes::Bytes;
    ///
    /// let id = Bytes::from_static(b"request-1");
    /// assert_eq!(TransportEvent::puback(id.clone(), 0x00), None);
    /// assert_eq!(
    ///     TransportEvent::puback(id.clone(), 0x10),
    ///     Some(TransportEvent::NotDelivered { correlation_data: id, reason: NotDelivered::NoSubscribers })
    /// );
    /// ```
    pub fn puback(correlation_data: Bytes, code: u8) -> Option<TransportEvent> {
        let reason = match PubAckReason::from_code(code) {
            PubAckReason::Success => return None,
            PubAckReason::NoMatchingSubscribers => NotDelivered::NoSubscribers,
            other => NotDelivered::Refused(format!("{other:?}")),
        };
        Some(TransportEvent::NotDelivered {
            correlation_data,
            reason,
        })
    }
}

/// The topics a lock client receives on: its response topic and its notification filter. A
/// transport that sees all of an application's messages can pass on only these.
///
/// ```
/// use leasedlock_driver::Topics;
///
/// let topics = Topics::new("worker-1");
/// assert!(topics.matches(topics.response_topic()));
/// assert!(!topics.matches("factory/telemetry"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    response: String,
    /// The notification filter without its final `+`.
    notify_prefix: String,
}

impl Topics {
    /// The topics of the lock client whose [`Config::client_id`](lock::Config::client_id) is
    /// `client_id`.
    pub fn new(client_id: &str) -> Topics {
        let filter = leasedlock::store::topic::notification_filter(client_id);
        Topics {
            response: leasedlock::store::topic::response_topic(client_id),
            notify_prefix: filter.strip_suffix('+').unwrap_or(&filter).to_owned(),
        }
    }

    /// The response topic.
    pub fn response_topic(&self) -> &str {
        &self.response
    }

    /// Whether a message on `topic` is for the lock client.
    pub fn matches(&self, topic: &str) -> bool {
        topic == self.response
            || topic
                .strip_prefix(self.notify_prefix.as_str())
                .is_some_and(|key| !key.is_empty() && !key.contains('/'))
    }
}

/// The lock engine bound to a [`Transport`]: the engine's requests become messages, the
/// transport's reports become the engine's inputs and the same connection events as a
/// [`Connection`](leasedlock::connection::Connection)'s.
pub(crate) struct Bridge<T> {
    engine: lock::Client,
    pub(crate) transport: T,
    events: VecDeque<ConnEvent>,
    topics: Topics,
}

impl<T: Transport> Bridge<T> {
    pub(crate) fn new(engine: lock::Client, transport: T) -> Bridge<T> {
        let topics = Topics::new(&engine.config().client_id);
        Bridge {
            engine,
            transport,
            events: VecDeque::new(),
            topics,
        }
    }

    pub(crate) fn engine(&self) -> &lock::Client {
        &self.engine
    }

    /// Runs an intent on the engine and moves its outputs on.
    pub(crate) fn intent<R>(&mut self, f: impl FnOnce(&mut lock::Client) -> R) -> R {
        let result = f(&mut self.engine);
        self.pump();
        result
    }

    /// The next connection event.
    pub(crate) fn poll_event(&mut self) -> Option<ConnEvent> {
        self.pump();
        self.events.pop_front()
    }

    /// Hands a report of the transport to the engine. A [`Disconnection::Transport`] is not
    /// handled here: it is a failed attempt, which the actor counts.
    pub(crate) fn handle(&mut self, now: Now, event: TransportEvent) {
        match event {
            TransportEvent::Connected { session_present } => {
                self.engine.handle_connected(now);
                self.events
                    .push_back(ConnEvent::Connected { session_present });
            }
            TransportEvent::Disconnected(cause) => {
                self.engine.handle_disconnected(now);
                self.events.push_back(match cause {
                    Disconnection::Refused(reason) => ConnEvent::ConnectFailed(reason),
                    Disconnection::Ended(cause) => ConnEvent::Disconnected(cause),
                    Disconnection::TakenOver => ConnEvent::Disconnected(DisconnectCause::ByServer(
                        DisconnectReason::SessionTakenOver,
                    )),
                    Disconnection::Transport { .. } => {
                        ConnEvent::Disconnected(DisconnectCause::TransportClosed)
                    }
                });
            }
            TransportEvent::Message(message) => {
                if self.topics.matches(&message.topic) {
                    self.engine.handle_message(now, &message);
                }
            }
            TransportEvent::NotDelivered {
                correlation_data,
                reason,
            } => self
                .engine
                .handle_not_delivered(now, &correlation_data, reason),
            TransportEvent::Subscribed { filter, granted } => {
                self.engine.handle_subscribed(now, &filter, granted)
            }
        }
        self.pump();
    }

    /// Deadlines up to `now` have passed.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        self.engine.handle_timeout(now);
        self.pump();
    }

    /// Moves the engine's outputs to the transport and to the event queue.
    fn pump(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                lock::Output::Request(request) => {
                    let message = self.engine.to_message(&request);
                    self.transport.publish(message);
                }
                lock::Output::Subscribe(filter) => self.transport.subscribe(&filter),
                lock::Output::Event(event) => self.events.push_back(ConnEvent::Lock(event)),
            }
        }
    }
}
