//! # leasedlock-async-std
//!
//! [`leasedlock`] on `async-io`: `Async<TcpStream>` (TCP_NODELAY set) and `async_io::Timer`.
//! async-io has no executor, so [`connect`] returns the [`Client`] handle and a [`Driver`] future
//! to spawn on whatever runs futures — async-std, smol, or any other executor (async-io runs its
//! own reactor thread). The API is the same as `leasedlock-tokio`'s.
//!
//! ```no_run
//! use leasedlock_async_std::{connect, Settings};
//! use leasedlock_async_std::leasedlock::lock::Options;
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
use leasedlock_driver::ConnectFuture;
use std::future::Future;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use leasedlock_driver::{
    leasedlock, Backoff, Client, Error, Hold, HoldEvent, Lease, Observer, Settings,
};

/// The async-io [`Runtime`](leasedlock_driver::Runtime): `Async<TcpStream>` and `Timer`.
#[derive(Debug)]
pub enum AsyncIo {}

impl leasedlock_driver::Runtime for AsyncIo {
    type Stream = Async<TcpStream>;
    type Timer = Timer;

    /// Host names are resolved with the system resolver before connecting (IP literals need no
    /// lookup).
    fn connect(host: &str, port: u16) -> ConnectFuture<Async<TcpStream>> {
        let addrs = (host, port).to_socket_addrs().map(Vec::from_iter);
        Box::pin(async move {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
            for addr in addrs? {
                match Async::<TcpStream>::connect(addr).await {
                    Ok(stream) => {
                        stream.get_ref().set_nodelay(true)?;
                        return Ok(stream);
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    fn poll_read(
        stream: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_read(cx, buf)
    }

    fn poll_write(
        stream: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(cx, buf)
    }

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

/// The driver future on async-io: spawn it on any executor.
pub type Driver = leasedlock_driver::Driver<AsyncIo>;

/// A client handle for the broker of `settings`, and the driver future to spawn (it connects at
/// its first poll). The driver ends once every handle is dropped, after sending DISCONNECT;
/// dropping it kills the connection without releasing anything (leases then expire at the store).
pub fn connect(settings: &Settings) -> Result<(Client, Driver), leasedlock::lock::ConfigError> {
    leasedlock_driver::connect::<AsyncIo>(settings)
}
