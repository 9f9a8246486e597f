//! A recipe: the lock's async API over any MQTT client, through [`Transport`]. The client here
//! is the core's sans-IO [`Session`] over an async-io `TcpStream`, standing for whatever MQTT
//! client an application already has; the same five steps bind any other one:
//!
//! 1. `publish`: hand the message to the client with QoS 1 and remember its Correlation Data by
//!    the client's id for the publish;
//! 2. `subscribe`: subscribe with QoS 1 and remember the filter by the client's id for it;
//! 3. in `poll_event`, move the client on (here: write its bytes, read the socket, fire its
//!    keep-alive timer) and report what happened: CONNACK as `Connected`, the end of the
//!    connection as `Disconnected` (0x8E as `Disconnection::TakenOver`), every PUBLISH as
//!    `Message`, a PUBACK through [`TransportEvent::puback`], a SUBACK as `Subscribed`;
//! 4. return `Ready(None)` once the client is gone for good;
//! 5. run it with [`leasedlock_driver::attach`] on a runtime's [`Timers`](leasedlock_driver::Timers).
//!
//! This one does not reconnect (a real client does, and reports each new CONNACK).
#![allow(clippy::disallowed_methods)] // the test is the driver: it reads the clock

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use leasedlock::bytes::Bytes;
use leasedlock::lock::{Config, EditAction, EditOutcome, Options};
use leasedlock::mqtt::{self, DisconnectCause, DisconnectReason, PublishId, Session, SubscribeId};
use leasedlock::{Message, QoS};
use leasedlock_async_io::{AsyncIo, Disconnection, HoldEvent};
use leasedlock_driver::{Transport, TransportEvent};
use leasedlock_testkit::{Broker, StoreEmulator};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A [`Session`] over one TCP connection, as a [`Transport`].
struct SessionTransport {
    session: Session,
    stream: Async<TcpStream>,
    /// The bytes being written, and how many of them are out.
    writing: Option<(Bytes, usize)>,
    timer: Timer,
    buf: Box<[u8]>,
    published: BTreeMap<PublishId, Bytes>,
    subscribed: BTreeMap<SubscribeId, String>,
    /// The socket is closed: the session's last events are reported, then `None`.
    closed: bool,
}

impl SessionTransport {
    /// A session for `client_id` over `stream`, its CONNECT on the way.
    fn new(stream: Async<TcpStream>, client_id: &str) -> SessionTransport {
        let mut options = mqtt::Options::new(client_id);
        options.keep_alive = Duration::from_secs(10);
        let mut session = Session::new(options);
        session.connect(Instant::now());
        SessionTransport {
            session,
            stream,
            writing: None,
            timer: Timer::never(),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            published: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            closed: false,
        }
    }

    /// What an event of the session means to the lock.
    fn report(&mut self, event: mqtt::Event) -> Option<TransportEvent> {
        Some(match event {
            mqtt::Event::Connected { session_present } => {
                TransportEvent::Connected { session_present }
            }
            mqtt::Event::ConnectFailed(reason) => {
                TransportEvent::Disconnected(Disconnection::Refused(reason))
            }
            mqtt::Event::Disconnected(DisconnectCause::ByServer(
                DisconnectReason::SessionTakenOver,
            )) => TransportEvent::Disconnected(Disconnection::TakenOver),
            mqtt::Event::Disconnected(cause) => {
                TransportEvent::Disconnected(Disconnection::Ended(cause))
            }
            mqtt::Event::Message(message) => TransportEvent::Message(message),
            mqtt::Event::PublishAcked { id, reason, .. } => {
                let correlation = self.published.remove(&id)?;
                return TransportEvent::puback(correlation, reason.code());
            }
            mqtt::Event::PublishDropped { id, .. } => {
                self.published.remove(&id);
                return None;
            }
            mqtt::Event::Subscribed { id, results } => TransportEvent::Subscribed {
                filter: self.subscribed.remove(&id)?,
                granted: matches!(results.first(), Some(Ok(_))),
            },
            mqtt::Event::AuthenticationChallenge { .. } | mqtt::Event::Reauthenticated => {
                return None
            }
        })
    }

    /// Writes what the session has to send; `true` when the socket broke.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.writing.is_none() {
                self.writing = self.session.poll_transmit().map(|bytes| (bytes, 0));
            }
            let Some((bytes, written)) = &mut self.writing else {
                return false;
            };
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    *written += n;
                    if *written == bytes.len() {
                        self.writing = None;
                    }
                }
                Poll::Ready(_) => return true,
                Poll::Pending => return false,
            }
        }
    }
}

impl Transport for SessionTransport {
    fn publish(&mut self, message: Message) {
        let correlation = message.correlation_data.clone();
        // A publish the session refuses (not connected) is timed out by the engine.
        if let (Ok(id), Some(correlation)) =
            (self.session.publish(Instant::now(), message), correlation)
        {
            self.published.insert(id, correlation);
        }
    }

    fn subscribe(&mut self, filter: &str) {
        let filters = [(filter, QoS::AtLeastOnce)];
        if let Ok(id) = self.session.subscribe(Instant::now(), &filters) {
            self.subscribed.insert(id, filter.to_owned());
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<TransportEvent>> {
        loop {
            while let Some(event) = self.session.poll_event() {
                if let Some(event) = self.report(event) {
                    return Poll::Ready(Some(event));
                }
            }
            if self.closed {
                return Poll::Ready(None);
            }
            let mut broken = self.poll_write(cx);
            if !broken {
                match Pin::new(&mut self.stream).poll_read(cx, &mut self.buf) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.session.handle_bytes(Instant::now(), &self.buf[..n]);
                        continue;
                    }
                    Poll::Ready(_) => broken = true,
                    Poll::Pending => {}
                }
            }
            if broken {
                self.session.handle_transport_closed(Instant::now());
                self.closed = true;
                continue;
            }
            if let Some(at) = self.session.poll_timeout() {
                self.timer.set_at(at);
                if Pin::new(&mut self.timer).poll(cx).is_ready() {
                    self.session.handle_timeout(Instant::now());
                    continue;
                }
            }
            return Poll::Pending;
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.poll_write(cx) || self.writing.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The whole API over the recipe's transport: a lock contended with a client on its own
/// connection, an edit, a hold's renewal; then the lock stops when the session ends.
#[test]
fn the_async_api_runs_over_a_transport_of_ones_own() {
    smol::block_on(async {
        let broker = Broker::start();
        let _store = StoreEmulator::start(broker.addr());
        let stream = Async::<TcpStream>::connect(broker.addr()).await.unwrap();
        stream.get_ref().set_nodelay(true).unwrap();
        let transport = SessionTransport::new(stream, "recipe-a");
        let (a, driver) =
            leasedlock_driver::attach::<AsyncIo, _>(Config::new("recipe-a"), transport).unwrap();
        let driver = smol::spawn(driver);
        let settings =
            leasedlock_async_io::Settings::new("127.0.0.1", broker.addr().port(), "recipe-b");
        let (b, b_driver) = leasedlock_async_io::connect(&settings).unwrap();
        smol::spawn(b_driver).detach();

        let lease = Duration::from_secs(10);
        let won = a.acquire("L", lease, Options::default()).await.unwrap();
        assert_eq!(
            b.try_acquire("L", lease, Options::default()).await,
            Ok(None)
        );
        let holder = b.holder("L", Options::default()).await.unwrap();
        assert!(holder.is_some_and(|h| h.is("recipe-a", None)));
        assert!(a.release("L", Options::default()).await.unwrap());
        let theirs = b.acquire("L", lease, Options::default()).await.unwrap();
        assert!(theirs.token > won.token);
        assert!(b.release("L", Options::default()).await.unwrap());

        let outcome = a
            .edit("L", "K", lease, Options::default(), |_| async {
                EditAction::Set(Bytes::from_static(b"1"))
            })
            .await
            .unwrap();
        assert_eq!(outcome, EditOutcome::Written);
        assert_eq!(
            b.get("K", Options::default()).await.unwrap().as_deref(),
            Some(&b"1"[..])
        );

        let mut hold = a
            .hold("H", lease, Duration::from_millis(100), Options::default())
            .await
            .unwrap();
        assert!(matches!(
            hold.next_event().await,
            Some(HoldEvent::Renewed(_))
        ));
        assert!(hold.close().await.unwrap());
        let stats = a.stats().await.unwrap();
        assert_eq!((stats.connections, stats.locks_held), (1, 0));

        // Every handle gone: the lock's driver ends once the transport has the last publishes.
        drop(a);
        driver.await;
    });
}
