//! A TCP proxy between clients and the broker that can hold back what the clients send: the
//! network fault "a client's packets are delayed" as a test drives it, not as a timer guesses it.
//!
//! ```no_run
//! use leasedlock_testkit::{Broker, Proxy};
//!
//! let broker = Broker::start();
//! let proxy = Proxy::start(broker.addr());
//! // … connect a client to proxy.addr() …
//! proxy.hold(); // from now on, what the clients send waits in the proxy
//! proxy.release(); // …and now goes on to the broker, in order
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy's connections share.
#[derive(Default)]
struct Shared {
    /// While set, client bytes are kept instead of forwarded.
    held: bool,
    /// Per connection: the upstream stream and the bytes held back for it, in order.
    links: Vec<(TcpStream, Vec<u8>)>,
}

/// A loopback TCP proxy in front of a broker; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    /// A proxy on a free loopback port, forwarding every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                start_link(client, server, &accepting);
            }
        });
        Proxy { addr, shared }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, what clients send is kept in the proxy (the broker's side still flows).
    pub fn hold(&self) {
        self.shared.lock().expect("proxy state").held = true;
    }

    /// Sends on everything held back, in order, and forwards again.
    pub fn release(&self) {
        let mut shared = self.shared.lock().expect("proxy state");
        shared.held = false;
        for (server, pending) in &mut shared.links {
            let _ = server.write_all(pending);
            pending.clear();
        }
    }
}

/// Forwards one connection both ways; client bytes go through [`Shared`].
fn start_link(mut client: TcpStream, mut server: TcpStream, shared: &Arc<Mutex<Shared>>) {
    let (Ok(mut client_rx), Ok(server_tx)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let index = {
        let mut s = shared.lock().expect("proxy state");
        s.links.push((server_tx, Vec::new()));
        s.links.len() - 1
    };
    let up = shared.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut s = up.lock().expect("proxy state");
            let held = s.held;
            let (server, pending) = &mut s.links[index];
            if held {
                pending.extend_from_slice(&buf[..n]);
            } else if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let s = up.lock().expect("proxy state");
        let _ = s.links[index].0.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let _ = std::io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Both);
    });
}
