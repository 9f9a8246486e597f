//! The shared real-broker scenarios through the tokio adapter.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_tokio as adapter;

#[path = "../../tests-common/scenarios.rs"]
#[macro_use]
mod scenarios;

#[path = "../../tests-common/secure.rs"]
#[macro_use]
mod secure;

use adapter::{Client, Settings};
use std::future::Future;
use std::time::Duration;

/// A current-thread tokio runtime per test; drivers are tasks on it.
enum Tokio {}

impl scenarios::Rt for Tokio {
    type Task = tokio::task::JoinHandle<()>;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        adapter::connect(settings).unwrap()
    }

    async fn kill(task: Self::Task) {
        task.abort();
        let _ = task.await;
    }

    async fn sleep(d: Duration) {
        tokio::time::sleep(d).await;
    }

    async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }
}

scenarios!(Tokio);

mod secured {
    secure_scenarios!(super::Tokio);
}
