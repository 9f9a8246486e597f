//! Secured connections, run by every adapter: mosquitto with a TLS or password listener (the test
//! kit's [`Broker::builder`]), certificates generated at run time ([`TestPki`]), the state-store
//! emulator on the broker's plain listener, and a lock client through the adapter on the secured
//! one. Included next to `scenarios.rs`; expand `secure_scenarios!(RtType)`.

use crate::adapter::leasedlock::lock::Options;
use crate::adapter::leasedlock::mqtt::ConnectReason;
use crate::adapter::{Client, Error, Settings, TlsSettings};
use crate::scenarios::{within, Rt};
use leasedlock_testkit::{
    Broker, BrokerTls, StoreEmulator, TestPki, MOSQUITTO, REQUIRE_MOSQUITTO_ENV,
};
use std::time::Duration;

/// A broker with a secured listener and the store emulator; the PKI lives as long as they do.
pub struct SecureEnv {
    pub pki: TestPki,
    broker: Broker,
    _store: StoreEmulator,
}

impl SecureEnv {
    /// `configure` gets a builder and the freshly generated PKI. `None` (the test is skipped)
    /// when mosquitto is not installed, unless `LEASEDLOCK_REQUIRE_MOSQUITTO=1`.
    pub fn start(
        configure: impl FnOnce(
            leasedlock_testkit::BrokerBuilder,
            &TestPki,
        ) -> leasedlock_testkit::BrokerBuilder,
    ) -> Option<SecureEnv> {
        let required = std::env::var(REQUIRE_MOSQUITTO_ENV).as_deref() == Ok("1");
        if !std::path::Path::new(MOSQUITTO).exists() && !required {
            eprintln!("{MOSQUITTO} not found: secured-connection test skipped");
            return None;
        }
        let pki = TestPki::generate();
        let broker = configure(Broker::builder(), &pki).start();
        let store = StoreEmulator::start(broker.addr());
        Some(SecureEnv {
            pki,
            broker,
            _store: store,
        })
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
    let Some(env) = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki))) else {
        return;
    };
    let tls = TlsSettings::with_ca_file(env.pki.ca_file());
    connect_and_lock::<R>(&env, &env.settings("127.0.0.1", "ip").with_tls(tls.clone())).await;
    connect_and_lock::<R>(&env, &env.settings("localhost", "dns").with_tls(tls)).await;
}

/// A certificate not signed by the trusted CA is refused by the TLS handshake.
pub async fn tls_with_a_foreign_ca_is_refused<R: Rt>() {
    let Some(env) = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki))) else {
        return;
    };
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
    let Some(env) =
        SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)).require_certificate())
    else {
        return;
    };
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
    let Some(env) = SecureEnv::start(|b, _| b.user("alice", "s3cret")) else {
        return;
    };
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
    let Some(env) = SecureEnv::start(|b, pki| b.tls(SecureEnv::broker_tls(pki)).user("bob", "pw"))
    else {
        return;
    };
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
            sat_reauthentication,
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

/// A fake broker on a loopback port that speaks just enough MQTT for enhanced authentication:
/// it accepts every CONNECT, answers PINGREQ, and reports CONNECT and AUTH packets (their first
/// byte and body) on a channel; the test answers through the connection it is handed.
mod fake_broker {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    /// A packet received: the connection it came on, its first byte and its body.
    pub type Received = (TcpStream, u8, Vec<u8>);

    pub fn start() -> (u16, mpsc::Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, tx));
            }
        });
        (port, rx)
    }

    fn serve(mut stream: TcpStream, tx: mpsc::Sender<Received>) {
        while let Some((first, body)) = read_packet(&mut stream) {
            match first >> 4 {
                1 => {
                    let _ = stream.write_all(&[0x20, 0x03, 0, 0, 0]);
                    let _ = tx.send((stream.try_clone().unwrap(), first, body));
                }
                12 => {
                    let _ = stream.write_all(&[0xD0, 0x00]);
                }
                15 => {
                    let _ = tx.send((stream.try_clone().unwrap(), first, body));
                }
                _ => {}
            }
        }
    }

    fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).ok()?;
        let first = byte[0];
        let (mut len, mut shift) = (0usize, 0);
        loop {
            stream.read_exact(&mut byte).ok()?;
            len |= usize::from(byte[0] & 0x7F) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).ok()?;
        Some((first, body))
    }

    /// Whether `body` holds the Authentication Data property with `data`.
    pub fn has_auth_data(body: &[u8], data: &[u8]) -> bool {
        let mut property = vec![0x16, 0, data.len() as u8];
        property.extend_from_slice(data);
        body.windows(property.len()).any(|w| w == property)
    }

    /// AUTH 0x00 (success) with the K8S-SAT method.
    pub const AUTH_SUCCESS: [u8; 14] = [
        0xF0, 0x0C, 0x00, 0x0A, 0x15, 0x00, 0x07, b'K', b'8', b'S', b'-', b'S', b'A', b'T',
    ];
}

/// K8S-SAT: the token file's contents go in the CONNECT; when the file changes the driver
/// re-authenticates (AUTH 0x19) with the new token; a refused re-authentication (DISCONNECT 0x87)
/// leads to a new CONNECT that carries the newest token.
pub async fn sat_reauthentication<R: Rt>() {
    use std::io::Write;
    let (port, packets) = fake_broker::start();
    let token_file = std::env::temp_dir().join(format!(
        "leasedlock-sat-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    // Kubernetes swaps a projected token file atomically; so does the test (write, then rename).
    let replace_token = |token: &[u8]| {
        let staged = token_file.with_extension("new");
        std::fs::write(&staged, token).unwrap();
        std::fs::rename(&staged, &token_file).unwrap();
    };
    replace_token(b"token-1");
    let mut settings = Settings::new("127.0.0.1", port, "sat-client").with_sat_file(&token_file);
    settings.sat_poll_interval = Duration::from_millis(50);
    let (client, _task) = R::connect(&settings);
    assert_eq!(within::<R, _>(client.connected()).await, Ok(()));

    // Waits (off the runtime's threads) for the next packet of the fake broker.
    let next = |packets: std::sync::mpsc::Receiver<fake_broker::Received>| async {
        R::unblock(move || {
            let got = packets
                .recv_timeout(crate::scenarios::WAIT)
                .expect("a packet in time");
            (got, packets)
        })
        .await
    };
    let ((_, first, connect), packets) = next(packets).await;
    assert_eq!(first, 0x10);
    assert!(fake_broker::has_auth_data(&connect, b"token-1"));

    replace_token(b"token-2");
    let ((mut conn, first, auth), packets) = next(packets).await;
    assert_eq!((first, auth[0]), (0xF0, 0x19), "AUTH re-authenticate");
    assert!(fake_broker::has_auth_data(&auth, b"token-2"));
    conn.write_all(&fake_broker::AUTH_SUCCESS).unwrap();

    replace_token(b"token-3");
    let ((mut conn, first, auth), packets) = next(packets).await;
    assert_eq!((first, auth[0]), (0xF0, 0x19));
    assert!(fake_broker::has_auth_data(&auth, b"token-3"));
    conn.write_all(&[0xE0, 0x01, 0x87]).unwrap(); // DISCONNECT: not authorized

    let ((_, first, connect), _packets) = next(packets).await;
    assert_eq!(first, 0x10, "a new CONNECT after the refusal");
    assert!(fake_broker::has_auth_data(&connect, b"token-3"));
    let _ = std::fs::remove_file(&token_file);
}
