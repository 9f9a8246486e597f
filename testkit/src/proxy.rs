//! A TCP proxy between a client and the broker that injects network faults as a test drives
//! them, not as a timer guesses them: bytes held back one way, added one-way delay, a freeze of
//! both directions with the sockets left open, a cut that closes them, and heal.
//!
//! Faults are per proxy: give each client its own proxy to fault clients one by one. A fault
//! applies to every connection through the proxy, current and later (the client's reconnections
//! meet the same network until [`Proxy::heal`]).
//!
//! ```no_run
//! use leasedlock_testkit::{Broker, Direction, Proxy};
//! use std::time::Duration;
//!
//! let broker = Broker::start();
//! let proxy = Proxy::start(broker.addr());
//! // … connect one client to proxy.addr() …
//! proxy.delay(Direction::ToClient, Duration::from_millis(200)); // the broker's packets arrive late
//! proxy.freeze(); // a partition: nothing passes either way, no socket closes
//! proxy.heal(); // what was held back goes on, in order, and the faults are gone
//! proxy.cut(); // every connection closed, new ones closed as they come…
//! proxy.heal(); // …until now
//! proxy.hold(); // only what the client sends waits in the proxy
//! proxy.release(); // …and now goes on to the broker, in order
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// One way through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the client sends, on its way to the broker.
    ToBroker,
    /// What the broker sends, on its way to the client.
    ToClient,
}

/// What is done to the bytes going one way.
#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    /// While set, bytes wait in the proxy.
    held: bool,
    /// Each chunk is passed on this long after it was read.
    delay: Duration,
}

/// A chunk read from one side, or the end of that side's stream.
enum Chunk {
    Bytes(Vec<u8>),
    End,
}

/// One accepted connection: its two sockets and, per direction, what waits to be passed on.
struct Link {
    client: TcpStream,
    server: TcpStream,
    to_broker: VecDeque<(Instant, Chunk)>,
    to_client: VecDeque<(Instant, Chunk)>,
    /// Directions still forwarding; the link is forgotten at zero.
    open: u8,
    /// Cut, or a write failed: both sockets are closed and nothing more is forwarded.
    closed: bool,
}

impl Link {
    fn queue(&mut self, direction: Direction) -> &mut VecDeque<(Instant, Chunk)> {
        match direction {
            Direction::ToBroker => &mut self.to_broker,
            Direction::ToClient => &mut self.to_client,
        }
    }

    fn close(&mut self) {
        self.closed = true;
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
        self.to_broker.clear();
        self.to_client.clear();
    }
}

/// What the proxy's connections share.
#[derive(Default)]
struct State {
    to_broker: Flow,
    to_client: Flow,
    /// While set, connections are closed as they are accepted.
    cut: bool,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    accepted: u64,
}

impl State {
    fn flow(&self, direction: Direction) -> Flow {
        match direction {
            Direction::ToBroker => self.to_broker,
            Direction::ToClient => self.to_client,
        }
    }

    fn flow_mut(&mut self, direction: Direction) -> &mut Flow {
        match direction {
            Direction::ToBroker => &mut self.to_broker,
            Direction::ToClient => &mut self.to_client,
        }
    }
}

/// The state and the condition every forwarding thread waits on.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("proxy state")
    }

    /// Changes the faults and wakes every forwarding thread.
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A loopback TCP proxy in front of a broker; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy on a free loopback port, forwarding every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if accepting.lock().cut {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
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

    /// How many connections the proxy has forwarded so far (not counting those closed by a cut).
    pub fn connections(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// From now on, what clients send is kept in the proxy (the broker's side still flows).
    pub fn hold(&self) {
        self.shared
            .update(|s| s.flow_mut(Direction::ToBroker).held = true);
    }

    /// Sends on everything the clients sent while held, in order, and forwards again.
    pub fn release(&self) {
        self.shared
            .update(|s| s.flow_mut(Direction::ToBroker).held = false);
    }

    /// From now on, every chunk going `direction` is passed on `delay` after the proxy read it
    /// (`Duration::ZERO`: at once). Order is kept.
    pub fn delay(&self, direction: Direction, delay: Duration) {
        self.shared.update(|s| s.flow_mut(direction).delay = delay);
    }

    /// A partition: from now on nothing passes either way, and no socket is closed (an end of
    /// stream waits too). The peers see silence; [`Proxy::heal`] passes on what waited.
    pub fn freeze(&self) {
        self.shared.update(|s| {
            s.to_broker.held = true;
            s.to_client.held = true;
        });
    }

    /// Closes both sockets of every connection, dropping what waited in them, and closes the
    /// connections accepted from now on until [`Proxy::heal`].
    pub fn cut(&self) {
        self.shared.update(|s| {
            s.cut = true;
            for link in s.links.values_mut() {
                link.close();
            }
        });
    }

    /// Ends every fault: held bytes go on in order, no delay, connections are accepted again.
    pub fn heal(&self) {
        self.shared.update(|s| {
            s.to_broker = Flow::default();
            s.to_client = Flow::default();
            s.cut = false;
        });
    }
}

impl Drop for Proxy {
    /// Cuts every connection for good.
    fn drop(&mut self) {
        self.cut();
    }
}

/// Forwards one connection both ways: per direction, a thread reads into the link's queue and
/// another passes the queue on when the faults let it.
fn start_link(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let (Ok(client_rx), Ok(client_tx), Ok(server_rx), Ok(server_tx)) = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let id = {
        let mut s = shared.lock();
        let id = s.next_link;
        s.next_link += 1;
        s.accepted += 1;
        let link = Link {
            client,
            server,
            to_broker: VecDeque::new(),
            to_client: VecDeque::new(),
            open: 2,
            closed: false,
        };
        s.links.insert(id, link);
        id
    };
    for (direction, rx, tx) in [
        (Direction::ToBroker, client_rx, server_tx),
        (Direction::ToClient, server_rx, client_tx),
    ] {
        let reading = shared.clone();
        thread::spawn(move || read_into(rx, &reading, id, direction));
        let writing = shared.clone();
        thread::spawn(move || pass_on(tx, &writing, id, direction));
    }
}

/// Reads `rx` into the link's queue for `direction` until its end (or an error, or a cut).
fn read_into(mut rx: TcpStream, shared: &Shared, id: u64, direction: Direction) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let chunk = match rx.read(&mut buf) {
            Ok(0) | Err(_) => Chunk::End,
            Ok(n) => Chunk::Bytes(buf[..n].to_vec()),
        };
        let end = matches!(chunk, Chunk::End);
        let mut s = shared.lock();
        let Some(link) = s.links.get_mut(&id).filter(|link| !link.closed) else {
            return;
        };
        link.queue(direction).push_back((Instant::now(), chunk));
        drop(s);
        shared.changed.notify_all();
        if end {
            return;
        }
    }
}

/// Writes the link's queue for `direction` to `tx` as the faults allow, until the queued end
/// of stream (then half-closes `tx`), a failed write (then closes the link) or a cut.
fn pass_on(mut tx: TcpStream, shared: &Shared, id: u64, direction: Direction) {
    let mut s = shared.lock();
    loop {
        let flow = s.flow(direction);
        let Some(link) = s.links.get_mut(&id) else {
            return;
        };
        if link.closed {
            finish(&mut s, id);
            return;
        }
        let queue = link.queue(direction);
        let due = match queue.front() {
            Some((read_at, _)) if !flow.held => *read_at + flow.delay,
            _ => {
                s = shared.changed.wait(s).expect("proxy state");
                continue;
            }
        };
        let now = Instant::now();
        if due > now {
            s = shared
                .changed
                .wait_timeout(s, due - now)
                .expect("proxy state")
                .0;
            continue;
        }
        let (_, chunk) = queue.pop_front().expect("a queued chunk");
        drop(s);
        let failed = match &chunk {
            Chunk::Bytes(bytes) => tx.write_all(bytes).is_err(),
            Chunk::End => {
                let _ = tx.shutdown(Shutdown::Write);
                false
            }
        };
        s = shared.lock();
        if failed {
            if let Some(link) = s.links.get_mut(&id) {
                link.close();
            }
            shared.changed.notify_all();
        }
        if failed || matches!(chunk, Chunk::End) {
            finish(&mut s, id);
            return;
        }
    }
}

/// One direction of link `id` stopped forwarding; the link is forgotten after both.
fn finish(s: &mut State, id: u64) {
    if let Some(link) = s.links.get_mut(&id) {
        link.open -= 1;
        if link.open == 0 {
            s.links.remove(&id);
        }
    }
}
