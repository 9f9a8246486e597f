//! [`Lock`]: one lock of a [`Client`], named once, with every operation on it.

use crate::handle::{Client, Error, Hold, Lease, Observer};
use leasedlock::bytes::Bytes;
use leasedlock::lock::{EditAction, EditOutcome, Holder, Options};
use std::future::Future;
use std::time::Duration;

/// A lock of a [`Client`], as Go's `leasedlock.New(client, name)` gives: cheap to clone, it
/// carries the name so that no call repeats it. Every method is the [`Client`] method of the same
/// name for this lock; [`Lock::get`], [`Lock::set`] and [`Lock::delete`] access other keys with
/// the token of the lease this client holds on it.
///
/// ```no_run
/// # async fn run(client: leasedlock_driver::Client) -> Result<(), leasedlock_driver::Error> {
/// use leasedlock::lock::Options;
/// use std::time::Duration;
///
/// let lock = client.lock("printer");
/// if let Some(lease) = lock.try_acquire(Duration::from_secs(10), Options::default()).await? {
///     lock.set("printer/job", "report.pdf", Options::default()).await?; // with the lease's token
///     println!("printed under token {}", lease.token);
///     lock.release(Options::default()).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    client: Client,
    name: Bytes,
}

impl Client {
    /// The lock named `name` (nothing is sent).
    pub fn lock(&self, name: impl Into<Bytes>) -> Lock {
        Lock {
            client: self.clone(),
            name: name.into(),
        }
    }
}

impl Lock {
    /// The lock's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The client this lock belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// [`Client::try_acquire`].
    pub async fn try_acquire(
        &self,
        lease: Duration,
        options: Options,
    ) -> Result<Option<Lease>, Error> {
        self.client.try_acquire(&self.name, lease, options).await
    }

    /// [`Client::acquire`].
    pub async fn acquire(&self, lease: Duration, options: Options) -> Result<Lease, Error> {
        self.client.acquire(&self.name, lease, options).await
    }

    /// [`Client::release`].
    pub async fn release(&self, options: Options) -> Result<bool, Error> {
        self.client.release(&self.name, options).await
    }

    /// [`Client::holder`].
    pub async fn holder(&self, options: Options) -> Result<Option<Holder>, Error> {
        self.client.holder(&self.name, options).await
    }

    /// [`Client::hold`].
    pub async fn hold(
        &self,
        lease: Duration,
        interval: Duration,
        options: Options,
    ) -> Result<Hold, Error> {
        self.client.hold(&self.name, lease, interval, options).await
    }

    /// [`Client::edit`].
    pub async fn edit<F, Fut>(
        &self,
        key: impl AsRef<[u8]>,
        lease: Duration,
        options: Options,
        f: F,
    ) -> Result<EditOutcome, Error>
    where
        F: FnOnce(Option<Bytes>) -> Fut,
        Fut: Future<Output = EditAction>,
    {
        self.client.edit(&self.name, key, lease, options, f).await
    }

    /// [`Client::observe`].
    pub async fn observe(&self) -> Result<Observer, Error> {
        self.client.observe(&self.name).await
    }
}
