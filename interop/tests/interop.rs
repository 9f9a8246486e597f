//! `leasedlock` and the official AIO Rust SDK on the same locks and keys, over mosquitto and the
//! state-store emulator: they exclude each other, and the store's fencing orders their tokens.
//!
//! No test relies on a sleep to pass: each waits for events (or for the store to have handled
//! the requests it is known to send), bounded by [`WAIT`](leasedlock_interop::WAIT).

use leasedlock::bytes::Bytes;
use leasedlock::lock::{EditAction, EditOutcome, Options};
use leasedlock::FencingToken;
use leasedlock_interop::sdk::leased_lock::ErrorKind as LockErrorKind;
use leasedlock_interop::sdk::state_store::{ErrorKind as StoreErrorKind, ServiceError, SetOptions};
use leasedlock_interop::{from_sdk, to_sdk, within, Env, SDK_REQUEST_TIMEOUT as T, WAIT};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(10);

/// The store's exact text for a write under an older token (docs/PROTOCOL.md §3).
const LOWER_VERSION: &str =
    "the request fencing token is a lower version than the fencing token protecting the resource";

fn wait() -> Options {
    Options::default().with_timeout(WAIT)
}

/// Ours holds: the SDK's single try is refused, and its waiting `lock()` gets the lock only
/// after we release it, with a newer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_holds_then_the_sdk_waits_for_our_release() {
    let env = Env::start("ours-first");
    let ours = env.ours("ours");
    let theirs = env.sdk("sdk").await;

    let ours_lease = within("our acquire", ours.client.acquire("L", LEASE, wait()))
        .await
        .unwrap();

    // A single try through the SDK's lease client is refused.
    let refused = theirs.lease("L").acquire(LEASE, T, None).await.unwrap_err();
    assert!(
        matches!(refused.kind(), LockErrorKind::LeaseAlreadyHeld),
        "{refused:?}"
    );
    let holder = theirs.lease("L").get_holder(T).await.unwrap();
    assert_eq!(holder.as_deref(), Some(ours.id.as_bytes()));

    // The SDK's lock() waits: it registers KEYNOTIFY, then its SET is refused.
    let before = env.requests();
    let released = Arc::new(AtomicBool::new(false));
    let sdk_lock = theirs.lock("L");
    let waiter = tokio::spawn({
        let released = released.clone();
        async move {
            let token = sdk_lock.lock(LEASE, T, None).await;
            (token, released.load(Ordering::SeqCst), sdk_lock)
        }
    });
    env.wait_requests(before + 2).await;
    assert!(!waiter.is_finished(), "the SDK took a lock that we hold");

    released.store(true, Ordering::SeqCst);
    assert!(ours.client.release("L", Options::default()).await.unwrap());
    let (token, after_release, sdk_lock) = within("the SDK's lock()", waiter).await.unwrap();
    let token = from_sdk(&token.unwrap());
    assert!(after_release, "the SDK got the lock before we released it");
    assert!(
        token > ours_lease.token,
        "{token} after {}",
        ours_lease.token
    );
    let holder = ours.client.holder("L", Options::default()).await.unwrap();
    assert!(
        holder.is_some_and(|h| h.is(&theirs.id, None)),
        "the SDK holds"
    );

    sdk_lock.unlock(T).await.unwrap();
    assert_eq!(
        ours.client.holder("L", Options::default()).await.unwrap(),
        None
    );
    theirs.close().await;
}

/// The SDK holds: our try is busy, and our waiting `acquire` gets the lock only after the SDK
/// unlocks it, with a newer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_holds_then_ours_waits_for_their_release() {
    let env = Env::start("sdk-first");
    let ours = env.ours("ours");
    let theirs = env.sdk("sdk").await;

    let sdk_lock = theirs.lock("L");
    let sdk_token = from_sdk(&sdk_lock.lock(LEASE, T, None).await.unwrap());

    assert_eq!(
        ours.client
            .try_acquire("L", LEASE, Options::default())
            .await,
        Ok(None)
    );
    let holder = ours.client.holder("L", Options::default()).await.unwrap();
    assert!(
        holder.is_some_and(|h| h.is(&theirs.id, None)),
        "the SDK holds"
    );

    // Our acquire waits: it registers KEYNOTIFY, then its SET is refused.
    let before = env.requests();
    let released = Arc::new(AtomicBool::new(false));
    let waiter = tokio::spawn({
        let (client, released) = (ours.client.clone(), released.clone());
        async move {
            let lease = client.acquire("L", LEASE, wait()).await;
            (lease, released.load(Ordering::SeqCst))
        }
    });
    env.wait_requests(before + 2).await;
    assert!(!waiter.is_finished(), "we took a lock that the SDK holds");

    released.store(true, Ordering::SeqCst);
    sdk_lock.unlock(T).await.unwrap();
    let (lease, after_release) = within("our acquire", waiter).await.unwrap();
    let lease = lease.unwrap();
    assert!(after_release, "we got the lock before the SDK released it");
    assert!(lease.token > sdk_token, "{} after {sdk_token}", lease.token);
    let holder = theirs.lease("L").get_holder(T).await.unwrap();
    assert_eq!(holder.as_deref(), Some(ours.id.as_bytes()));

    assert!(ours.client.release("L", Options::default()).await.unwrap());
    assert_eq!(theirs.lease("L").get_holder(T).await.unwrap(), None);
    theirs.close().await;
}

/// Two clients of each kind take turns on one lock: never two holders at once, and the tokens
/// of consecutive holders only increase, whoever they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_exclude_each_other() {
    const ROUNDS: usize = 5;
    let env = Env::start("mixed");
    let ours = [env.ours("ours0"), env.ours("ours1")];
    let theirs = [env.sdk("sdk0").await, env.sdk("sdk1").await];
    let busy = Arc::new(AtomicBool::new(false));
    let tokens: Arc<Mutex<Vec<(FencingToken, &'static str)>>> = Arc::default();

    let mut tasks = Vec::new();
    for o in &ours {
        let (client, busy, tokens) = (o.client.clone(), busy.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let lease = client.acquire("L", LEASE, wait()).await.unwrap();
                assert!(!busy.swap(true, Ordering::SeqCst), "two holders at once");
                tokens.lock().unwrap().push((lease.token, "ours"));
                tokio::task::yield_now().await;
                busy.store(false, Ordering::SeqCst);
                assert!(client.release("L", Options::default()).await.unwrap());
            }
        }));
    }
    for t in &theirs {
        let (lock, busy, tokens) = (t.lock("L"), busy.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let token = from_sdk(&lock.lock(LEASE, T, None).await.unwrap());
                assert!(!busy.swap(true, Ordering::SeqCst), "two holders at once");
                tokens.lock().unwrap().push((token, "sdk"));
                tokio::task::yield_now().await;
                busy.store(false, Ordering::SeqCst);
                lock.unlock(T).await.unwrap();
            }
        }));
    }
    for task in tasks {
        within("a contending client", task).await.unwrap();
    }
    let tokens = std::mem::take(&mut *tokens.lock().unwrap());
    assert_eq!(tokens.len(), 4 * ROUNDS);
    assert!(
        tokens.windows(2).all(|w| w[0].0 < w[1].0),
        "tokens out of order: {tokens:?}"
    );
    for t in theirs {
        t.close().await;
    }
}

/// A key written by our edit under our newer token refuses the SDK's write under its older one,
/// with the store's exact "lower version" error; the value stays ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_newer_token_fences_their_older_write() {
    let env = Env::start("fence-theirs");
    let ours = env.ours("ours");
    let theirs = env.sdk("sdk").await;

    let sdk_lock = theirs.lock("L");
    let old = sdk_lock.lock(LEASE, T, None).await.unwrap();
    sdk_lock.unlock(T).await.unwrap();

    let outcome = within(
        "our edit",
        ours.client
            .edit("L", "K", LEASE, wait(), |current| async move {
                assert_eq!(current, None);
                EditAction::Set(Bytes::from_static(b"ours"))
            }),
    )
    .await
    .unwrap();
    assert_eq!(outcome, EditOutcome::Written);

    let stale = theirs
        .store
        .set(
            b"K".to_vec(),
            b"theirs".to_vec(),
            T,
            Some(old.clone()),
            SetOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale.kind(),
            StoreErrorKind::ServiceError(ServiceError::FencingTokenLowerVersion)
        ),
        "{stale:?}"
    );
    assert_eq!(stale.to_string(), LOWER_VERSION);
    // A fenced delete under the old token is refused the same way.
    let stale = theirs
        .store
        .del(b"K".to_vec(), Some(old), T)
        .await
        .unwrap_err();
    assert_eq!(stale.to_string(), LOWER_VERSION);

    let value = theirs.store.get(b"K".to_vec(), T).await.unwrap().response;
    assert_eq!(value.as_deref(), Some(&b"ours"[..]));
    theirs.close().await;
}

/// The SDK writes a key under its token; our edit then reads that value and writes over it under
/// our newer token; a later SDK lock writes under a token newer still. Our token is also
/// accepted when the SDK client presents it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_fenced_write_then_our_newer_one() {
    let env = Env::start("fence-ours");
    let ours = env.ours("ours");
    let theirs = env.sdk("sdk").await;
    let sdk_lock = theirs.lock("L");

    let first = sdk_lock.lock(LEASE, T, None).await.unwrap();
    let written = theirs
        .store
        .set(
            b"K".to_vec(),
            b"theirs".to_vec(),
            T,
            Some(first.clone()),
            SetOptions::default(),
        )
        .await
        .unwrap();
    assert!(written.response);
    sdk_lock.unlock(T).await.unwrap();

    let outcome = within(
        "our edit",
        ours.client
            .edit("L", "K", LEASE, wait(), |current| async move {
                assert_eq!(current.as_deref(), Some(&b"theirs"[..]));
                EditAction::Set(Bytes::from_static(b"ours"))
            }),
    )
    .await
    .unwrap();
    assert_eq!(outcome, EditOutcome::Written);
    let value = theirs.store.get(b"K".to_vec(), T).await.unwrap().response;
    assert_eq!(value.as_deref(), Some(&b"ours"[..]));

    // Our token, presented by the SDK client, guards the key like any other.
    let ours_lease = ours.client.acquire("L", LEASE, wait()).await.unwrap();
    assert!(ours_lease.token > from_sdk(&first));
    let written = theirs
        .store
        .set(
            b"K".to_vec(),
            b"ours, via the sdk".to_vec(),
            T,
            Some(to_sdk(&ours_lease.token)),
            SetOptions::default(),
        )
        .await
        .unwrap();
    assert!(written.response);
    assert!(ours.client.release("L", Options::default()).await.unwrap());

    // A later SDK lock has a newer token still, and its write goes through.
    let later = sdk_lock.lock(LEASE, T, None).await.unwrap();
    assert!(from_sdk(&later) > ours_lease.token);
    let written = theirs
        .store
        .set(
            b"K".to_vec(),
            b"theirs again".to_vec(),
            T,
            Some(later),
            SetOptions::default(),
        )
        .await
        .unwrap();
    assert!(written.response);
    sdk_lock.unlock(T).await.unwrap();

    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    ours.client
        .edit("L", "K", LEASE, wait(), |current| async move {
            *s.lock().unwrap() = current;
            EditAction::Abort
        })
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().as_deref(), Some(&b"theirs again"[..]));
    theirs.close().await;
}
