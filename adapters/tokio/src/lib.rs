//! # leasedlock-tokio
//!
//! [`leasedlock`] on tokio: one task owns the connection over a `TcpStream` (TCP_NODELAY set),
//! reads, writes, sleeps until the engine's next deadline and reconnects with backoff. The
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

use leasedlock_driver::ConnectFuture;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use leasedlock_driver::{
    leasedlock, Backoff, Client, Error, Hold, HoldEvent, Lease, Observer, Settings,
};

/// The tokio [`Runtime`](leasedlock_driver::Runtime): `TcpStream` and `tokio::time::Sleep`.
#[derive(Debug)]
pub enum Tokio {}

impl leasedlock_driver::Runtime for Tokio {
    type Stream = TcpStream;
    type Timer = Pin<Box<tokio::time::Sleep>>;

    fn connect(host: &str, port: u16) -> ConnectFuture<TcpStream> {
        let host = host.to_owned();
        Box::pin(async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    fn poll_read(
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(cx, buf)
    }

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

/// The driver future on tokio (spawned by [`connect`]).
pub type Driver = leasedlock_driver::Driver<Tokio>;

/// Connect to the broker of `settings`: spawns the task that owns the connection on the current
/// tokio runtime (it needs the time and I/O drivers enabled) and returns the client handle and
/// the task. The task ends once every handle is dropped, after sending DISCONNECT; aborting it
/// kills the connection without releasing anything (leases then expire at the store).
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn connect(
    settings: &Settings,
) -> Result<(Client, tokio::task::JoinHandle<()>), leasedlock::lock::ConfigError> {
    let (client, driver) = leasedlock_driver::connect::<Tokio>(settings)?;
    Ok((client, tokio::spawn(driver)))
}
