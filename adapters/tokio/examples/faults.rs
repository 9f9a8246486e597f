//! Measures how the lock meets two faults against mosquitto, for RELIABILITY.md:
//!
//! - a silent broker (SIGSTOP): how long until the connection is given up, how long after
//!   SIGCONT until it is back and the hold has a token again;
//! - a partitioned holder (its proxy frozen): how long until it is told `Lost`, how long until
//!   another client holds the lock, and whether that other client ever held it while the first
//!   still had a token (a violation); after heal, how long until the first holds it again;
//! - a broker restart: how long after the new broker accepts TCP until the connection is back
//!   and the hold has a token again.
//!
//! ```text
//! cargo run -p leasedlock-tokio --example faults -- [rounds] [keep-alive secs] [secs between faults]
//! ```
#![allow(clippy::disallowed_methods)] // a measurement reads the clock

use leasedlock::lock::Options;
use leasedlock_testkit::{Broker, Proxy, StoreEmulator};
use leasedlock_tokio::{self as adapter, leasedlock, Client, ConnectionState, HoldEvent, Settings};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(2);

/// What every measurement shares.
struct Run {
    rounds: usize,
    keep_alive: Duration,
    /// How long a connection lasts after its recovery before the next fault.
    settle: Duration,
}

fn settings(port: u16, id: &str, keep_alive: Duration) -> Settings {
    let mut s = Settings::new("127.0.0.1", port, id);
    s.mqtt.keep_alive = keep_alive;
    s.mqtt.connect_timeout = Duration::from_secs(2);
    s.reconnect_max = Duration::from_millis(300);
    s
}

/// Waits for the next state `wanted` accepts.
async fn state_where(
    watch: &mut adapter::ConnectionWatch,
    wanted: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    loop {
        let state = watch.next().await.expect("the driver runs");
        if wanted(&state) {
            return state;
        }
    }
}

/// Waits until the hold has a lease again (renewed or re-acquired).
async fn held_again(hold: &mut adapter::Hold) {
    loop {
        match hold.next_event().await {
            Some(HoldEvent::Renewed(_) | HoldEvent::Acquired(_)) => return,
            Some(_) => {}
            None => panic!("the hold ended: {:?}", hold.error()),
        }
    }
}

/// min / median / max of some durations, in milliseconds.
fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(&d[0]),
        ms(&d[d.len() / 2]),
        ms(&d[d.len() - 1])
    )
}

/// A client of `broker` holding lock `id` (2 s lease renewed every 250 ms), and its
/// connection watch.
async fn holding_client(
    broker: &Broker,
    id: &str,
    keep_alive: Duration,
) -> (
    Client,
    tokio::task::JoinHandle<()>,
    adapter::ConnectionWatch,
    adapter::Hold,
) {
    let (client, task) =
        adapter::connect(&settings(broker.addr().port(), id, keep_alive)).expect("settings");
    client.connected().await.expect("connected");
    let watch = client.connection_state();
    let hold = client
        .hold(id, LEASE, LEASE / 8, Options::default())
        .await
        .expect("hold");
    (client, task, watch, hold)
}

async fn silent_broker(broker: &Broker, run: &Run) {
    let (_client, _task, mut watch, mut hold) =
        holding_client(broker, "silent", run.keep_alive).await;
    let (mut noticed, mut connected, mut held) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..run.rounds {
        broker.pause();
        let paused = Instant::now();
        state_where(&mut watch, |s| {
            matches!(s, ConnectionState::Disconnected(_))
        })
        .await;
        noticed.push(paused.elapsed());
        broker.resume();
        let resumed = Instant::now();
        state_where(&mut watch, |s| *s == ConnectionState::Connected).await;
        connected.push(resumed.elapsed());
        held_again(&mut hold).await;
        held.push(resumed.elapsed());
        // The connection settles before the next round.
        tokio::time::sleep(run.settle).await;
    }
    println!(
        "silent broker (SIGSTOP), a hold renewing every {:?}:",
        LEASE / 8
    );
    println!("  SIGSTOP -> connection given up:  {}", summary(noticed));
    println!("  SIGCONT -> connected:            {}", summary(connected));
    println!("  SIGCONT -> hold renewed/re-won:  {}", summary(held));
}

async fn restart(broker: &mut Broker, run: &Run) {
    let (_client, _task, mut watch, mut hold) =
        holding_client(broker, "restart", run.keep_alive).await;
    let (mut connected, mut held) = (Vec::new(), Vec::new());
    for _ in 0..run.rounds {
        // Blocks the runtime while mosquitto restarts: the times count from when it accepts TCP.
        broker.restart();
        let back = Instant::now();
        state_where(&mut watch, |s| {
            matches!(s, ConnectionState::Disconnected(_))
        })
        .await;
        state_where(&mut watch, |s| *s == ConnectionState::Connected).await;
        connected.push(back.elapsed());
        held_again(&mut hold).await;
        held.push(back.elapsed());
        tokio::time::sleep(run.settle).await;
    }
    println!(
        "broker restart (SIGKILL, new mosquitto on the port), reconnect backoff up to 300 ms:"
    );
    println!(
        "  broker back -> connected:           {}",
        summary(connected)
    );
    println!("  broker back -> hold renewed/re-won: {}", summary(held));
}

async fn partition(broker: &Broker, run: &Run) {
    let proxy = Proxy::start(broker.addr());
    let (a, _ta) = adapter::connect(&settings(proxy.addr().port(), "holder", run.keep_alive))
        .expect("settings");
    let (b, _tb) = adapter::connect(&settings(broker.addr().port(), "other", run.keep_alive))
        .expect("settings");
    let mut hold = a
        .hold("P", LEASE, LEASE / 4, Options::default())
        .await
        .expect("hold");
    let watch = hold.watch();
    let (mut told, mut taken, mut rejoined, mut violations) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..run.rounds {
        proxy.freeze();
        let frozen = Instant::now();
        let lost = async {
            loop {
                match hold.next_event().await {
                    Some(HoldEvent::Lost(_)) => return frozen.elapsed(),
                    Some(_) => {}
                    None => panic!("the hold ended"),
                }
            }
        };
        let won = async {
            b.acquire("P", LEASE, Options::default())
                .await
                .expect("b acquires");
            (frozen.elapsed(), watch.token().is_some())
        };
        let (lost, (won, overlap)) = tokio::join!(lost, won);
        told.push(lost);
        taken.push(won);
        violations += u32::from(overlap || lost > won);
        proxy.heal();
        let healed = Instant::now();
        release(&b).await;
        held_again(&mut hold).await;
        rejoined.push(healed.elapsed());
        tokio::time::sleep(run.settle).await;
    }
    println!("partitioned holder (proxy frozen), lease {LEASE:?}, the other client waiting:");
    println!("  freeze -> holder told Lost:      {}", summary(told));
    println!("  freeze -> other client holds:    {}", summary(taken));
    println!("  heal + release -> holder again:  {}", summary(rejoined));
    println!("  violations (other held while the holder had a token): {violations}");
}

async fn release(client: &Client) {
    assert!(client
        .release("P", Options::default())
        .await
        .expect("release"));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let keep_alive = Duration::from_secs(args.next().map_or(1, |a| a.parse().expect("seconds")));
    // By default a connection outlives the driver's stable_connection before the next fault, so
    // that each fault meets a fresh reconnect backoff.
    let stable = Settings::new("127.0.0.1", 1, "x").stable_connection;
    let settle = args
        .next()
        .map_or(stable + Duration::from_millis(500), |a| {
            Duration::from_secs_f64(a.parse().expect("seconds"))
        });
    let run = Run {
        rounds,
        keep_alive,
        settle,
    };
    println!("{rounds} rounds, keep-alive {keep_alive:?}, {settle:?} between faults");
    let mut broker = Broker::mosquitto();
    let _store = StoreEmulator::start(broker.addr());
    silent_broker(&broker, &run).await;
    partition(&broker, &run).await;
    restart(&mut broker, &run).await;
}
