//! A previous holder's delayed write, over mosquitto and the emulator: with the edit fence (the
//! default), the store refuses it once the next editor has seen the value; without it, the write
//! lands between the next editor's read and its write.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_testkit::{Broker, Proxy, StoreEmulator};
use leasedlock_tokio::leasedlock::bytes::Bytes;
use leasedlock_tokio::leasedlock::lock::{
    EditAction, EditOutcome, OpError, Options, ABSENT_PLACEHOLDER,
};
use leasedlock_tokio::{connect, Client, Error, Settings};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

/// Bounds every wait of the scenario; none is expected to come near it.
const BOUND: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {BOUND:?}"))
}

fn client(addr: SocketAddr, id: &str, raise_edit_fence: bool) -> Client {
    let mut settings = Settings::new(addr.ip().to_string(), addr.port(), id);
    settings.lock.raise_edit_fence = raise_edit_fence;
    let (client, task) = connect(&settings).unwrap();
    drop(task); // the driver runs as a task of the runtime
    client
}

/// Runs the scenario; returns the value of the key right after the delayed write of the first
/// editor reached the store, while the second editor's closure still holds the value it saw.
async fn delayed_write_of_a_previous_holder(raise_edit_fence: bool) -> Option<Bytes> {
    let broker = Broker::start();
    let _store = StoreEmulator::start(broker.addr());
    let proxy = Proxy::start(broker.addr());
    let slow = client(proxy.addr(), "fence-slow", raise_edit_fence);
    let next = client(broker.addr(), "fence-next", raise_edit_fence);
    let reader = client(broker.addr(), "fence-reader", raise_edit_fence);
    for c in [&slow, &next, &reader] {
        within("connect", c.connected()).await.unwrap();
    }
    let short = Duration::from_millis(800);

    // The first editor's write (and everything after it) is held in the proxy; its lease runs
    // out meanwhile, so it cannot know whether its write was applied.
    let outcome = within(
        "the first edit",
        slow.edit("L", "K", short, Options::default(), |_| async {
            proxy.hold();
            EditAction::Set(Bytes::from_static(b"stale"))
        }),
    )
    .await;
    assert_eq!(outcome, Err(Error::Op(OpError::Indeterminate)));

    // The next editor takes the lock once the first lease has expired at the store, and sees
    // the key; while it holds the value, the delayed write reaches the store.
    let (seen_tx, seen_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let second = tokio::spawn(async move {
        next.edit(
            "L",
            "K",
            Duration::from_secs(10),
            Options::default(),
            |current| async move {
                let _ = seen_tx.send(current);
                let _ = go_rx.await;
                EditAction::Set(Bytes::from_static(b"fresh"))
            },
        )
        .await
    });
    let seen = within("the second editor sees the key", seen_rx)
        .await
        .unwrap();
    assert_eq!(seen, None, "the key was never written before");
    proxy.release();
    // A request of the slow client behind its delayed write: answered, so that write has been
    // processed (one connection, one order, one store).
    within(
        "the slow client's next request",
        slow.holder("L", Options::default()),
    )
    .await
    .unwrap();
    let between = within("a read of the key", reader.get("K", Options::default()))
        .await
        .unwrap();
    go_tx.send(()).unwrap();
    let written = within("the second edit", second).await.unwrap();
    assert_eq!(written, Ok(EditOutcome::Written));
    let last = within("a read of the key", reader.get("K", Options::default())).await;
    assert_eq!(last, Ok(Some(Bytes::from_static(b"fresh"))));
    between
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_edit_fence_a_delayed_write_of_a_previous_holder_is_refused() {
    let between = delayed_write_of_a_previous_holder(true).await;
    // A fence's placeholder for the absent key; the stale write did not land.
    assert_eq!(between, Some(Bytes::from_static(ABSENT_PLACEHOLDER)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_edit_fence_the_delayed_write_lands_after_the_next_read() {
    let between = delayed_write_of_a_previous_holder(false).await;
    assert_eq!(between, Some(Bytes::from_static(b"stale")));
}
