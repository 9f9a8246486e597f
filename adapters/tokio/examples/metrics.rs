//! `cargo run -p leasedlock-tokio --example metrics`: the driver's metrics, printed every second
//! while one client holds a lock and another keeps trying to take it. Zero setup: it starts the
//! test kit's embedded MQTT broker and the state-store emulator on it.
//!
//! ```text
//! cargo run -p leasedlock-tokio --example metrics                 # 5 seconds
//! cargo run -p leasedlock-tokio --example metrics -- --seconds 20
//! ```
//!
//! Each line is one snapshot of `Client::stats()`, under the names of the README's metrics
//! table; an application would hand the same numbers to its metrics exporter.
#![forbid(unsafe_code)]

use leasedlock_testkit::{Broker, StoreEmulator};
use leasedlock_tokio::leasedlock::lock::Options;
use leasedlock_tokio::{connect, Settings, Stats};
use std::time::Duration;

fn seconds() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(5),
        (Some("--seconds"), Some(n)) => n.parse().map_err(|_| format!("not a number: {n}")),
        _ => Err("usage: metrics [--seconds S]".into()),
    }
}

fn print(who: &str, s: &Stats) {
    println!(
        "{who}: locks_held={} hold.succeeded={} try_acquire.busy={} try_acquire.succeeded={} \
         requests_sent={} retries={} renewals={} renewal_slack_min={:?} wait_max={:?} \
         connections={} reconnects={} malformed_messages={}",
        s.locks_held,
        s.hold.succeeded,
        s.try_acquire.busy,
        s.try_acquire.succeeded,
        s.requests_sent,
        s.retries,
        s.renewals,
        s.renewal_slack_min,
        s.wait_max,
        s.connections,
        s.reconnects,
        s.malformed_messages,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = seconds()?;
    let broker = Broker::embedded();
    let _store = StoreEmulator::start(broker.addr());
    let port = broker.addr().port();
    let (leader, _leader_task) = connect(&Settings::new("127.0.0.1", port, "metrics-leader"))?;
    let (rival, _rival_task) = connect(&Settings::new("127.0.0.1", port, "metrics-rival"))?;
    let lease = Duration::from_secs(2);
    let hold = leader
        .hold(
            "metrics-lock",
            lease,
            Duration::from_millis(500),
            Options::default(),
        )
        .await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..seconds {
        // The rival tries now and then; the hold keeps the lock, so it is busy.
        rival
            .try_acquire("metrics-lock", lease, Options::default())
            .await?;
        tick.tick().await;
        print("leader", &leader.stats().await?);
        print("rival ", &rival.stats().await?);
    }
    hold.close().await?;
    print("leader", &leader.stats().await?);
    Ok(())
}
