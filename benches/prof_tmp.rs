mod support;
use bytes::BytesMut;
use leasedlock::connection::Connection;
use leasedlock::lock::{Config, Options};
use leasedlock::mqtt;
use std::time::Duration;
use support::{now, pump, Broker};
fn main() {
    let t = now();
    let mut conn = Connection::new(Config::new("bench"), mqtt::Options::new("bench"), t, 1).unwrap();
    let mut broker = Broker::new("bench");
    let mut scratch = BytesMut::with_capacity(4096);
    conn.connect(t);
    pump(&mut conn, &mut broker, t, &mut scratch);
    let lock = conn.client().lock("bench-lock").unwrap();
    for _ in 0..20000 {
        let t = now();
        conn.client().try_acquire(t, lock, Duration::from_secs(10), Options::default()).unwrap();
        pump(&mut conn, &mut broker, t, &mut scratch);
        conn.client().release(t, lock, Options::default()).unwrap();
        pump(&mut conn, &mut broker, t, &mut scratch);
    }
}
