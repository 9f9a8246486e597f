//! [`Broker`]: an MQTT v5 broker on a free loopback port for tests — mosquitto when installed,
//! else the embedded broker of [`crate::embedded`].

use crate::embedded::EmbeddedBroker;
use rustix::process::{kill_process, Pid, Signal};
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Where mosquitto is looked for (the Debian package installs it there).
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Set to `1` to make a missing mosquitto an error instead of a fallback to the embedded broker
/// (CI sets it).
pub const REQUIRE_MOSQUITTO_ENV: &str = "LEASEDLOCK_REQUIRE_MOSQUITTO";

/// How long a broker may take to accept TCP after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// An MQTT v5 broker listening on `127.0.0.1` on a free port, stopped when dropped.
///
/// [`Broker::start`] runs mosquitto ([`MOSQUITTO`]) with a generated configuration:
///
/// ```text
/// listener <port> 127.0.0.1
/// allow_anonymous true
/// set_tcp_nodelay true
/// persistence false
/// log_dest file <dir>/mosquitto.log
/// log_dest topic
/// ```
///
/// `log_dest topic` publishes the broker's log on `$SYS/broker/log/<level>`; the state-store
/// emulator reads "Client X disconnected" (notice) and "Client X already connected, closing old
/// connection." (error: a session takeover) lines from it to drop that client's KEYNOTIFY
/// registrations, as the real service does. The broker's directory is writable by everyone:
/// mosquitto started as root runs as the `mosquitto` user, and without its log file it publishes
/// no log on topics either. [`BrokerBuilder::max_packet_size`] adds `max_packet_size`.
///
/// When mosquitto is not installed, an in-process broker ([`crate::embedded`]) is used instead
/// (and a line says so on stderr); it cannot be restarted ([`Broker::can_restart`] is false).
/// With `LEASEDLOCK_REQUIRE_MOSQUITTO=1` a missing mosquitto panics instead.
///
/// [`Broker::builder`] adds a second, secured listener ([`Broker::secure_addr`]) with TLS and/or
/// user names and passwords, while [`Broker::addr`] stays open to anonymous plain TCP (for the
/// state-store emulator).
#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Mosquitto {
        dir: PathBuf,
        child: Option<Child>,
        secure: Option<Secure>,
    },
    Embedded(Option<EmbeddedBroker>),
}

/// The secured listener of a mosquitto broker.
#[derive(Clone, Debug)]
struct Secure {
    addr: SocketAddr,
    tls: Option<BrokerTls>,
    require_certificate: bool,
    /// Whether a password file is used (anonymous clients refused).
    passwords: bool,
    /// mosquitto's global `max_packet_size`.
    max_packet_size: Option<u32>,
}

/// The broker's side of TLS: PEM files (see [`crate::TestPki`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerTls {
    /// CA certificate(s) that sign client certificates.
    pub ca_file: String,
    /// The broker's certificate.
    pub cert_file: String,
    /// The broker's key.
    pub key_file: String,
}

/// Where mosquitto_passwd is looked for (the Debian package installs it there).
pub const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// Options of a mosquitto broker with a secured listener, from [`Broker::builder`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct BrokerBuilder {
    tls: Option<BrokerTls>,
    require_certificate: bool,
    users: Vec<(String, String)>,
    max_packet_size: Option<u32>,
}

impl BrokerBuilder {
    /// TLS on the secured listener.
    pub fn tls(mut self, tls: BrokerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Clients of the secured listener must present a certificate signed by the CA (needs
    /// [`BrokerBuilder::tls`]).
    pub fn require_certificate(mut self) -> Self {
        self.require_certificate = true;
        self
    }

    /// mosquitto's `max_packet_size`: the largest packet, in bytes, it accepts from any client
    /// (and announces in its CONNACKs); a client that sends a larger one is disconnected.
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = Some(bytes);
        self
    }

    /// A user of the secured listener; once any is added, anonymous clients are refused there.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Starts mosquitto with the plain anonymous listener ([`Broker::addr`]) and the secured one
    /// ([`Broker::secure_addr`]), and waits until both accept TCP.
    ///
    /// # Panics
    ///
    /// When mosquitto (or mosquitto_passwd) is missing or does not come up.
    pub fn start(self) -> Broker {
        let dir = broker_dir();
        for (i, (name, password)) in self.users.iter().enumerate() {
            let mut command = Command::new(MOSQUITTO_PASSWD);
            if i == 0 {
                command.arg("-c");
            }
            let status = command
                .arg("-b")
                .arg(dir.join("passwords"))
                .arg(name)
                .arg(password)
                .stdout(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("run {MOSQUITTO_PASSWD}: {e}"));
            assert!(status.success(), "{MOSQUITTO_PASSWD} failed: {status}");
        }
        let secure = Secure {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: self.tls,
            require_certificate: self.require_certificate,
            passwords: !self.users.is_empty(),
            max_packet_size: self.max_packet_size,
        };
        Broker::mosquitto_in(dir, Some(secure))
    }
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it accepts TCP connections.
    ///
    /// # Panics
    ///
    /// When the broker cannot be started, or when mosquitto is missing and
    /// `LEASEDLOCK_REQUIRE_MOSQUITTO=1` is set.
    pub fn start() -> Broker {
        if Path::new(MOSQUITTO).exists() {
            return Broker::mosquitto();
        }
        if std::env::var(REQUIRE_MOSQUITTO_ENV).as_deref() == Ok("1") {
            panic!(
                "{REQUIRE_MOSQUITTO_ENV}=1 but {MOSQUITTO} is not installed \
                 (apt-get install mosquitto)"
            );
        }
        eprintln!("leasedlock-testkit: {MOSQUITTO} not found, using the embedded MQTT broker");
        Broker::embedded()
    }

    /// Starts mosquitto ([`MOSQUITTO`]) on a free loopback port.
    ///
    /// # Panics
    ///
    /// When mosquitto is missing or does not come up.
    pub fn mosquitto() -> Broker {
        Broker::mosquitto_in(broker_dir(), None)
    }

    /// A mosquitto broker with a secured listener (TLS, client certificates, passwords): see
    /// [`BrokerBuilder`]. Always mosquitto, never the embedded broker.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    fn mosquitto_in(dir: PathBuf, mut secure: Option<Secure>) -> Broker {
        // A port that was free a moment ago can be taken before mosquitto binds it: try again.
        let mut last_error = String::new();
        for _ in 0..5 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            if let Some(secure) = &mut secure {
                secure.addr.set_port(free_port());
            }
            match spawn_mosquitto(&dir, addr, secure.as_ref()) {
                Ok(child) => {
                    return Broker {
                        addr,
                        kind: Kind::Mosquitto {
                            dir,
                            child: Some(child),
                            secure,
                        },
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("mosquitto did not start: {last_error}");
    }

    /// Starts the embedded in-process broker ([`crate::embedded`]) on a free loopback port.
    pub fn embedded() -> Broker {
        let broker = EmbeddedBroker::start().expect("start the embedded MQTT broker");
        Broker {
            addr: broker.addr(),
            kind: Kind::Embedded(Some(broker)),
        }
    }

    /// The address clients connect to (`127.0.0.1:<port>`): plain TCP, anonymous.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The secured listener of a broker from [`Broker::builder`] (TLS and/or passwords).
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Mosquitto { secure, .. } => secure.as_ref().map(|s| s.addr),
            Kind::Embedded(_) => None,
        }
    }

    /// Whether this broker is mosquitto (else the embedded broker).
    pub fn is_mosquitto(&self) -> bool {
        matches!(self.kind, Kind::Mosquitto { .. })
    }

    /// Whether [`Broker::restart`] works (mosquitto only).
    pub fn can_restart(&self) -> bool {
        self.is_mosquitto()
    }

    /// Stops the broker (kills it by PID; every client connection breaks) and starts it again on
    /// the same port, waiting until it accepts TCP.
    ///
    /// # Panics
    ///
    /// On the embedded broker (see [`Broker::can_restart`]) or when mosquitto does not come back.
    pub fn restart(&mut self) {
        self.stop();
        match &mut self.kind {
            Kind::Mosquitto { dir, child, secure } => {
                // The port was ours a moment ago; mosquitto binds with SO_REUSEADDR, but give a
                // slow system a few tries.
                let deadline = Instant::now() + READY_TIMEOUT;
                loop {
                    match spawn_mosquitto(dir, self.addr, secure.as_ref()) {
                        Ok(c) => {
                            *child = Some(c);
                            return;
                        }
                        Err(e) if Instant::now() >= deadline => {
                            panic!("mosquitto did not restart on {}: {e}", self.addr)
                        }
                        Err(_) => thread::sleep(Duration::from_millis(100)),
                    }
                }
            }
            Kind::Embedded(_) => panic!("the embedded broker cannot be restarted"),
        }
    }

    /// Whether [`Broker::pause`] works (mosquitto only).
    pub fn can_pause(&self) -> bool {
        self.is_mosquitto()
    }

    /// Stops the broker process with SIGSTOP: its sockets stay open and the kernel still accepts
    /// TCP connections for it, but it answers nothing (a silent broker, a paused host) until
    /// [`Broker::resume`].
    ///
    /// # Panics
    ///
    /// On the embedded broker (see [`Broker::can_pause`]) or a stopped broker.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Lets a paused broker go on (SIGCONT); what its clients sent meanwhile is read now.
    ///
    /// # Panics
    ///
    /// On the embedded broker or a stopped broker.
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        let Kind::Mosquitto {
            child: Some(child), ..
        } = &self.kind
        else {
            panic!("only a running mosquitto can be sent {signal:?}");
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .expect("a child's pid is positive");
        kill_process(pid, signal).unwrap_or_else(|e| panic!("send {signal:?} to mosquitto: {e}"));
    }

    /// Stops the broker (idempotent). Clients see their connections break.
    pub fn stop(&mut self) {
        match &mut self.kind {
            Kind::Mosquitto { child, .. } => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            Kind::Embedded(broker) => {
                if let Some(b) = broker.take() {
                    b.stop();
                }
            }
        }
    }

    /// Whether the broker is running (not stopped).
    pub fn is_running(&self) -> bool {
        match &self.kind {
            Kind::Mosquitto { child, .. } => child.is_some(),
            Kind::Embedded(b) => b.is_some(),
        }
    }

    /// The mosquitto log so far (empty for the embedded broker): for failure messages.
    pub fn log(&self) -> String {
        match &self.kind {
            Kind::Mosquitto { dir, .. } => {
                fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
            }
            Kind::Embedded(_) => String::new(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if let Kind::Mosquitto { dir, .. } = &self.kind {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A fresh temporary directory for one broker.
///
/// Writable by everyone: mosquitto started as root drops its privileges to the `mosquitto` user,
/// and when it cannot open its log file it publishes no log on `$SYS/broker/log/…` either (seen
/// with 2.0.11), so the state-store emulator would never learn of disconnects.
fn broker_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("leasedlock-mosquitto-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the broker's temporary directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
            .expect("make the broker's temporary directory writable");
    }
    dir
}

/// A loopback port that was free when asked.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Writes the configuration, starts mosquitto and waits until it accepts TCP on `addr` (and on
/// the secured listener).
fn spawn_mosquitto(dir: &Path, addr: SocketAddr, secure: Option<&Secure>) -> Result<Child, String> {
    let config = dir.join("mosquitto.conf");
    let log = dir.join("mosquitto.log");
    let mut text = format!(
        "per_listener_settings {per_listener}\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         set_tcp_nodelay true\n\
         persistence false\n\
         log_dest file {log}\n\
         log_dest topic\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n\
         log_timestamp true\n",
        per_listener = secure.is_some(),
        port = addr.port(),
        log = log.display(),
    );
    if let Some(max) = secure.and_then(|s| s.max_packet_size) {
        text += &format!("max_packet_size {max}\n");
    }
    if let Some(secure) = secure {
        text += &format!(
            "listener {} 127.0.0.1\nset_tcp_nodelay true\n",
            secure.addr.port()
        );
        if secure.passwords {
            text += &format!(
                "allow_anonymous false\npassword_file {}\n",
                dir.join("passwords").display()
            );
        } else {
            text += "allow_anonymous true\n";
        }
        if let Some(tls) = &secure.tls {
            text += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                tls.ca_file, tls.cert_file, tls.key_file, secure.require_certificate
            );
        }
    }
    fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
    let mut child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {MOSQUITTO}: {e}"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut stderr);
            }
            let log = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("mosquitto exited ({status}): {stderr}{log}"));
        }
        let accepts = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if accepts(addr) && secure.is_none_or(|s| accepts(s.addr)) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "mosquitto did not accept TCP on {addr} within {READY_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
