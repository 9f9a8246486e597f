//! A runtime-free driver: [`Connection`] moved by a blocking `std::net::TcpStream` loop.
//!
//! ```text
//! statestore-emulator --broker 127.0.0.1:1883 &      # or an AIO broker with its state store
//! cargo run --example blocking -- --broker 127.0.0.1:1883
//! ```
//!
//! Holds a lock through two renewals (printing each fencing token), releases it, then increments
//! a counter key under the lock with `edit` (the write carries the fencing token). Exits 0 when
//! all of that worked, 1 on any failure (2 on bad arguments); everything is bounded by a 30 s
//! deadline, so it doubles as a smoke test of a broker + state store.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // the example is the driver: it reads the clocks

use leasedlock::bytes::Bytes;
use leasedlock::connection::{Connection, Event};
use leasedlock::lock::{
    Config, EditAction, EditOutcome, Event as LockEvent, Intent, LockId, Options,
};
use leasedlock::{mqtt, FencingToken, Now};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LEASE: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(30);

fn now() -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now::new(Instant::now(), wall)
}

/// The connection, its socket, and the overall deadline.
struct Driver {
    conn: Connection,
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Driver {
    /// Writes everything the connection has to send.
    fn flush(&mut self) -> Result<(), String> {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream
                .write_all(&bytes)
                .map_err(|e| format!("write failed: {e}"))?;
        }
        Ok(())
    }

    /// Moves bytes, time and events until `want` returns `Some`; every event is offered to it.
    fn until<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&mut Connection, Event) -> Result<Option<T>, String>,
    ) -> Result<T, String> {
        loop {
            self.flush()?;
            while let Some(event) = self.conn.poll_event() {
                if let Event::Disconnected(cause) = &event {
                    return Err(format!("disconnected while waiting for {what}: {cause:?}"));
                }
                if let Some(t) = want(&mut self.conn, event)? {
                    self.flush()?;
                    return Ok(t);
                }
            }
            // Handling the events may have issued intents (`complete_edit` above): send their
            // requests before sleeping.
            self.flush()?;
            let left = self
                .deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| format!("timed out waiting for {what}"))?;
            // Sleep until the next deadline of the connection or until bytes arrive.
            let wait = self
                .conn
                .poll_timeout()
                .map_or(left, |t| t.saturating_duration_since(Instant::now()))
                .clamp(Duration::from_millis(1), left.max(Duration::from_millis(1)));
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(n) => self.conn.handle_bytes(now(), &self.buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.conn.handle_timeout(now())
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

fn main() -> ExitCode {
    let mut broker = "127.0.0.1:1883".to_owned();
    let mut lock_name = "blocking-example-lock".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--broker", Some(b)) => broker = b,
            ("--lock", Some(l)) => lock_name = l,
            _ => {
                eprintln!("usage: blocking [--broker host:port] [--lock NAME]");
                return ExitCode::from(2);
            }
        }
    }
    match run(&broker, &lock_name) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("blocking example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(broker: &str, lock_name: &str) -> Result<(), String> {
    let client_id = format!("blocking-{}", std::process::id());
    let stream = TcpStream::connect(broker).map_err(|e| format!("connect to {broker}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let conn = Connection::new(
        Config::new(&client_id),
        mqtt::Options::new(&client_id),
        now(),
        u64::from(std::process::id()),
    )
    .map_err(|e| e.to_string())?;
    let mut d = Driver {
        conn,
        stream,
        buf: vec![0; 64 * 1024],
        deadline: Instant::now() + DEADLINE,
    };
    d.conn.connect(now());
    d.until("the CONNACK", |_, e| match e {
        Event::Connected { .. } => Ok(Some(())),
        Event::ConnectFailed(reason) => Err(format!("the broker refused us: {reason:?}")),
        _ => Ok(None),
    })?;
    println!("connected to {broker} as {client_id}");

    let lock = d.conn.lock_id(lock_name).map_err(|e| e.to_string())?;
    hold_and_release(&mut d, lock)?;
    increment_counter(&mut d, lock, &format!("{lock_name}-counter"))?;

    d.conn.disconnect(now());
    d.flush()
}

/// Holds the lock through two renewals (each token strictly newer), then releases it.
fn hold_and_release(d: &mut Driver, lock: LockId) -> Result<(), String> {
    let hold = d
        .conn
        .start(
            now(),
            lock,
            Intent::Hold {
                lease: LEASE,
                interval: RENEW_EVERY,
            },
            Options::default(),
        )
        .map_err(|e| e.to_string())?;
    let mut last: Option<FencingToken> = None;
    let mut renewals = 0;
    d.until("two renewals", |_, e| match e {
        Event::Lock(LockEvent::Acquired { op, token, .. }) if op == hold => {
            println!("acquired, fencing token {token}");
            last = Some(token);
            Ok(None)
        }
        Event::Lock(LockEvent::Renewed { op, token, .. }) if op == hold => {
            if last.as_ref().is_some_and(|t| token <= *t) {
                return Err(format!("renewal token {token} is not newer"));
            }
            renewals += 1;
            println!("renewed ({renewals}), fencing token {token}");
            last = Some(token);
            Ok((renewals == 2).then_some(()))
        }
        Event::Lock(LockEvent::Lost { reason, .. }) => Err(format!("lease lost: {reason:?}")),
        Event::Lock(LockEvent::Failed { error, .. }) => Err(format!("hold failed: {error}")),
        _ => Ok(None),
    })?;
    let release = d
        .conn
        .start(now(), lock, Intent::CloseHold, Options::default())
        .map_err(|e| e.to_string())?;
    d.until("the release", |_, e| match e {
        Event::Lock(LockEvent::Released { op, was_held, .. }) if op == release => {
            if was_held {
                println!("released");
                Ok(Some(()))
            } else {
                Err("the store no longer had our lease when we released it".into())
            }
        }
        Event::Lock(LockEvent::Failed { error, .. }) => Err(format!("release failed: {error}")),
        _ => Ok(None),
    })
}

/// Increments the decimal counter at `key` under the lock (absent counts as 0).
fn increment_counter(d: &mut Driver, lock: LockId, key: &str) -> Result<(), String> {
    let edit = d
        .conn
        .start(
            now(),
            lock,
            Intent::Edit {
                key: Bytes::copy_from_slice(key.as_bytes()),
                lease: LEASE,
            },
            Options::default(),
        )
        .map_err(|e| e.to_string())?;
    d.until("the edit", |conn, e| match e {
        Event::Lock(LockEvent::EditRequested { op, current, .. }) if op == edit => {
            let old = match &current {
                None => 0,
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("{key} holds {v:?}, not a counter"))?,
            };
            println!("counter {key}: {old} -> {}", old + 1);
            let new = Bytes::from((old + 1).to_string());
            conn.complete_edit(now(), op, EditAction::Set(new))
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Event::Lock(LockEvent::EditDone { op, outcome, .. }) if op == edit => {
            if outcome == EditOutcome::Written {
                println!("counter written with the fencing token, lock released");
                Ok(Some(()))
            } else {
                Err(format!("edit ended with {outcome:?}"))
            }
        }
        Event::Lock(LockEvent::Failed { error, .. }) => Err(format!("edit failed: {error}")),
        _ => Ok(None),
    })
}
