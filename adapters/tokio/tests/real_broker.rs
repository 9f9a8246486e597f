//! The shared real-broker scenarios through the tokio adapter.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_tokio as adapter;

#[path = "../../tests-common/scenarios.rs"]
#[macro_use]
mod scenarios;

#[path = "../../tests-common/secure.rs"]
#[macro_use]
mod secure;

use adapter::{Client, Settings};

/// A current-thread tokio runtime per test; drivers are tasks on it.
enum Tokio {}

impl scenarios::Rt for Tokio {
    type Task = tokio::task::JoinHandle<()>;

    tokio_rt!();

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        adapter::connect(settings).unwrap()
    }

    async fn kill(task: Self::Task) {
        task.abort();
        let _ = task.await;
    }
}

scenarios!(Tokio);

mod secured {
    secure_scenarios!(super::Tokio);
}

/// A peer that accepts TCP and never answers the TLS handshake: the attempt is given up at the
/// connect timeout and reported, instead of hanging the driver for ever.
#[test]
fn a_tls_handshake_that_never_ends_times_out() {
    use adapter::{Error, TlsSettings};
    use std::time::Duration;
    let pki = leasedlock_testkit::TestPki::generate();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    let mut settings = Settings::new("127.0.0.1", port, "handshake-timeout")
        .with_tls(TlsSettings::with_ca_file(pki.ca_file()));
    settings.mqtt.connect_timeout = Duration::from_millis(300);
    <Tokio as scenarios::Rt>::block_on(async move {
        let (client, _task) = <Tokio as scenarios::Rt>::connect(&settings);
        let outcome = scenarios::within::<Tokio, _>(client.connected()).await;
        assert!(
            matches!(
                outcome,
                Err(Error::Transport {
                    kind: std::io::ErrorKind::TimedOut,
                    ..
                })
            ),
            "{outcome:?}"
        );
    });
    drop(held);
}
