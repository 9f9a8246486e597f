//! # leasedlock-tokio
//!
//! [`leasedlock`] on tokio: one task owns the connection over a `TcpStream` (TCP_NODELAY set),
//! with TLS from `tokio-rustls` when [`Settings::tls`] is set, reads, writes, sleeps until the
//! engine's next deadline and reconnects with backoff. The
//! [`Client`] handle is cloneable and offers the whole lock API as async methods; dropping a
//! future cancels its operation cleanly.
//!
//! ```no_run
//! use leasedlock_tokio::{connect, Settings};
//! use leasedlock_tokio::leasedlock::lock::Options;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, _task) = connect(&Settings::new("127.0.0.1", 1883, "worker-1"))?;
//! let lease = Duration::from_secs(10);
//! let won = client.acquire("my-lock", lease, Options::default()).await?;
//! println!("holding with token {}", won.token);
//! client.release("my-lock", Options::default()).await?;
//!
//! let mut hold = client.hold("leader", lease, Duration::from_secs(3), Options::default()).await?;
//! while let Some(event) = hold.next_event().await {
//!     println!("{event:?}; token now {:?}", hold.token());
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use leasedlock_driver::{ConnectFuture, Target};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub use leasedlock_driver::{
    leasedlock, Backoff, Change, Client, ClientCertificate, ConnectionState, ConnectionWatch,
    Disconnection, Election, EnvError, Error, Hold, HoldEvent, HoldWatch, Leadership, Lease, Lock,
    Observer, Outcomes, Settings, SetupError, Stats, TlsSettings, Topics, Transport,
    TransportEvent,
};

/// The tokio [`Runtime`](leasedlock_driver::Runtime): [`Stream`] and `tokio::time::Sleep`.
#[derive(Debug)]
pub enum Tokio {}

/// A connection to the broker: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

impl Stream {
    fn io(&mut self) -> Pin<&mut dyn Io> {
        match self {
            Stream::Plain(s) => Pin::new(s),
            Stream::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

impl leasedlock_driver::Timers for Tokio {
    type Timer = Pin<Box<tokio::time::Sleep>>;

    fn timer(at: Instant) -> Self::Timer {
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn reset_timer(timer: &mut Self::Timer, at: Instant) {
        timer.as_mut().reset(at.into());
    }

    fn poll_timer(timer: &mut Self::Timer, cx: &mut Context<'_>) -> Poll<()> {
        timer.as_mut().poll(cx)
    }
}

impl leasedlock_driver::Runtime for Tokio {
    type Stream = Stream;

    fn connect(target: &Target) -> ConnectFuture<Stream> {
        let target = target.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            Ok(match target.tls {
                None => Stream::Plain(tcp),
                Some(tls) => {
                    let connector = TlsConnector::from(tls.config);
                    Stream::Tls(Box::new(connector.connect(tls.server_name, tcp).await?))
                }
            })
        })
    }

    fn poll_read(
        stream: &mut Stream,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match stream.io().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(
        stream: &mut Stream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        stream.io().poll_write(cx, buf)
    }

    fn poll_flush(stream: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        stream.io().poll_flush(cx)
    }
}

/// The driver future on tokio (spawned by [`connect`]).
pub type Driver = leasedlock_driver::Driver<Tokio>;

/// Connect to the broker of `settings` (the TLS files are read here): spawns the task that owns the connection on the current
/// tokio runtime (it needs the time and I/O drivers enabled) and returns the client handle and
/// the task. The task ends once every handle is dropped, after sending DISCONNECT; aborting it
/// kills the connection without releasing anything (leases then expire at the store).
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn connect(settings: &Settings) -> Result<(Client, tokio::task::JoinHandle<()>), SetupError> {
    let (client, driver) = leasedlock_driver::connect::<Tokio>(settings)?;
    Ok((client, tokio::spawn(driver)))
}

/// Run the lock over the application's MQTT client instead of a connection of its own: spawns
/// the task that drives the engine of `config` over `transport` (see
/// [`leasedlock_driver::attach`]) on the current tokio runtime and returns the client handle and
/// the task. `leasedlock-rumqttc` provides the transport for rumqttc.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn attach<T: Transport + Send + Unpin + 'static>(
    config: leasedlock::lock::Config,
    transport: T,
) -> Result<(Client, tokio::task::JoinHandle<()>), leasedlock::lock::ConfigError> {
    let (client, driver) = leasedlock_driver::attach::<Tokio, T>(config, transport)?;
    Ok((client, tokio::spawn(driver)))
}
