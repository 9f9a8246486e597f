//! The test kit against itself: a broker, the emulator, and lock clients driven by a blocking loop.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock::connection::{Connection, Event};
use leasedlock::lock::{self, Config, Intent, Options};
use leasedlock::{mqtt, Now};
use leasedlock_testkit::{Broker, StoreEmulator};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIMEOUT: Duration = Duration::from_secs(20);

fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Now::new(Instant::now(), wall)
}

/// A lock client over a blocking TCP stream.
struct Driver {
    conn: Connection,
    stream: TcpStream,
}

impl Driver {
    /// Connects and waits for the CONNACK.
    fn connect(broker: SocketAddr, id: &str) -> Driver {
        let stream = TcpStream::connect(broker).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut conn = Connection::new(Config::new(id), mqtt::Options::new(id), now(), 7).unwrap();
        conn.connect(now());
        let mut d = Driver { conn, stream };
        d.until(|e| matches!(e, Event::Connected { .. }));
        d
    }

    /// Drives the connection until an event satisfies `pred`; panics after `TIMEOUT`.
    fn until(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(bytes) = self.conn.poll_transmit() {
                self.stream.write_all(&bytes).unwrap();
            }
            while let Some(event) = self.conn.poll_event() {
                if pred(&event) {
                    return event;
                }
            }
            while let Some(bytes) = self.conn.poll_transmit() {
                self.stream.write_all(&bytes).unwrap();
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("timed out waiting for an event");
            let wait = self
                .conn
                .poll_timeout()
                .map_or(left, |t| t.saturating_duration_since(Instant::now()))
                .clamp(Duration::from_millis(1), left.max(Duration::from_millis(1)));
            self.stream.set_read_timeout(Some(wait)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.conn.handle_bytes(now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.conn.handle_timeout(now())
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    fn try_acquire(&mut self, name: &str) -> lock::Event {
        let lock = self.conn.lock_id(name).unwrap();
        let op = self
            .conn
            .start(
                now(),
                lock,
                Intent::TryAcquire {
                    lease: Duration::from_secs(10),
                },
                Options::default(),
            )
            .unwrap();
        match self.until(|e| matches!(e, Event::Lock(l) if l.op() == Some(op))) {
            Event::Lock(l) => l,
            _ => unreachable!(),
        }
    }
}

/// Two clients contend for one lock through the broker and the emulator.
fn contend(broker: &Broker) {
    let _store = StoreEmulator::start(broker.addr());
    let mut a = Driver::connect(broker.addr(), "kit-a");
    let mut b = Driver::connect(broker.addr(), "kit-b");
    assert!(matches!(
        a.try_acquire("kit-lock"),
        lock::Event::Acquired { .. }
    ));
    assert!(matches!(
        b.try_acquire("kit-lock"),
        lock::Event::Busy { .. }
    ));
}

#[test]
fn store_answers_through_the_default_broker() {
    let broker = Broker::start();
    contend(&broker);
}

#[test]
fn store_answers_through_the_embedded_broker() {
    let broker = Broker::embedded();
    assert!(!broker.can_restart());
    contend(&broker);
}

#[test]
fn emulator_reconnects_after_a_broker_restart() {
    let mut broker = Broker::start();
    if !broker.can_restart() {
        eprintln!("skipped: the embedded broker cannot be restarted (mosquitto is not installed)");
        return;
    }
    let store = StoreEmulator::start(broker.addr());
    let mut a = Driver::connect(broker.addr(), "kit-r1");
    assert!(matches!(
        a.try_acquire("restart-lock"),
        lock::Event::Acquired { .. }
    ));
    let before = store.status().connections;
    broker.restart();
    assert!(
        store.wait_ready(before + 1, TIMEOUT),
        "the emulator did not reconnect; broker log:\n{}",
        broker.log()
    );
    // The store's contents survived the broker restart: the lock is still taken.
    let mut b = Driver::connect(broker.addr(), "kit-r2");
    assert!(matches!(
        b.try_acquire("restart-lock"),
        lock::Event::Busy { .. }
    ));
}

#[test]
fn stopped_broker_refuses_connections() {
    let mut broker = Broker::start();
    let addr = broker.addr();
    assert!(broker.is_running());
    broker.stop();
    assert!(!broker.is_running());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
