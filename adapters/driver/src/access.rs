//! Store access: get, set and delete of any key, unfenced or with a fencing token given by the
//! caller ([`Client`]), or with the token of the lease held on a lock ([`Lock`], [`Hold`]).
//!
//! A fenced access past the lease's validity fails with [`OpError::LeaseLapsed`] without sending;
//! a write sent whose outcome is unknown fails with [`OpError::Indeterminate`] (it is never
//! repeated); a token the store finds stale fails with [`OpError::Service`] and its exact text.
//!
//! [`OpError::LeaseLapsed`]: leasedlock::lock::OpError::LeaseLapsed
//! [`OpError::Indeterminate`]: leasedlock::lock::OpError::Indeterminate
//! [`OpError::Service`]: leasedlock::lock::OpError::Service

use crate::actor::Name;
use crate::handle::{Client, Error, Hold};
use crate::lock::Lock;
use leasedlock::bytes::Bytes;
use leasedlock::lock::{Access, Accessed, Event, Fence, Intent, Options};
use leasedlock::FencingToken;

impl Client {
    /// Read `key`: its value, `None` when absent.
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        options: Options,
    ) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref();
        self.access(key, key, Access::Get, Fence::Unfenced, options, value)
            .await
    }

    /// Write `key`, with `fence` as its fencing token when given (a token of a lock that another
    /// process holds, say): the store refuses a token older than the key's.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        fence: Option<FencingToken>,
        options: Options,
    ) -> Result<(), Error> {
        let key = key.as_ref();
        let access = Access::Set(value.into());
        self.access(key, key, access, fence_of(fence), options, written)
            .await
    }

    /// Delete `key`, with `fence` as its fencing token when given; `true` when it existed.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        fence: Option<FencingToken>,
        options: Options,
    ) -> Result<bool, Error> {
        let key = key.as_ref();
        self.access(key, key, Access::Delete, fence_of(fence), options, deleted)
            .await
    }

    /// Starts a store access of `key` on lock `name` and waits for what it found or did, as
    /// `pick` reads it.
    pub(crate) async fn access<T>(
        &self,
        name: &[u8],
        key: &[u8],
        access: Access,
        fence: Fence,
        options: Options,
        pick: fn(Accessed) -> Option<T>,
    ) -> Result<T, Error> {
        let intent = Intent::Access {
            key: Bytes::copy_from_slice(key),
            access,
            fence,
        };
        let op = self.start(Name::new(name), intent, options)?;
        op.outcome(|event| match event {
            Event::Accessed { outcome, .. } => pick(outcome),
            _ => None,
        })
        .await
    }
}

impl Lock {
    /// Read `key` under the lease this client holds on the lock (under `options`' session id):
    /// the value counts only if it arrives while the lease is valid.
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        options: Options,
    ) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref();
        self.client()
            .access(self.name(), key, Access::Get, Fence::Held, options, value)
            .await
    }

    /// Write `key` with the fencing token of the lease this client holds on the lock.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: Options,
    ) -> Result<(), Error> {
        let (key, access) = (key.as_ref(), Access::Set(value.into()));
        self.client()
            .access(self.name(), key, access, Fence::Held, options, written)
            .await
    }

    /// Delete `key` with the fencing token of the lease this client holds on the lock; `true`
    /// when it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>, options: Options) -> Result<bool, Error> {
        let key = key.as_ref();
        self.client()
            .access(
                self.name(),
                key,
                Access::Delete,
                Fence::Held,
                options,
                deleted,
            )
            .await
    }
}

impl Hold {
    /// Read `key` under this hold's lease ([`Lock::get`] with the hold's session id).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        self.lock().get(key, self.options()).await
    }

    /// Write `key` with this hold's current fencing token ([`Lock::set`]).
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<(), Error> {
        self.lock().set(key, value, self.options()).await
    }

    /// Delete `key` with this hold's current fencing token ([`Lock::delete`]).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.lock().delete(key, self.options()).await
    }
}

fn fence_of(token: Option<FencingToken>) -> Fence {
    token.map_or(Fence::Unfenced, Fence::Token)
}

// The engine answers each access with the outcome of its kind.

fn value(outcome: Accessed) -> Option<Option<Bytes>> {
    match outcome {
        Accessed::Value(v) => Some(v),
        _ => None,
    }
}

fn written(outcome: Accessed) -> Option<()> {
    matches!(outcome, Accessed::Written).then_some(())
}

fn deleted(outcome: Accessed) -> Option<bool> {
    match outcome {
        Accessed::Deleted { existed } => Some(existed),
        _ => None,
    }
}
