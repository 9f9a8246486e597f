//! The SDK's side of `tests/one_session.rs`, in a process of its own: an SDK client that edits a
//! counter key under the SDK's own lock, `rounds` times.
//!
//! `sdk_lock_edits <broker port> <client id> <lock name> <counter key> <rounds>`: each round
//! takes the lock (`leased_lock::lock::Client::lock`, waiting), reads the counter, writes it
//! plus one fenced by the lock's token, and unlocks. Prints `written <n>`: how many of those
//! writes the store accepted (a write refused for an older token is not counted).

use leasedlock_interop::sdk::state_store::{ErrorKind, ServiceError, SetOptions};
use leasedlock_interop::{Sdk, SDK_REQUEST_TIMEOUT as T};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, id, lock, key, rounds] = &args[..] else {
        panic!(
            "usage: sdk_lock_edits <broker port> <client id> <lock name> <counter key> <rounds>"
        );
    };
    let (port, rounds): (u16, u32) = (port.parse().unwrap(), rounds.parse().unwrap());
    let sdk = Sdk::connect(port, id.clone()).await;
    let lock = sdk.lock(lock);
    let key = key.clone().into_bytes();
    let mut written = 0u32;
    for _ in 0..rounds {
        let token = lock.lock(LEASE, T, None).await.expect("the SDK's lock");
        let current = sdk
            .store
            .get(key.clone(), T)
            .await
            .expect("SDK get")
            .response;
        let next = counter(current.as_deref()) + 1;
        let set = sdk
            .store
            .set(
                key.clone(),
                next.to_string().into_bytes(),
                T,
                Some(token),
                SetOptions::default(),
            )
            .await;
        match set {
            Ok(set) if set.response => written += 1,
            Ok(_) => {}
            // A newer token wrote the key meanwhile: not written (and the lock did not exclude).
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ServiceError(ServiceError::FencingTokenLowerVersion)
                ) => {}
            Err(e) => panic!("SDK fenced set: {e:?}"),
        }
        lock.unlock(T).await.expect("the SDK's unlock");
    }
    println!("written {written}");
    sdk.close().await;
}

/// The counter's value (none yet: 0).
fn counter(value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| {
        std::str::from_utf8(v)
            .expect("a decimal counter")
            .parse()
            .expect("a decimal counter")
    })
}
