//! Secured connections, run by every adapter: mosquitto with a TLS or password listener (the test
//! kit's [`Broker::builder`]), certificates generated at run time ([`TestPki`]), the state-store
//! emulator on the broker's plain listener, and a lock client through the adapter on the secured
//! one. Included next to `scenarios.rs`; expand `secure_scenarios!(RtType)`.

use crate::adapter::leasedlock::lock::Options;
use crate::adapter::leasedlock::mqtt::ConnectReason;
use crate::adapter::{Client, Error, Settings, TlsSettings};
use crate::scenarios::{within, Rt};
use leasedlock_testkit::{Broker, BrokerTls, StoreEmulator, TestPki};
use std::time::Duration;

/// A broker with a secured listener and the store emulator; the PKI lives as long as they do.
pub struct SecureEnv {
    pub pki: TestPki,
    broker: Broker,
    _store: StoreEmulator,
}

impl SecureEnv {
    /// `configure` gets a builder and the freshly generated PKI.
    pub fn start(
        configure: impl FnOnce(
            leasedlock_testkit::BrokerBuilder,
            &TestPki,
        ) -> leasedlock_testkit::BrokerBuilder,
    ) -> SecureEnv {
        let pki = TestPki::generate();
        let broker = configure(Broker::builder(), &pki).start();
        let store = StoreEmulator::start(broker.addr());
        SecureEnv {
            pki,
            broker,
            _store: store,
        }
    }

    /// Settings for the secured listener, reached as `host` (TLS checks the name against the
    /// broker's certificate).
    pub fn settings(&self, host: &str, name: &str) -> Settings {
        let port = self
            .broker
            .secure_addr()
            .expect("a secured listener")
            .port();
        Settings::new(host, port, format!("secure-{name}-{}", std::process::id()))
    }

    pub fn broker_tls(pki: &TestPki) -> BrokerTls {
        BrokerTls {
            ca_file: pki.ca_file(),
            cert_file: pki.server_cert_file(),
            key_file: pki.server_key_file(),
        }
    }

    pub fn log(&self) -> String {
        self.broker.log()
    }
}

/// Connects, waits for the CONNACK, and takes and releases a lock through the store emulator.
async fn connect_and_lock<R: Rt>(env: &SecureEnv, settings: &Settings) -> (Client, R::Task) {
    let (client, task) = R::connect(settings);
    let connected = within::<R, _>(client.connected()).await;
    assert_eq!(connected, Ok(()), "broker log:\n{}", env.log());
    let lease = within::<R, _>(client.try_acquire(
        "secure-lock",
        Duration::from_secs(10),
        Options::default(),
    ))
    .await
    .unwrap();
    assert!(lease.is_some());
    assert!(
        within::<R, _>(client.release("secure-lock", Options::default()))
            .await
            .unwrap()
    );
    (client, task)
}

/// TLS with the broker's CA; the server name checked is the IP address, then a DNS name.
pub async fn tls_with_ca<R: Rt>() {
    let env = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)));
    let tls = TlsSettings::with_ca_file(env.pki.ca_file());
    connect_and_lock::<R>(&env, &env.settings("127.0.0.1", "ip").with_tls(tls.clone())).await;
    connect_and_lock::<R>(&env, &env.settings("localhost", "dns").with_tls(tls)).await;
}

/// A certificate not signed by the trusted CA is refused by the TLS handshake.
pub async fn tls_with_a_foreign_ca_is_refused<R: Rt>() {
    let env = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)));
    let other = TestPki::generate();
    let settings = env
        .settings("127.0.0.1", "foreign")
        .with_tls(TlsSettings::with_ca_file(other.ca_file()));
    let (client, _task) = R::connect(&settings);
    let outcome = within::<R, _>(client.connected()).await;
    assert!(
        matches!(outcome, Err(Error::Transport { .. })),
        "{outcome:?}"
    );
}

/// X.509 client authentication: mosquitto with `require_certificate true`.
pub async fn tls_with_client_certificate<R: Rt>() {
    let env = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)).require_certificate());
    let tls = TlsSettings::with_ca_file(env.pki.ca_file())
        .with_client_certificate(env.pki.client_cert_file(), env.pki.client_key_file());
    connect_and_lock::<R>(&env, &env.settings("127.0.0.1", "cert").with_tls(tls)).await;

    // Without a certificate the broker ends the handshake (TLS 1.3: after it, at the first read).
    let settings = env
        .settings("127.0.0.1", "nocert")
        .with_tls(TlsSettings::with_ca_file(env.pki.ca_file()));
    let (client, _task) = R::connect(&settings);
    let outcome = within::<R, _>(client.connected()).await;
    assert!(
        matches!(
            outcome,
            Err(Error::Transport { .. } | Error::NotAccepted(_))
        ),
        "{outcome:?}"
    );
}

/// User name and password; a wrong password is refused by the CONNACK (mosquitto 2.0 says 0x87
/// not authorized, later versions 0x86 bad user name or password).
pub async fn password<R: Rt>() {
    let env = SecureEnv::start(|b, _| b.user("alice", "s3cret"));
    let settings = env
        .settings("127.0.0.1", "alice")
        .with_credentials("alice", "s3cret");
    connect_and_lock::<R>(&env, &settings).await;

    let wrong = env
        .settings("127.0.0.1", "mallory")
        .with_credentials("alice", "guess");
    let (client, _task) = R::connect(&wrong);
    let outcome = within::<R, _>(client.connected()).await;
    assert!(
        matches!(
            outcome,
            Err(Error::Refused(
                ConnectReason::BadUserNameOrPassword | ConnectReason::NotAuthorized
            ))
        ),
        "{outcome:?}"
    );
}

/// Password and TLS together.
pub async fn password_over_tls<R: Rt>() {
    let env = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)).user("bob", "pw"));
    let settings = env
        .settings("localhost", "bob")
        .with_tls(TlsSettings::with_ca_file(env.pki.ca_file()))
        .with_credentials("bob", "pw");
    connect_and_lock::<R>(&env, &settings).await;
}

#[macro_export]
macro_rules! secure_scenarios {
    ($rt:ty) => {
        $crate::secure_scenarios!(@each $rt;
            tls_with_ca,
            tls_with_a_foreign_ca_is_refused,
            tls_with_client_certificate,
            password,
            password_over_tls,
        );
    };
    (@each $rt:ty; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                <$rt as $crate::scenarios::Rt>::block_on($crate::secure::$name::<$rt>());
            }
        )*
    };
}
