//! The test kit's fault injection against itself: the proxy's faults over an echo server, and a
//! paused broker.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_testkit::{Broker, Direction, Proxy};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// How long a read waits to show that nothing arrives (loopback echoes take microseconds).
const QUIET: Duration = Duration::from_millis(300);
/// Bound on a read that must succeed.
const WAIT: Duration = Duration::from_secs(20);

/// A server that echoes every connection's bytes back.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut back = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut stream, &mut back);
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `n` bytes within [`WAIT`].
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Whether nothing arrives for [`QUIET`] (and the stream is still open).
fn quiet(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0; 16];
    matches!(
        stream.read(&mut buf),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    )
}

/// Whether the peer closed the stream: end of stream or a reset, within [`WAIT`].
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0; 16];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    }
}

#[test]
fn a_frozen_proxy_passes_nothing_until_healed_then_everything_in_order() {
    let proxy = Proxy::start(echo_server());
    let mut stream = connect(proxy.addr());
    stream.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut stream, 1), b"a");
    proxy.freeze();
    stream.write_all(b"bc").unwrap();
    stream.write_all(b"d").unwrap();
    assert!(quiet(&mut stream), "frozen: no echo");
    proxy.heal();
    assert_eq!(read_n(&mut stream, 3), b"bcd");
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_frozen_proxy_keeps_the_broker_side_held_too() {
    // The server side speaks first here: what it sends while frozen waits as well.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(listener.local_addr().unwrap());
    let mut stream = connect(proxy.addr());
    let (mut server, _) = listener.accept().unwrap();
    proxy.freeze();
    server.write_all(b"hello").unwrap();
    assert!(quiet(&mut stream));
    drop(server);
    assert!(quiet(&mut stream), "the end of stream waits too");
    proxy.heal();
    assert_eq!(read_n(&mut stream, 5), b"hello");
    assert!(closed(&mut stream));
}

#[test]
fn a_cut_closes_the_connections_and_refuses_new_ones_until_healed() {
    let proxy = Proxy::start(echo_server());
    let mut stream = connect(proxy.addr());
    stream.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut stream, 1), b"a");
    proxy.cut();
    assert!(closed(&mut stream));
    let mut refused = connect(proxy.addr());
    assert!(closed(&mut refused), "closed as it comes");
    proxy.heal();
    let mut again = connect(proxy.addr());
    again.write_all(b"b").unwrap();
    assert_eq!(read_n(&mut again, 1), b"b");
    assert_eq!(proxy.connections(), 2, "the one refused is not counted");
}

#[test]
fn a_delay_holds_each_chunk_back_one_way() {
    let proxy = Proxy::start(echo_server());
    let mut stream = connect(proxy.addr());
    let delay = Duration::from_millis(200);
    for direction in [Direction::ToBroker, Direction::ToClient] {
        proxy.delay(direction, delay);
        let sent = Instant::now();
        stream.write_all(b"x").unwrap();
        assert_eq!(read_n(&mut stream, 1), b"x");
        assert!(
            sent.elapsed() >= delay,
            "{direction:?}: {:?}",
            sent.elapsed()
        );
        proxy.delay(direction, Duration::ZERO);
    }
}

#[test]
fn a_held_proxy_keeps_what_the_client_sends_and_lets_the_server_speak() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(listener.local_addr().unwrap());
    let mut stream = connect(proxy.addr());
    let (mut server, _) = listener.accept().unwrap();
    proxy.hold();
    stream.write_all(b"up").unwrap();
    server.write_all(b"down").unwrap();
    assert_eq!(read_n(&mut stream, 4), b"down");
    assert!(quiet(&mut server));
    proxy.release();
    assert_eq!(read_n(&mut server, 2), b"up");
}

/// An MQTT v5 CONNECT with clean start, no keep-alive and client id `p`.
const CONNECT: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0, 0, 0, 1, b'p',
];

#[test]
fn a_paused_broker_accepts_tcp_but_answers_only_once_resumed() {
    let broker = Broker::start();
    if !broker.can_pause() {
        eprintln!("skipped: the embedded broker cannot pause");
        return;
    }
    broker.pause();
    let mut stream = connect(broker.addr());
    stream.write_all(&CONNECT).unwrap();
    assert!(quiet(&mut stream), "paused: no CONNACK");
    broker.resume();
    assert_eq!(read_n(&mut stream, 1), [0x20], "a CONNACK");
}
