//! # leasedlock-async-io: leasedlock for async-std and smol, on async-io
//!
//! [`leasedlock`] on `async-io`: `Async<TcpStream>` (TCP_NODELAY set), with TLS from
//! `futures-rustls` when [`Settings::tls`] is set, and `async_io::Timer`.
//! async-io has no executor, so [`connect`] returns the [`Client`] handle and a [`Driver`] future
//! to spawn on whatever runs futures (async-io runs its own reactor thread):
//!
//! - **smol**, the maintained choice;
//! - **async-std**, which is discontinued (RUSTSEC-2025-0052) and still works, as it runs on
//!   async-io too;
//! - any other executor.
//!
//! async-std and smol both drive their I/O and timers with async-io, so this one crate serves
//! both, and nothing in it depends on either. The API is the same as `leasedlock-tokio`'s.
//!
//! ```no_run
//! use leasedlock_async_io::{connect, Settings};
//! use leasedlock_async_io::leasedlock::lock::Options;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let (client, driver) = connect(&Settings::new("127.0.0.1", 1883, "worker-1"))?;
//!     let _driver = smol::spawn(driver); // or async_std::task::spawn(driver)
//!     let lease = Duration::from_secs(10);
//!     if let Some(won) = client.try_acquire("my-lock", lease, Options::default()).await? {
//!         println!("won with token {}", won.token);
//!         client.release("my-lock", Options::default()).await?;
//!     }
//!     Ok(())
//! })
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use leasedlock_driver::{ConnectFuture, Target};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use leasedlock_driver::{
    leasedlock, Backoff, Change, Client, ClientCertificate, ConnectionState, ConnectionWatch,
    Disconnection, Election, EnvError, Error, Hold, HoldEvent, HoldWatch, Leadership, Lease, Lock,
    Observer, Outcomes, Settings, SetupError, Stats, TlsSettings,
};

/// The async-io [`Runtime`](leasedlock_driver::Runtime): [`Stream`] and `Timer`.
#[derive(Debug)]
pub enum AsyncIo {}

/// A connection to the broker: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(Async<TcpStream>),
    /// TLS over TCP.
    Tls(Box<TlsStream<Async<TcpStream>>>),
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

/// A TCP connection to the first address of `host` that accepts, TCP_NODELAY set. Host names are
/// resolved with the system resolver on `blocking`'s thread pool, off the executor's threads (a
/// slow DNS server must not stall the tasks beside the lock); IP literals need no lookup.
async fn tcp(host: &str, port: u16) -> io::Result<Async<TcpStream>> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let host = host.to_owned();
            blocking::unblock(move || (host, port).to_socket_addrs().map(Vec::from_iter)).await?
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(stream) => {
                stream.get_ref().set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl leasedlock_driver::Timers for AsyncIo {
    type Timer = Timer;

    fn timer(at: Instant) -> Timer {
        Timer::at(at)
    }

    fn reset_timer(timer: &mut Timer, at: Instant) {
        timer.set_at(at);
    }

    fn poll_timer(timer: &mut Timer, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(timer).poll(cx).map(|_| ())
    }
}

impl leasedlock_driver::Runtime for AsyncIo {
    type Stream = Stream;

    fn connect(target: &Target) -> ConnectFuture<Stream> {
        let target = target.clone();
        Box::pin(async move {
            let tcp = tcp(&target.host, target.port).await?;
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
        stream.io().poll_read(cx, buf)
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

/// The driver future on async-io: spawn it on any executor.
pub type Driver = leasedlock_driver::Driver<AsyncIo>;

/// A client handle for the broker of `settings` (the TLS files are read here), and the driver
/// future to spawn (it connects at
/// its first poll). The driver ends once every handle is dropped, after sending DISCONNECT;
/// dropping it kills the connection without releasing anything (leases then expire at the store).
pub fn connect(settings: &Settings) -> Result<(Client, Driver), SetupError> {
    leasedlock_driver::connect::<AsyncIo>(settings)
}
