//! [`DelayProxy`]: a TCP proxy on loopback that delays every byte by a fixed one-way latency in
//! each direction, so that the benchmark can put a network between clients and the broker.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
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
            // Aborting the acceptor drops the set, which aborts every connection's task.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(forward(client, upstream, delay));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client writes reaches the upstream whole and in order, the upstream's answer
    /// comes back the same way, and the client sees the end when the upstream closes.
    #[tokio::test]
    async fn forwards_both_directions_in_order_and_ends_with_the_upstream() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let proxy = DelayProxy::start(upstream_addr, Duration::from_millis(2))
            .await
            .unwrap();
        let request: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let server = tokio::spawn({
            let len = request.len();
            async move {
                let (mut s, _) = upstream.accept().await.unwrap();
                let mut got = vec![0u8; len];
                s.read_exact(&mut got).await.unwrap();
                let answer: Vec<u8> = got.iter().rev().copied().collect();
                s.write_all(&answer).await.unwrap();
                got
            }
        });
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        crate::within("the answer and the end", client.read_to_end(&mut answer))
            .await
            .unwrap();
        assert_eq!(
            crate::within("the upstream", server).await.unwrap(),
            request
        );
        let reversed: Vec<u8> = request.iter().rev().copied().collect();
        assert_eq!(answer, reversed);
    }
}
