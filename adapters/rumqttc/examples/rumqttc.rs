//! The lock over an application's own rumqttc connection: the application polls its event loop
//! and hands every result to the lock's [`Feed`](leasedlock_rumqttc::Feed).
//!
//! ```text
//! statestore-emulator --broker 127.0.0.1:1883 &
//! cargo run -p leasedlock-rumqttc --example rumqttc -- --broker 127.0.0.1:1883
//! ```
//!
//! Acquires a lock, prints the token, releases it, then increments a counter under the lock
//! with `edit`. Exits 0 on success, 1 on any failure.
#![forbid(unsafe_code)]

use leasedlock_rumqttc::leasedlock::bytes::Bytes;
use leasedlock_rumqttc::leasedlock::lock::{Config, EditAction, Options};
use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttc::NetworkOptions;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let broker = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => "127.0.0.1:1883".to_owned(),
        [flag, broker] if flag == "--broker" => broker.clone(),
        _ => {
            eprintln!("usage: rumqttc [--broker host:port]");
            return ExitCode::from(2);
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), run(&broker)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("rumqttc example failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("rumqttc example timed out");
            ExitCode::FAILURE
        }
    }
}

async fn run(broker: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (host, port) = broker.rsplit_once(':').ok_or("--broker is host:port")?;
    let client_id = format!("rumqttc-example-{}", std::process::id());
    let mut options = MqttOptions::new(&client_id, host, port.parse()?);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true); // rumqttc leaves Nagle on: ~40 ms per request
    options.set_network_options(network);
    let (mqtt, mut eventloop) = AsyncClient::new(options, 64);
    let (lock, feed, _task) = leasedlock_rumqttc::attach(Config::new(&client_id), mqtt.clone())?;
    // The application's event loop: everything it yields also goes to the lock.
    tokio::spawn(async move {
        loop {
            let polled = eventloop.poll().await;
            feed.handle(&polled);
            if polled.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    let lease = Duration::from_secs(5);
    let won = lock
        .acquire("rumqttc-example-lock", lease, Options::default())
        .await?;
    println!("acquired, fencing token {}", won.token);
    lock.release("rumqttc-example-lock", Options::default())
        .await?;
    lock.edit(
        "rumqttc-example-lock",
        "rumqttc-example-counter",
        lease,
        Options::default(),
        |v: Option<Bytes>| async move {
            let n: u64 = v
                .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
                .unwrap_or(0);
            println!("counter: {n} -> {}", n + 1);
            EditAction::Set(Bytes::from((n + 1).to_string()))
        },
    )
    .await?;
    println!("counter written with the fencing token, lock released");
    mqtt.disconnect().await?;
    Ok(())
}
