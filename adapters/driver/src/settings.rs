//! What a driver needs to know: where the broker is, how to secure and authenticate the
//! connection, who we are, and how to reconnect — from code or from the environment variables of
//! the Azure IoT Operations SDKs.

use leasedlock::bytes::Bytes;
use leasedlock::{lock, mqtt};
use std::path::PathBuf;
use std::time::Duration;

/// The Authentication Method of Kubernetes service account tokens on the AIO broker.
pub const SAT_METHOD: &str = "K8S-SAT";

/// TLS to the broker (rustls with the ring provider; TLS 1.2 and 1.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) that sign the broker's certificate; `None` trusts the
    /// system's store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key for X.509 client authentication.
    pub client_certificate: Option<ClientCertificate>,
    /// The name the broker's certificate must carry (DNS name or IP address); `None` uses
    /// [`Settings::host`].
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// TLS trusting the CA certificates of a PEM file.
    pub fn with_ca_file(ca_file: impl Into<PathBuf>) -> Self {
        TlsSettings {
            ca_file: Some(ca_file.into()),
            ..TlsSettings::default()
        }
    }

    /// The same settings with a client certificate chain and its key (PEM files; the key in
    /// PKCS#8, PKCS#1 or SEC1 form, not encrypted).
    pub fn with_client_certificate(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some(ClientCertificate {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        });
        self
    }
}

/// A client certificate for X.509 authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (not encrypted).
    pub key_file: PathBuf,
}

/// Everything a driver needs to connect and run.
///
/// From code, starting from [`Settings::new`]'s defaults, or from the AIO SDK environment
/// variables with [`Settings::from_env`]:
///
/// ```
/// use leasedlock_driver::{Settings, TlsSettings};
/// use std::time::Duration;
///
/// let mut settings = Settings::new("aio-broker", 18883, "worker-1");
/// settings.tls = Some(TlsSettings::with_ca_file("/var/run/certs/ca.crt"));
/// settings.reconnect_max = Duration::from_secs(5);
/// let settings = settings.with_sat_file("/var/run/secrets/tokens/broker-sat");
/// assert_eq!(settings.lock.client_id, "worker-1");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// The lock engine's configuration; its `client_id` is also the MQTT client id.
    pub lock: lock::Config,
    /// MQTT session options (keep-alive, session expiry, credentials…); the client id is
    /// replaced by `lock.client_id`.
    pub mqtt: mqtt::Options,
    /// First delay before reconnecting after the transport broke.
    pub reconnect_min: Duration,
    /// Largest delay between two connection attempts.
    pub reconnect_max: Duration,
    /// Largest delay before reconnecting after a connection that did not last
    /// [`Settings::stable_connection`]: the broker gave the session to another connection with
    /// the same client id (DISCONNECT 0x8E,
    /// [`Disconnection::TakenOver`](crate::Disconnection::TakenOver), or the socket closed
    /// without one, as mosquitto 2.0 does), or it dropped the connection right after accepting
    /// it. The driver then waits `reconnect_max`, doubled for every such connection in a row up
    /// to this (each delay drawn from its upper half); only a stable connection resets it. Two
    /// clients with one id thus reconnect fewer and fewer times instead of taking the session
    /// from each other in a tight loop.
    pub takeover_backoff_max: Duration,
    /// How long an accepted connection must last before the reconnect backoffs start over
    /// (10 s by default): a CONNACK alone does not reset them.
    pub stable_connection: Duration,
    /// Seed of the engine (correlation ids, retry jitter) and of the reconnect jitter.
    pub seed: u64,
    /// TLS, or plain TCP when `None`.
    pub tls: Option<TlsSettings>,
    /// A Kubernetes service account token file: its contents are the Authentication Data of
    /// every CONNECT (method [`SAT_METHOD`], set by [`Settings::with_sat_file`]), and when they
    /// change the driver re-authenticates (AUTH 0x19) on the live connection.
    pub sat_file: Option<PathBuf>,
    /// How often the driver reads [`Settings::sat_file`] for a new token.
    pub sat_poll_interval: Duration,
}

impl Settings {
    /// Defaults for a broker address and a client id: keep-alive 10 s, reconnect after 50 ms
    /// doubling up to 2 s, a seed drawn from the client id and the wall clock.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        let client_id = client_id.into();
        let mut mqtt = mqtt::Options::new(client_id.clone());
        mqtt.keep_alive = Duration::from_secs(10);
        let seed = seed_for(&client_id);
        Settings {
            host: host.into(),
            port,
            lock: lock::Config::new(client_id),
            mqtt,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            takeover_backoff_max: Duration::from_secs(300),
            stable_connection: Duration::from_secs(10),
            seed,
            tls: None,
            sat_file: None,
            sat_poll_interval: Duration::from_secs(5),
        }
    }

    /// The same settings over TLS.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same settings with a user name and password in the CONNECT.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<Bytes>,
    ) -> Self {
        self.mqtt.username = Some(username.into());
        self.mqtt.password = Some(password.into());
        self
    }

    /// The same settings authenticating with the Kubernetes service account token in `path`
    /// (enhanced authentication, method [`SAT_METHOD`]), re-read every
    /// [`Settings::sat_poll_interval`].
    pub fn with_sat_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.mqtt.authentication_method = Some(SAT_METHOD.to_owned());
        self.sat_file = Some(path.into());
        self
    }

    /// The same settings with `suffix` appended to the client id (the MQTT client id and the
    /// lock holder's name). A process whose application already has an MQTT session under a
    /// client id gives the lock's own connection a distinct one this way: two connections with
    /// the same id take the session from each other (DISCONNECT 0x8E).
    /// [`Settings::from_env`] appends [`CLIENT_ID_SUFFIX`](crate::CLIENT_ID_SUFFIX) by default.
    ///
    /// ```
    /// use leasedlock_driver::Settings;
    ///
    /// let settings = Settings::new("aio-broker", 1883, "my-app").with_client_id_suffix("-lock");
    /// assert_eq!(settings.lock.client_id, "my-app-lock");
    /// ```
    pub fn with_client_id_suffix(mut self, suffix: &str) -> Self {
        self.lock.client_id.push_str(suffix);
        self.mqtt.client_id.clone_from(&self.lock.client_id);
        self
    }

    /// The same settings with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A seed drawn from a client id and the wall clock.
pub(crate) fn seed_for(client_id: &str) -> u64 {
    fnv1a(client_id.as_bytes()) ^ crate::clock::now().wall_ms
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
