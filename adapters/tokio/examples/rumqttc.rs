//! Bring your own MQTT client: the lock engine ([`leasedlock::lock::Client`], not `Connection`)
//! bound to an existing rumqttc v5 connection at the `Message` level.
//!
//! ```text
//! statestore-emulator --broker 127.0.0.1:1883 &
//! cargo run -p leasedlock-tokio --example rumqttc -- --broker 127.0.0.1:1883
//! ```
//!
//! The binding is small: rumqttc's event loop runs in its own task and forwards its events; this
//! task owns the engine and
//!
//! - turns rumqttc PUBLISHes into [`Message`]s for [`Client::handle_message`],
//! - reports CONNACK / connection errors with `handle_connected` / `handle_disconnected`,
//! - matches SUBACKs to the filters the engine asked for (rumqttc reports the packet id of each
//!   SUBSCRIBE it sends, in order) for `handle_subscribed`,
//! - publishes the engine's [`Output::Publish`] messages with their properties, and
//! - sleeps until [`Client::poll_timeout`] for `handle_timeout`.
//!
//! The scripted session: acquire a lock, print the token, release it, increment a counter under
//! the lock with `edit`. Exits 0 on success, 1 on any failure (within 30 s).
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // the example is the driver: it reads the clocks

use leasedlock::bytes::Bytes;
use leasedlock::lock::{self, Client, Config, EditAction, EditOutcome, Event, LockId, Output};
use leasedlock::{Message, Now, QoS};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS as RQoS;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};
use rumqttc::Outgoing;
use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const LEASE: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(30);

fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now::new(Instant::now(), wall)
}

/// What the rumqttc task tells the engine task.
enum Link {
    Connected,
    Disconnected(String),
    Message(Message),
    SubscribeSent(u16),
    SubAck { pkid: u16, granted: bool },
}

/// A rumqttc PUBLISH as a [`Message`].
fn to_message(p: Publish) -> Message {
    let props = p.properties.unwrap_or_default();
    Message {
        topic: String::from_utf8_lossy(&p.topic).into_owned().into(),
        payload: p.payload,
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

/// The engine bound to rumqttc.
struct Binding {
    engine: Client,
    mqtt: AsyncClient,
    /// Filters subscribed but not yet given a packet id by rumqttc, in order.
    unsent: VecDeque<String>,
    /// Packet id → filter, awaiting the SUBACK.
    awaiting: BTreeMap<u16, String>,
    /// Engine events not yet looked at.
    events: VecDeque<Event>,
}

impl Binding {
    /// Moves the engine's outputs to rumqttc, and its events to `self.events`.
    async fn drain(&mut self) -> Result<(), String> {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Request(request) => {
                    let m = self.engine.to_message(&request);
                    let props = PublishProperties {
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
                    let qos = match m.qos {
                        QoS::AtMostOnce => RQoS::AtMostOnce,
                        QoS::AtLeastOnce => RQoS::AtLeastOnce,
                    };
                    self.mqtt
                        .publish_with_properties(m.topic, qos, false, m.payload, props)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Output::Subscribe(filter) => {
                    self.mqtt
                        .subscribe(filter.clone(), RQoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                    self.unsent.push_back(filter);
                }
                Output::Event(e) => self.events.push_back(e),
            }
        }
        Ok(())
    }

    fn handle(&mut self, link: Link) {
        let now = now();
        match link {
            Link::Connected => {
                // Subscriptions in flight died with the old connection; the engine subscribes again.
                self.unsent.clear();
                self.awaiting.clear();
                self.engine.handle_connected(now);
            }
            Link::Disconnected(why) => {
                eprintln!("connection lost ({why}); rumqttc reconnects");
                self.engine.handle_disconnected(now);
            }
            Link::Message(m) => self.engine.handle_message(now, &m),
            Link::SubscribeSent(pkid) => {
                if let Some(filter) = self.unsent.pop_front() {
                    self.awaiting.insert(pkid, filter);
                }
            }
            Link::SubAck { pkid, granted } => {
                if let Some(filter) = self.awaiting.remove(&pkid) {
                    self.engine.handle_subscribed(now, &filter, granted);
                }
            }
        }
    }

    /// Runs the binding until `want` returns `Some` for an event of the engine.
    async fn until<T>(
        &mut self,
        links: &mut mpsc::UnboundedReceiver<Link>,
        deadline: Instant,
        mut want: impl FnMut(&mut Client, Event) -> Result<Option<T>, String>,
    ) -> Result<T, String> {
        loop {
            self.drain().await?;
            while let Some(event) = self.events.pop_front() {
                let done = want(&mut self.engine, event)?;
                // Handling the event may have issued an intent: send its requests now.
                self.drain().await?;
                if let Some(t) = done {
                    return Ok(t);
                }
            }
            let wake = self.engine.poll_timeout().unwrap_or(deadline).min(deadline);
            tokio::select! {
                link = links.recv() => match link {
                    Some(link) => self.handle(link),
                    None => return Err("the rumqttc task ended".into()),
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= deadline {
                        return Err("timed out".into());
                    }
                    self.engine.handle_timeout(now());
                }
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut broker = "127.0.0.1:1883".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--broker", Some(b)) => broker = b,
            _ => {
                eprintln!("usage: rumqttc [--broker host:port]");
                return ExitCode::from(2);
            }
        }
    }
    match run(&broker).await {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rumqttc example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(broker: &str) -> Result<(), String> {
    let (host, port) = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--broker {broker:?} is not host:port"))?;
    let client_id = format!("rumqttc-example-{}", std::process::id());
    let mut options = MqttOptions::new(&client_id, host, port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_clean_start(true);
    let (mqtt, mut eventloop) = AsyncClient::new(options, 64);

    // rumqttc's event loop in its own task, forwarding what the engine needs.
    let (tx, mut links) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let link = match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => Link::Connected,
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => Link::Message(to_message(p)),
                Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => Link::SubAck {
                    pkid: ack.pkid,
                    granted: matches!(
                        ack.return_codes.first(),
                        Some(SubscribeReasonCode::Success(_))
                    ),
                },
                Ok(MqttEvent::Outgoing(Outgoing::Subscribe(pkid))) => Link::SubscribeSent(pkid),
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(Link::Disconnected(e.to_string()));
                    // rumqttc reconnects on the next poll; do not spin while the broker is away.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if tx.send(link).is_err() {
                return;
            }
        }
    });

    let engine = Client::new(
        Config::new(&client_id),
        now(),
        u64::from(std::process::id()),
    )
    .map_err(|e| e.to_string())?;
    let mut b = Binding {
        engine,
        mqtt: mqtt.clone(),
        unsent: VecDeque::new(),
        awaiting: BTreeMap::new(),
        events: VecDeque::new(),
    };
    let deadline = Instant::now() + DEADLINE;

    // Wait for the first CONNACK.
    loop {
        match links.recv().await {
            Some(Link::Connected) => {
                b.handle(Link::Connected);
                break;
            }
            Some(Link::Disconnected(e)) => return Err(format!("cannot connect to {broker}: {e}")),
            Some(_) => {}
            None => return Err("the rumqttc task ended".into()),
        }
    }
    println!("connected to {broker} through rumqttc as {client_id}");

    let lock = b
        .engine
        .lock_id("rumqttc-example-lock")
        .map_err(|e| e.to_string())?;
    acquire_and_release(&mut b, &mut links, deadline, lock).await?;
    increment(
        &mut b,
        &mut links,
        deadline,
        lock,
        "rumqttc-example-counter",
    )
    .await?;
    mqtt.disconnect().await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn acquire_and_release(
    b: &mut Binding,
    links: &mut mpsc::UnboundedReceiver<Link>,
    deadline: Instant,
    lock: LockId,
) -> Result<(), String> {
    let op = b
        .engine
        .acquire(now(), lock, LEASE, lock::Options::default())
        .map_err(|e| e.to_string())?;
    let token = b
        .until(links, deadline, |_, e| match e {
            Event::Acquired { op: o, token, .. } if o == op => Ok(Some(token)),
            Event::Failed { error, .. } => Err(format!("acquire failed: {error}")),
            _ => Ok(None),
        })
        .await?;
    println!("acquired, fencing token {token}");
    let op = b
        .engine
        .release(now(), lock, lock::Options::default())
        .map_err(|e| e.to_string())?;
    let was_held = b
        .until(links, deadline, |_, e| match e {
            Event::Released {
                op: o, was_held, ..
            } if o == op => Ok(Some(was_held)),
            Event::Failed { error, .. } => Err(format!("release failed: {error}")),
            _ => Ok(None),
        })
        .await?;
    if !was_held {
        return Err("the store no longer had our lease when we released it".into());
    }
    println!("released");
    Ok(())
}

async fn increment(
    b: &mut Binding,
    links: &mut mpsc::UnboundedReceiver<Link>,
    deadline: Instant,
    lock: LockId,
    key: &'static str,
) -> Result<(), String> {
    let op = b
        .engine
        .edit(
            now(),
            lock,
            Bytes::from_static(key.as_bytes()),
            LEASE,
            lock::Options::default(),
        )
        .map_err(|e| e.to_string())?;
    b.until(links, deadline, |engine, e| match e {
        Event::EditRequested { op: o, current, .. } if o == op => {
            let old = current
                .as_deref()
                .map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| format!("{key} holds {v:?}, not a counter"))
                })
                .transpose()?
                .unwrap_or(0);
            println!("counter {key}: {old} -> {}", old + 1);
            engine
                .complete_edit(
                    now(),
                    op,
                    EditAction::Set(Bytes::from((old + 1).to_string())),
                )
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Event::EditDone { op: o, outcome, .. } if o == op => match outcome {
            EditOutcome::Written => Ok(Some(())),
            other => Err(format!("edit ended with {other:?}")),
        },
        Event::Failed { error, .. } => Err(format!("edit failed: {error}")),
        _ => Ok(None),
    })
    .await?;
    println!("counter written with the fencing token, lock released");
    Ok(())
}
