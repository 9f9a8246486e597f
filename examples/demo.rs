//! `cargo run --example demo`: N workers contend for one lock for a few seconds, zero setup.
//!
//! Starts an in-process MQTT v5 broker (the test kit's embedded broker) and the state-store
//! emulator on it, then runs N workers (default 4) on the tokio adapter. Each worker
//!
//! - increments a shared counter under the lock `demo-lock` with `edit` (acquire, read, write with
//!   the fencing token, release), as often as it can, and
//! - takes turns at leadership: `hold`s the lock `demo-leader` through a few renewals, then steps
//!   down.
//!
//! It prints progress every second and a summary at the end: increments, leader terms and
//! renewals per worker, the lock handoff latency, and whether the counter equals the number of
//! increments (no lost update).
//!
//! ```text
//! cargo run --example demo                                  # everything in-process
//! cargo run --example demo -- --workers 8 --seconds 10
//! cargo run --example demo -- --broker 127.0.0.1:1883       # an external broker, with
//!                                                           # statestore-emulator (or AIO) on it
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // the example is a driver: it reads the clocks

use leasedlock::bytes::Bytes;
use leasedlock::lock::{EditAction, EditOutcome, Options};
use leasedlock_testkit::{Broker, StoreEmulator};
use leasedlock_tokio::{connect, Client, HoldEvent, Settings};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EDIT_LEASE: Duration = Duration::from_secs(2);
const LEADER_LEASE: Duration = Duration::from_millis(1500);
const LEADER_RENEW: Duration = Duration::from_millis(300);
/// Renewals a leader sits through before it steps down.
const TERM_RENEWALS: u32 = 3;

struct Args {
    broker: Option<String>,
    workers: usize,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        broker: None,
        workers: 4,
        seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--broker" => args.broker = Some(value()?),
            "--workers" => {
                args.workers = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--workers needs a positive number")?;
            }
            "--seconds" => {
                args.seconds = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--seconds needs a positive number")?;
            }
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}\nusage: demo [--broker host:port] [--workers N] [--seconds S]"
                ))
            }
        }
    }
    Ok(args)
}

/// What one worker did.
#[derive(Clone, Debug, Default)]
struct WorkerStats {
    acquisitions: u64,
    increments: u64,
    failures: u64,
    terms: u64,
    renewals: u64,
}

/// Shared by all workers: per-worker stats and the handoff timeline.
#[derive(Default)]
struct Board {
    workers: Vec<WorkerStats>,
    /// Who last held `demo-lock`, and when it decided its write (its edit closure returned).
    last_write: Option<(usize, Instant)>,
    /// Handoff latencies between different workers.
    handoffs: Vec<Duration>,
}

type Shared = Arc<Mutex<Board>>;

fn board(shared: &Shared) -> std::sync::MutexGuard<'_, Board> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // In-process broker and state store unless an external broker is given.
    let (addr, _broker, _store) = match &args.broker {
        Some(b) => match b.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(addr) => {
                println!("using the broker at {addr} (a state store must be serving on it)");
                (addr, None, None)
            }
            None => {
                eprintln!("cannot resolve {b}");
                return ExitCode::from(2);
            }
        },
        None => {
            let broker = Broker::embedded();
            let store = StoreEmulator::start(broker.addr());
            println!(
                "embedded MQTT broker on {}, state-store emulator connected",
                broker.addr()
            );
            (broker.addr(), Some(broker), Some(store))
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(addr, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(addr: SocketAddr, args: &Args) -> Result<(), String> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // A fresh counter key per run, so an external store's leftovers do not matter.
    let counter_key = format!("demo-counter-{}-{wall}", std::process::id());
    let shared: Shared = Arc::new(Mutex::new(Board {
        workers: vec![WorkerStats::default(); args.workers],
        ..Board::default()
    }));
    let mut clients = Vec::new();
    for i in 0..args.workers {
        let settings = Settings::new(
            addr.ip().to_string(),
            addr.port(),
            format!("demo-{}-w{i}", std::process::id()),
        );
        let (client, _task) = connect(&settings).map_err(|e| e.to_string())?;
        clients.push(client);
    }
    println!(
        "{} workers, {} s: incrementing {counter_key:?} under \"demo-lock\", taking turns at \"demo-leader\"",
        args.workers, args.seconds
    );
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        tasks.push(tokio::spawn(counter_worker(
            i,
            client.clone(),
            counter_key.clone(),
            shared.clone(),
            end,
        )));
        tasks.push(tokio::spawn(leader_worker(
            i,
            client.clone(),
            shared.clone(),
            end,
        )));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < end {
        tick.tick().await;
        let b = board(&shared);
        let per: Vec<String> = b.workers.iter().map(|w| w.increments.to_string()).collect();
        println!(
            "  t={:>3.0}s  increments {:>6}  per worker [{}]",
            start.elapsed().as_secs_f64(),
            b.workers.iter().map(|w| w.increments).sum::<u64>(),
            per.join(" ")
        );
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let final_value = read_counter(&clients[0], &counter_key).await?;
    let b = board(&shared);
    summary(&b, final_value)
}

/// Increments the counter under `demo-lock` until `end`.
async fn counter_worker(i: usize, client: Client, key: String, shared: Shared, end: Instant) {
    while Instant::now() < end {
        let s = shared.clone();
        let result = client
            .edit(
                "demo-lock",
                &key,
                EDIT_LEASE,
                Options::default().with_timeout(Duration::from_secs(10)),
                |current| async move {
                    let now = Instant::now();
                    let mut b = board(&s);
                    b.workers[i].acquisitions += 1;
                    if let Some((prev, at)) = b.last_write {
                        if prev != i {
                            b.handoffs.push(now - at);
                        }
                    }
                    let old = current
                        .as_deref()
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    b.last_write = Some((i, Instant::now()));
                    EditAction::Set(Bytes::from((old + 1).to_string()))
                },
            )
            .await;
        let mut b = board(&shared);
        match result {
            Ok(EditOutcome::Written) => b.workers[i].increments += 1,
            Ok(_) | Err(_) => b.workers[i].failures += 1,
        }
    }
}

/// Takes turns at `demo-leader`: hold through a few renewals, step down, try again.
async fn leader_worker(i: usize, client: Client, shared: Shared, end: Instant) {
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let options = Options::default().with_timeout(left.max(Duration::from_millis(10)));
        let Ok(mut hold) = client
            .hold("demo-leader", LEADER_LEASE, LEADER_RENEW, options)
            .await
        else {
            continue;
        };
        board(&shared).workers[i].terms += 1;
        let mut renewals = 0;
        while renewals < TERM_RENEWALS && Instant::now() < end {
            match hold.next_event().await {
                Some(HoldEvent::Renewed(_)) => {
                    renewals += 1;
                    board(&shared).workers[i].renewals += 1;
                }
                Some(HoldEvent::Acquired(_)) => board(&shared).workers[i].terms += 1,
                Some(_) => {} // lost: the hold takes the lock again
                None => break,
            }
        }
        let _ = hold.close().await;
        // Give the others a chance at the next term.
        tokio::time::sleep(LEADER_RENEW).await;
    }
}

/// The counter's value (read under the lock, nothing written).
async fn read_counter(client: &Client, key: &str) -> Result<u64, String> {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    client
        .edit(
            "demo-lock",
            key,
            EDIT_LEASE,
            Options::default(),
            |current| async move {
                *s.lock().unwrap_or_else(|e| e.into_inner()) = current;
                EditAction::Abort
            },
        )
        .await
        .map_err(|e| format!("reading the counter: {e}"))?;
    let value = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok(value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(b: &Board, final_value: u64) -> Result<(), String> {
    println!();
    println!("worker  acquisitions  increments  failed  leader terms  renewals");
    for (i, w) in b.workers.iter().enumerate() {
        println!(
            "w{i:<5}  {:>12}  {:>10}  {:>6}  {:>12}  {:>8}",
            w.acquisitions, w.increments, w.failures, w.terms, w.renewals
        );
    }
    let sum = |f: fn(&WorkerStats) -> u64| b.workers.iter().map(f).sum::<u64>();
    let total = sum(|w| w.increments);
    println!(
        "total   {:>12}  {total:>10}  {:>6}  {:>12}  {:>8}",
        sum(|w| w.acquisitions),
        sum(|w| w.failures),
        sum(|w| w.terms),
        sum(|w| w.renewals)
    );
    let mut h = b.handoffs.clone();
    h.sort();
    println!();
    println!(
        "handoff latency between workers: p50 {:.2} ms, p99 {:.2} ms over {} handoffs",
        percentile(&h, 50.0).as_secs_f64() * 1e3,
        percentile(&h, 99.0).as_secs_f64() * 1e3,
        h.len()
    );
    println!(
        "  (from the previous holder's write decision to the next holder's read: its fenced SET and\n   \
         VDEL, the DELETE notification, the winner's SET NEX, GET and edit fence)"
    );
    let failures = sum(|w| w.failures);
    println!("final counter = {final_value}, expected {total} (successful increments)");
    if final_value == total {
        println!("ok: no increment was lost or duplicated");
        Ok(())
    } else if failures > 0 && final_value >= total && final_value <= total + failures {
        println!(
            "ok: {failures} failed edits may have been applied (outcome unknown), the rest match"
        );
        Ok(())
    } else {
        Err(format!(
            "the counter is {final_value} but {total} increments succeeded"
        ))
    }
}
