//! Harness for the MQTT session: a connected session fed arbitrary server bytes in chunks,
//! interleaved with publishes, subscribes, timer ticks, reconnects and client disconnects, all
//! chosen by the input. Invariants are checked after every step.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use leasedlock::mqtt::{DisconnectReason, Event, Options, PublishId, Session, SubscribeId};
use leasedlock::{Message, QoS};

/// Our cap on publishes in flight.
const MAX_INFLIGHT: u16 = 4;

/// Reads the input one byte (or slice) at a time; an exhausted input reads as zeros / empty.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// What the harness expects of the session, from what it observed.
struct Checker {
    /// A Disconnected or ConnectFailed event was seen since the last connect.
    ended: bool,
    /// Saw Connected since the last connect.
    connected: bool,
    /// The in-flight limit of the current connection.
    limit: usize,
    /// QoS 1 publishes accepted and not yet acknowledged or dropped.
    open_publishes: BTreeSet<PublishId>,
    /// Subscribes accepted and not yet answered.
    open_subscribes: BTreeSet<SubscribeId>,
}

/// The fuzz target body.
pub fn mqtt_session(data: &[u8]) {
    let mut input = Input(data);
    #[allow(clippy::disallowed_methods)] // the harness is the driver: it makes up the time origin
    let mut now = Instant::now();
    let mut options = Options::new("fuzz");
    options.max_inflight = MAX_INFLIGHT;
    options.max_packet_size = 4096;
    options.keep_alive = Duration::from_secs(10);
    options.connect_timeout = Duration::from_secs(5);
    let mut session = Session::new(options);
    let mut checker = Checker {
        ended: false,
        connected: false,
        limit: usize::from(MAX_INFLIGHT),
        open_publishes: BTreeSet::new(),
        open_subscribes: BTreeSet::new(),
    };
    connect(&mut session, &mut checker, now, false, u16::MAX);

    while !input.0.is_empty() {
        match input.byte() % 10 {
            0..=3 => {
                let len = usize::from(input.byte()).max(1);
                let chunk = input.take(len);
                session.handle_bytes(now, chunk);
            }
            4 | 5 => {
                let qos = if input.byte() & 1 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                let size = usize::from(input.byte()) * 32;
                let message = Message {
                    topic: "t".into(),
                    payload: vec![0u8; size].into(),
                    qos,
                    correlation_data: Some(vec![1u8; 16].into()),
                    ..Message::default()
                };
                if let Ok(id) = session.publish(now, message) {
                    if qos == QoS::AtLeastOnce {
                        assert!(checker.open_publishes.insert(id), "publish id reused");
                    }
                }
            }
            6 => {
                let qos = if input.byte() & 1 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                let result = session.subscribe(now, &[("a/#", qos), ("b", QoS::AtMostOnce)]);
                assert_eq!(result.is_ok(), session.is_connected());
                if let Ok(id) = result {
                    checker.open_subscribes.insert(id);
                }
            }
            7 => {
                now += Duration::from_millis(u64::from(input.byte()) * 100);
                session.handle_timeout(now);
                // A due timer must move on: no busy loop at a deadline already handled.
                drain(&mut session, &mut checker);
                if let Some(at) = session.poll_timeout() {
                    if at <= now {
                        session.handle_timeout(now);
                        drain(&mut session, &mut checker);
                        assert!(session.poll_timeout().is_none_or(|t| t > now));
                    }
                }
            }
            8 => {
                session.handle_transport_closed(now);
                drain(&mut session, &mut checker);
                let flags = input.byte();
                let receive_maximum = u16::from(input.byte() % 6).max(1);
                connect(
                    &mut session,
                    &mut checker,
                    now,
                    flags & 1 == 1,
                    receive_maximum,
                );
            }
            _ => session.disconnect(now, DisconnectReason::NormalDisconnection),
        }
        drain(&mut session, &mut checker);
    }
}

/// A new transport: connect and feed a successful CONNACK.
fn connect(
    session: &mut Session,
    checker: &mut Checker,
    now: Instant,
    session_present: bool,
    receive_maximum: u16,
) {
    session.connect(now);
    checker.ended = false;
    checker.connected = false;
    // Subscribes of the old connection are void.
    checker.open_subscribes.clear();
    let [hi, lo] = receive_maximum.to_be_bytes();
    session.handle_bytes(
        now,
        &[0x20, 0x06, u8::from(session_present), 0, 3, 0x21, hi, lo],
    );
    checker.limit = usize::from(MAX_INFLIGHT.min(receive_maximum));
    drain(session, checker);
    assert!(session.is_connected());
}

/// Drains every output and checks the invariants.
fn drain(session: &mut Session, checker: &mut Checker) {
    while let Some(bytes) = session.poll_transmit() {
        check_frames(&bytes);
    }
    while let Some(event) = session.poll_event() {
        assert!(
            !checker.ended,
            "event after the connection ended: {event:?}"
        );
        match event {
            Event::Connected { .. } => {
                assert!(!checker.connected, "second Connected");
                checker.connected = true;
            }
            Event::ConnectFailed(_) | Event::Disconnected(_) => {
                checker.ended = true;
                assert!(!session.is_connected());
            }
            Event::PublishAcked { id, .. } | Event::PublishDropped { id, .. } => {
                assert!(
                    checker.open_publishes.remove(&id),
                    "publish {id:?} ended twice"
                );
            }
            Event::Subscribed { id, results } => {
                assert!(
                    checker.open_subscribes.remove(&id),
                    "subscribe {id:?} ended twice"
                );
                assert_eq!(results.len(), 2);
            }
            Event::Message(_) | Event::Reauthenticated => assert!(checker.connected),
            Event::AuthenticationChallenge { .. } => {}
        }
    }
    if session.is_connected() {
        assert!(checker.connected && !checker.ended);
        assert!(
            session.publishes_in_flight() <= checker.limit,
            "{} in flight, limit {}",
            session.publishes_in_flight(),
            checker.limit
        );
    }
}

/// Our own output always splits into whole frames.
fn check_frames(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = bytes[i];
            len |= usize::from(b & 0x7F) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            assert!(i <= 4, "remaining length too long");
        }
        assert!(bytes.len() >= i + len, "truncated frame in our output");
        bytes = &bytes[i + len..];
    }
}

#[cfg(test)]
mod tests {
    /// A deterministic xorshift stream standing in for the fuzzer.
    struct Rng(u64);

    impl Rng {
        fn byte(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }
    }

    /// The invariants hold on arbitrary bytes.
    #[test]
    fn random_bytes_keep_the_invariants() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let len = usize::from(rng.byte());
            let data: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            super::mqtt_session(&data);
        }
    }

    /// The invariants hold on valid server packets split at random between random operations.
    #[test]
    fn valid_packets_split_at_random_keep_the_invariants() {
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..rng.byte() % 40 {
                let op = rng.byte() % 10;
                let pkid = rng.byte() % 8;
                let packet: Vec<u8> = match rng.byte() % 7 {
                    0 => vec![0x40, 2, 0, pkid],
                    1 => vec![0x40, 3, 0, pkid, 0x10],
                    2 => vec![0x90, 5, 0, pkid, 0, 1, 0x87],
                    3 => vec![0x32, 6, 0, 1, b't', 0, pkid, 0],
                    4 => vec![0xD0, 0],
                    5 => vec![0xE0, 1, 0x8E],
                    _ => vec![0x20, 3, 0, 0, 0],
                };
                if op < 4 {
                    let mut rest = &packet[..];
                    while !rest.is_empty() {
                        let n = (usize::from(rng.byte() % 4) + 1).min(rest.len());
                        data.extend_from_slice(&[0, n as u8]);
                        data.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                    }
                } else {
                    data.extend_from_slice(&[op, rng.byte(), rng.byte()]);
                }
            }
            super::mqtt_session(&data);
        }
    }
}
