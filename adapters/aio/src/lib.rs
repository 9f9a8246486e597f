//! # leasedlock-aio
//!
//! [`leasedlock`] over the application's own session of the official Azure IoT Operations SDK
//! (`azure_iot_operations_mqtt`): the whole async lock API of `leasedlock-tokio`
//! (`try_acquire`, `acquire`, `release`, `holder`, `hold`, `try_hold`, `edit`, `observe`, store
//! access, elections, metrics, the connection state, cancel on drop) on the one MQTT session an
//! AIO application has, beside the SDK's own clients (its state store, its RPC and telemetry).
//!
//! As the SDK's own clients do, the lock takes a [`SessionManagedClient`] and a
//! [`SessionMonitor`] of the application's [`Session`](azure_iot_operations_mqtt::session::Session);
//! the application runs the session as before:
//!
//! ```no_run
//! use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
//! use azure_iot_operations_mqtt::session::{Session, SessionOptionsBuilder};
//! use leasedlock_aio::leasedlock::lock::{Config, Options};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connection = MqttConnectionSettingsBuilder::from_environment()?.build()?;
//! let session = Session::new(SessionOptionsBuilder::default().connection_settings(connection).build()?)?;
//! let client = session.create_managed_client();
//! // The lock holder's name: the session's MQTT client id, as the AIO SDKs do.
//! let config = Config::new(client.client_id());
//! let (lock, _task) = leasedlock_aio::attach(config, client, session.create_session_monitor())?;
//! tokio::spawn(session.run());
//! let lease = lock.acquire("my-lock", Duration::from_secs(10), Options::default()).await?;
//! println!("holding with token {}", lease.token);
//! lock.release("my-lock", Options::default()).await?;
//! # Ok(()) }
//! ```
//!
//! What the adapter maps:
//!
//! - the session monitor's connected → link up (the engine subscribes again, re-registers its
//!   notifications and re-checks its locks after every one), its disconnected → link down. The
//!   monitor tells no cause: a loss shows as [`Disconnection::Ended`] with
//!   `DisconnectCause::TransportClosed` in [`Client::connection_state`], and failed attempts
//!   in between are not seen. The SDK gives up a session the broker no longer has (its `run`
//!   ends with `SessionLost`), so every connection after the first resumes the session;
//! - the PUBACK of every request (the SDK's QoS 1 completion token) → the engine's
//!   `handle_not_delivered`: 0x10 (no matching subscribers: the state store is not up)
//!   repeats the request shortly, other failures fail the operation;
//! - the SUBACK of every subscribe (its completion token) → granted or refused;
//! - PUBLISHes on the lock's response topic and notification filter, through two filtered
//!   receivers of the session; the rest goes to the application's receivers as before.
//!
//! The SDK queues publishes and subscribes while the session is down and sends them when it is
//! back; the engine's request timeout still bounds every operation. Once the session has ended
//! for good (the SDK reports the managed client detached), the lock stops: its operations end
//! with [`Error::Closed`]. That is noticed at the lock's next request, and the lock sends none
//! while the link is down: when `Session::run` returns, drop the lock's handles too.
//!
//! The state store sends KEYNOTIFY notifications to the topic of the session's client id, so the
//! lock's [`Config::client_id`](lock::Config::client_id) must be the session's (see
//! [`attach`]). An SDK `state_store::Client` on the same session subscribes to the same
//! notification filter, and each ignores the notifications of keys it does not observe. Two
//! things follow from sharing one client id:
//!
//! - observe a key through one of them only: a KEYNOTIFY registration belongs to the client id,
//!   and the one that unregisters it ends it for both;
//! - keep that SDK client as long as the lock: its `shutdown` (also run when it is dropped)
//!   unsubscribes the shared filter, after which no notification reaches the lock (a waiting
//!   `acquire` is no longer woken by the holder's release). The lock itself never unsubscribes.
//!
//! The monitor is a flag: a disconnection and a reconnection that both happen before the lock's
//! task next runs are not seen (the SDK's own clients share this).
//!
//! Two things of the session are the application's, not the lock's:
//!
//! - **Re-sent requests.** The SDK re-sends unacknowledged publishes when it resumes the
//!   session, the lock's requests among them, though the engine gave them up at the
//!   disconnection; the driver's own connection drops those, a shared session cannot. What
//!   bounds a late copy here is each request's Message Expiry Interval (its timeout, rounded up
//!   to whole seconds; a write fenced with a lease expires with the lease), after which the
//!   broker discards it.
//! - **Keep-alive.** azure_iot_operations_mqtt 1.2 waits 2 s for a PINGRESP and restarts that
//!   wait at every PINGREQ: with a keep-alive under 2 s it never notices a silent broker. Give
//!   the session a keep-alive of 3 s or more (the SDK's default is 60 s).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use azure_iot_operations_mqtt::control_packet::{
    DeliveryQoS, PubAck, Publish, PublishProperties, QoS as SdkQoS, RetainOptions, SubAck,
    SubscribeProperties, TopicFilter, TopicName,
};
use azure_iot_operations_mqtt::error::CompletionError;
use azure_iot_operations_mqtt::session::{
    SessionManagedClient, SessionMonitor, SessionPubReceiver,
};
use azure_iot_operations_mqtt::token::{PublishQoS1CompletionToken, SubscribeCompletionToken};
use futures_util::stream::{FuturesUnordered, StreamExt};
use leasedlock::bytes::Bytes;
use leasedlock::lock::{self, ConfigError, NotDelivered};
use leasedlock::mqtt::DisconnectCause;
use leasedlock::store::topic;
use leasedlock::{Message, QoS};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use azure_iot_operations_mqtt;
pub use leasedlock_tokio::{
    leasedlock, Change, Client, ConnectionState, ConnectionWatch, Disconnection, Election, Error,
    Hold, HoldEvent, HoldWatch, Leadership, Lease, Lock, Observer, Outcomes, Stats, Topics,
    Transport, TransportEvent,
};

/// Why [`attach`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The lock's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The lock's client id is not the session's: the state store would send its notifications
    /// to a topic the lock does not receive on.
    #[error("the lock's client id {lock:?} is not the session's {session:?}")]
    ClientId {
        /// `Config::client_id`.
        lock: String,
        /// The session's MQTT client id.
        session: String,
    },
}

/// The SDK's queue has taken a request (or refused it): what became of it.
enum Handed {
    Publish(Option<Bytes>, Result<PublishQoS1CompletionToken, Gone>),
    Subscribe(String, Result<SubscribeCompletionToken, Gone>),
    /// The engine's topic or filter is not one the SDK accepts.
    Invalid(Out, String),
}

/// The session has ended: the managed client is detached from it.
struct Gone;

/// A request for the SDK.
enum Out {
    Publish(Message),
    Subscribe(String),
}

/// The SDK's completion token of a request, with what the request is known by (taken when the
/// token completes).
enum Awaited {
    Puback(Option<Bytes>, PublishQoS1CompletionToken),
    Suback(Option<String>, SubscribeCompletionToken),
}

/// A completed [`Awaited`].
enum Acked {
    Puback(Bytes, Result<PubAck, CompletionError>),
    Suback(String, Result<SubAck, CompletionError>),
}

impl Future for Awaited {
    type Output = Acked;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Acked> {
        // The tokens are `Unpin`, and so is this.
        match self.get_mut() {
            Awaited::Puback(correlation, token) => Pin::new(token).poll(cx).map(|result| {
                Acked::Puback(correlation.take().expect("polled after completion"), result)
            }),
            Awaited::Suback(filter, token) => Pin::new(token).poll(cx).map(|result| {
                Acked::Suback(filter.take().expect("polled after completion"), result)
            }),
        }
    }
}

/// A request on its way into the SDK's queue (which makes the caller wait while it is full).
type Handing = Pin<Box<dyn Future<Output = Handed> + Send>>;

/// The [`Transport`] over an SDK session's [`SessionManagedClient`] and [`SessionMonitor`].
/// [`attach`] builds it, checks the lock's client id against the session's and runs the lock
/// over it; to run it with [`leasedlock_tokio::attach`] yourself, give the lock the session's
/// client id.
pub struct Aio {
    client: Arc<SessionManagedClient>,
    monitor: SessionMonitor,
    /// The lock's response topic and its notification filter.
    receivers: Vec<SessionPubReceiver>,
    /// Requests not yet with the SDK, in order.
    outbox: VecDeque<Out>,
    handing: Option<Handing>,
    /// Publishes and subscribes with the SDK, until their acknowledgement.
    acks: FuturesUnordered<Awaited>,
    /// Until the monitor sees the other state than `connected`.
    link: Pin<Box<dyn Future<Output = ()> + Send>>,
    connected: bool,
    /// Whether the session has been connected before (it then resumes its session).
    was_connected: bool,
    /// Events to report, ahead of anything new.
    ready: VecDeque<TransportEvent>,
    gone: bool,
}

impl std::fmt::Debug for Aio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aio")
            .field("client_id", &self.client.client_id())
            .field("queued", &self.outbox.len())
            .field("connected", &self.connected)
            .field("gone", &self.gone)
            .finish_non_exhaustive()
    }
}

/// Until `monitor` sees the session connected (`up`) or disconnected.
fn link_change(monitor: &SessionMonitor, up: bool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let monitor = monitor.clone();
    Box::pin(async move {
        if up {
            monitor.connected().await;
        } else {
            monitor.disconnected().await;
        }
    })
}

impl Aio {
    /// The transport over `client` and `monitor` of one session, for a lock whose client id is
    /// the session's. Its receivers for the lock's topics are registered at once, so that no
    /// response or notification is missed once the engine has subscribed.
    pub fn new(client: SessionManagedClient, monitor: SessionMonitor) -> Aio {
        let id = client.client_id();
        // None for a client id that is no topic level (the lock's configuration refuses it).
        let receivers = [topic::response_topic(id), topic::notification_filter(id)]
            .into_iter()
            .filter_map(|filter| TopicFilter::new(filter).ok())
            .map(|filter| client.create_filtered_pub_receiver(filter))
            .collect();
        Aio {
            link: link_change(&monitor, true),
            client: Arc::new(client),
            monitor,
            receivers,
            outbox: VecDeque::new(),
            handing: None,
            acks: FuturesUnordered::new(),
            connected: false,
            was_connected: false,
            ready: VecDeque::new(),
            gone: false,
        }
    }

    /// The future that hands `out` to the SDK.
    fn hand(&self, out: Out) -> Handing {
        let client = self.client.clone();
        Box::pin(async move {
            match out {
                Out::Publish(message) => {
                    let (topic, payload, properties) = match publish_parts(&message) {
                        Ok(parts) => parts,
                        Err(error) => return Handed::Invalid(Out::Publish(message), error),
                    };
                    let handed = client
                        .publish_qos1(topic, false, payload, properties)
                        .await
                        .map_err(|_| Gone);
                    Handed::Publish(message.correlation_data, handed)
                }
                Out::Subscribe(filter) => {
                    let parsed = match TopicFilter::new(filter.clone()) {
                        Ok(parsed) => parsed,
                        Err(error) => {
                            return Handed::Invalid(Out::Subscribe(filter), error.to_string())
                        }
                    };
                    let handed = client
                        .subscribe(
                            parsed,
                            SdkQoS::AtLeastOnce,
                            false,
                            RetainOptions::default(),
                            SubscribeProperties::default(),
                        )
                        .await
                        .map_err(|_| Gone);
                    Handed::Subscribe(filter, handed)
                }
            }
        })
    }

    /// Hands queued requests to the SDK; `Pending` while one waits for room in its queue.
    fn poll_hand_over(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.gone {
                self.outbox.clear();
                self.handing = None;
                return Poll::Ready(());
            }
            if let Some(handing) = &mut self.handing {
                let handed = match handing.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(handed) => handed,
                };
                self.handing = None;
                self.handed(handed);
            }
            let Some(out) = self.outbox.pop_front() else {
                return Poll::Ready(());
            };
            self.handing = Some(self.hand(out));
        }
    }

    /// What became of a request handed to the SDK.
    fn handed(&mut self, handed: Handed) {
        match handed {
            Handed::Publish(Some(correlation), Ok(token)) => {
                self.acks.push(Awaited::Puback(Some(correlation), token));
            }
            Handed::Publish(None, Ok(_)) => {}
            Handed::Subscribe(filter, Ok(token)) => {
                self.acks.push(Awaited::Suback(Some(filter), token));
            }
            Handed::Publish(_, Err(Gone)) | Handed::Subscribe(_, Err(Gone)) => self.gone = true,
            Handed::Invalid(Out::Publish(message), error) => {
                if let Some(correlation_data) = message.correlation_data {
                    self.ready.push_back(TransportEvent::NotDelivered {
                        correlation_data,
                        reason: NotDelivered::Refused(error),
                    });
                }
            }
            Handed::Invalid(Out::Subscribe(filter), _) => {
                self.ready.push_back(TransportEvent::Subscribed {
                    filter,
                    granted: false,
                });
            }
        }
    }

    /// Moves the acknowledgements that have come to the events to report.
    fn poll_acks(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(acked)) = self.acks.poll_next_unpin(cx) {
            match acked {
                Acked::Puback(correlation, Ok(ack)) => {
                    self.ready.extend(puback_event(correlation, &ack));
                }
                Acked::Suback(filter, Ok(ack)) => {
                    self.ready.push_back(TransportEvent::Subscribed {
                        filter,
                        granted: ack.is_success(),
                    })
                }
                Acked::Puback(_, Err(error)) | Acked::Suback(_, Err(error)) => {
                    self.completion_failed(&error);
                }
            }
        }
    }

    /// A request whose acknowledgement will not come: the engine times it out. A detached
    /// session is gone for good.
    fn completion_failed(&mut self, error: &CompletionError) {
        if matches!(error, CompletionError::Detached) {
            self.gone = true;
        }
    }

    /// A change of the session's state, if the monitor has seen one.
    fn poll_link(&mut self, cx: &mut Context<'_>) -> Option<TransportEvent> {
        self.link.as_mut().poll(cx).is_ready().then(|| {
            self.connected = !self.connected;
            self.link = link_change(&self.monitor, !self.connected);
            if self.connected {
                let session_present = std::mem::replace(&mut self.was_connected, true);
                TransportEvent::Connected { session_present }
            } else {
                TransportEvent::Disconnected(Disconnection::Ended(DisconnectCause::TransportClosed))
            }
        })
    }

    /// A PUBLISH on the lock's topics, if one has come.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Option<TransportEvent> {
        self.receivers.iter_mut().find_map(|receiver| {
            // `recv` only waits on the receiver's channel: a fresh one each time loses nothing.
            match std::pin::pin!(receiver.recv()).poll(cx) {
                Poll::Ready(Some(publish)) => Some(TransportEvent::Message(to_message(publish))),
                Poll::Ready(None) | Poll::Pending => None,
            }
        })
    }
}

/// The report of the SDK's PUBACK of the request with this Correlation Data, if it failed.
fn puback_event(correlation: Bytes, ack: &PubAck) -> Option<TransportEvent> {
    // The SDK's reason codes are the v5 ones.
    TransportEvent::puback(correlation, ack.reason.clone() as u8)
}

/// The SDK's topic, payload and properties of a PUBLISH of `m`, or why the SDK refuses them.
fn publish_parts(m: &Message) -> Result<(TopicName, Bytes, PublishProperties), String> {
    let topic = TopicName::new(&*m.topic).map_err(|e| e.to_string())?;
    let response_topic = m
        .response_topic
        .as_ref()
        .map(|t| TopicName::new(&**t))
        .transpose()
        .map_err(|e| e.to_string())?;
    let properties = PublishProperties {
        message_expiry_interval: m.message_expiry,
        response_topic,
        correlation_data: m.correlation_data.clone(),
        user_properties: m
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        content_type: m.content_type.as_ref().map(|c| c.to_string()),
        ..PublishProperties::default()
    };
    Ok((topic, m.payload.clone(), properties))
}

/// An SDK PUBLISH as a [`Message`].
fn to_message(p: Publish) -> Message {
    let props = p.properties;
    Message {
        topic: p.topic_name.as_str().into(),
        payload: p.payload,
        qos: match p.qos {
            DeliveryQoS::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        },
        correlation_data: props.correlation_data,
        response_topic: props.response_topic.map(|t| t.as_str().into()),
        message_expiry: props.message_expiry_interval,
        content_type: props.content_type.map(Into::into),
        user_properties: props
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    }
}

impl Transport for Aio {
    fn publish(&mut self, message: Message) {
        self.outbox.push_back(Out::Publish(message));
    }

    fn subscribe(&mut self, filter: &str) {
        self.outbox.push_back(Out::Subscribe(filter.to_owned()));
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<TransportEvent>> {
        let _ = self.poll_hand_over(cx);
        self.poll_acks(cx);
        if let Some(event) = self.ready.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.gone {
            return Poll::Ready(None);
        }
        match self.poll_link(cx).or_else(|| self.poll_message(cx)) {
            Some(event) => Poll::Ready(Some(event)),
            None => Poll::Pending,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_hand_over(cx)
    }
}

/// The lock of `config` over the application's SDK session (its managed client and monitor):
/// the lock's [`Client`] handle and its task, spawned on the current tokio runtime.
/// `config.client_id` is the lock holder's name; it must be the session's client id
/// ([`SessionManagedClient::client_id`]), where the state store sends notifications.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn attach(
    config: lock::Config,
    client: SessionManagedClient,
    monitor: SessionMonitor,
) -> Result<(Client, tokio::task::JoinHandle<()>), AttachError> {
    if config.client_id != client.client_id() {
        return Err(AttachError::ClientId {
            lock: config.client_id,
            session: client.client_id().to_owned(),
        });
    }
    Ok(leasedlock_tokio::attach(config, Aio::new(client, monitor))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
    use azure_iot_operations_mqtt::session::{Session, SessionOptionsBuilder};
    use std::task::Waker;

    /// A session that is never run (nothing connects): the SDK's queues take requests and hold
    /// them.
    fn session(id: &str) -> Session {
        let connection = MqttConnectionSettingsBuilder::default()
            .client_id(id.to_owned())
            .hostname("127.0.0.1")
            .tcp_port(1u16)
            .use_tls(false)
            .build()
            .unwrap();
        let options = SessionOptionsBuilder::default()
            .connection_settings(connection)
            .build()
            .unwrap();
        Session::new(options).unwrap()
    }

    fn poll(t: &mut Aio) -> Poll<Option<TransportEvent>> {
        t.poll_event(&mut Context::from_waker(Waker::noop()))
    }

    fn request(correlation: &'static [u8]) -> Message {
        Message {
            topic: "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke".into(),
            payload: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
            qos: QoS::AtLeastOnce,
            correlation_data: Some(Bytes::from_static(correlation)),
            response_topic: Some(topic::response_topic("t").into()),
            message_expiry: Some(10),
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![("__srcId".into(), "t".into()), ("a".into(), "b".into())],
        }
    }

    #[test]
    fn a_message_goes_out_and_comes_back_with_its_properties() {
        let sent = request(b"first");
        let (topic, payload, properties) = publish_parts(&sent).unwrap();
        let received = to_message(Publish {
            payload,
            qos: DeliveryQoS::AtMostOnce,
            retain: false,
            topic_name: topic,
            properties,
        });
        assert_eq!(
            received,
            Message {
                qos: QoS::AtMostOnce,
                ..sent
            }
        );
    }

    #[test]
    fn a_topic_the_sdk_refuses_fails_the_request_and_a_bad_filter_is_refused() {
        let (mut t, _session) = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let _guard = rt.enter();
            let session = session("t");
            let t = Aio::new(
                session.create_managed_client(),
                session.create_session_monitor(),
            );
            (t, session)
        };
        t.publish(Message {
            topic: "wild/#".into(),
            ..request(b"bad")
        });
        t.subscribe("a/#/b");
        assert!(matches!(
            poll(&mut t),
            Poll::Ready(Some(TransportEvent::NotDelivered {
                reason: NotDelivered::Refused(_),
                ..
            }))
        ));
        assert_eq!(
            poll(&mut t),
            Poll::Ready(Some(TransportEvent::Subscribed {
                filter: "a/#/b".into(),
                granted: false
            }))
        );
        assert_eq!(poll(&mut t), Poll::Pending);
    }

    #[test]
    fn pubacks_map_their_reason_codes() {
        use azure_iot_operations_mqtt::control_packet::{PacketIdentifier, PubAckReason};
        let id = Bytes::from_static(b"first");
        let ack = |reason| PubAck {
            packet_identifier: PacketIdentifier::new(1).unwrap(),
            reason,
            properties: Default::default(),
        };
        assert_eq!(puback_event(id.clone(), &ack(PubAckReason::Success)), None);
        assert_eq!(
            puback_event(id.clone(), &ack(PubAckReason::NoMatchingSubscribers)),
            Some(TransportEvent::NotDelivered {
                correlation_data: id.clone(),
                reason: NotDelivered::NoSubscribers,
            }),
            "0x10: the state store is not up"
        );
        assert_eq!(
            puback_event(id.clone(), &ack(PubAckReason::NotAuthorized)),
            Some(TransportEvent::NotDelivered {
                correlation_data: id,
                reason: NotDelivered::Refused("NotAuthorized".into()),
            })
        );
    }

    #[tokio::test]
    async fn requests_wait_in_the_sdk_while_the_session_is_down_and_the_lock_stops_once_it_is_gone()
    {
        let session = session("t");
        let mut t = Aio::new(
            session.create_managed_client(),
            session.create_session_monitor(),
        );
        t.subscribe(&topic::response_topic("t"));
        t.publish(request(b"first"));
        assert_eq!(poll(&mut t), Poll::Pending, "queued in the SDK, no outcome");
        assert_eq!(t.acks.len(), 2, "both wait for their acknowledgement");
        drop(session);
        // The queued requests' acknowledgements will never come: the session is gone.
        assert_eq!(poll(&mut t), Poll::Ready(None));
    }

    #[tokio::test]
    async fn attach_refuses_a_client_id_that_is_not_the_sessions_or_no_topic_level() {
        let attach_to = |id: &str, config: &str| {
            let session = session(id);
            attach(
                lock::Config::new(config),
                session.create_managed_client(),
                session.create_session_monitor(),
            )
        };
        assert!(matches!(
            attach_to("app", "other"),
            Err(AttachError::ClientId { ref lock, ref session }) if lock == "other" && session == "app"
        ));
        let refused = attach_to("a+b", "a+b");
        assert!(
            matches!(
                refused,
                Err(AttachError::Config(ConfigError::InvalidClientId(_)))
            ),
            "{refused:?}"
        );
        let (_client, task) = attach_to("app", "app").unwrap();
        task.abort();
    }
}
