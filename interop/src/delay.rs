//! [`DelayProxy`]: a TCP proxy on loopback that delays every byte by a fixed one-way latency in
//! each direction, so that the benchmark can put a network between clients and the broker.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Forwards every connection made to [`DelayProxy::addr`] to an upstream address; what is read
/// on one side is written to the other `delay` later, in order, whatever the chunking. The
/// bandwidth is not limited: only latency is added. Runs on the current tokio runtime until
/// dropped (the connections it forwards end with it).
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on a free loopback port; each connection is forwarded to `upstream` with
    /// `delay` added in each direction.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.push(tokio::spawn(forward(client, upstream, delay)));
            }
            for c in connections {
                c.abort();
            }
        });
        Ok(DelayProxy { addr, acceptor })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// One connection: both directions delayed; it ends when either side closes.
async fn forward(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, delay) => {}
        () = pipe(server_read, client_write, delay) => {}
    }
}

/// Reads chunks from `from` and writes each to `to` once `delay` has passed since it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer drains what was read before the reader ended, then ends too.
    tokio::join!(reader, writer);
}
