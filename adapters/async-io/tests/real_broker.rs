//! The shared real-broker scenarios through the async-io adapter, on async-std and on smol.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_async_io as adapter;

#[path = "../../tests-common/scenarios.rs"]
#[macro_use]
mod scenarios;

#[path = "../../tests-common/secure.rs"]
#[macro_use]
mod secure;

use adapter::{Client, Settings};
use std::future::Future;
use std::time::Duration;

/// async-std: drivers are async-std tasks.
enum AsyncStd {}

impl scenarios::Rt for AsyncStd {
    type Task = async_std::task::JoinHandle<()>;

    fn block_on<F: Future>(f: F) -> F::Output {
        async_std::task::block_on(f)
    }

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        let (client, driver) = adapter::connect(settings).unwrap();
        (client, async_std::task::spawn(driver))
    }

    async fn kill(task: Self::Task) {
        task.cancel().await;
    }

    async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }

    async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        async_std::task::spawn_blocking(f).await
    }
}

/// smol: drivers are tasks of smol's global executor.
enum Smol {}

impl scenarios::Rt for Smol {
    type Task = smol::Task<()>;

    fn block_on<F: Future>(f: F) -> F::Output {
        smol::block_on(f)
    }

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        let (client, driver) = adapter::connect(settings).unwrap();
        (client, smol::spawn(driver))
    }

    async fn kill(task: Self::Task) {
        task.cancel().await;
    }

    async fn sleep(d: Duration) {
        smol::Timer::after(d).await;
    }

    async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        smol::unblock(f).await
    }
}

mod on_async_std {
    scenarios!(super::AsyncStd);
    secure_scenarios!(super::AsyncStd);
}

mod on_smol {
    scenarios!(super::Smol);
    secure_scenarios!(super::Smol);
}
