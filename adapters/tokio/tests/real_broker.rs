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

/// A current-thread tokio runtime per test; drivers are tasks on it.
enum Tokio {}

impl scenarios::Rt for Tokio {
    type Task = tokio::task::JoinHandle<()>;

    tokio_rt!();

    fn connect(settings: &Settings) -> (Client, Self::Task) {
        adapter::connect(settings).unwrap()
    }

    async fn kill(task: Self::Task) {
        task.abort();
        let _ = task.await;
    }
}

scenarios!(Tokio);

mod secured {
    secure_scenarios!(super::Tokio);
}
