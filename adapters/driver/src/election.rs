//! Leader election on a lock: [`Election`] campaigns, a [`Leadership`] is what a campaign wins.
//!
//! A campaign waits for the lock and keeps it renewed; the first loss of its lease ends the
//! leadership (it does not win the lock back by itself: campaign again). What users of .NET's
//! `LeaderElectionClient` or Kubernetes' `leaderelection` expect maps as follows:
//!
//! | there                                     | here                                        |
//! |-------------------------------------------|---------------------------------------------|
//! | campaign / `OnStartedLeading`             | [`Election::campaign`] resolving            |
//! | `OnStoppedLeading`                        | [`Leadership::lost`] resolving              |
//! | resign / `ReleaseOnCancel`                | [`Leadership::resign`], or dropping it      |
//! | current leader / `OnNewLeader`            | [`Election::leader`] / [`Election::observe`] |

use crate::handle::{Client, Error, Hold, HoldWatch, Lease, Observer};
use crate::lock::Lock;
use leasedlock::bytes::Bytes;
use leasedlock::lock::{Holder, Intent, Options};
use leasedlock::FencingToken;
use std::time::Duration;

/// An election on one lock ([`Client::election`]): who holds the lock is the leader.
///
/// ```no_run
/// # async fn run(client: leasedlock_driver::Client) -> Result<(), leasedlock_driver::Error> {
/// use std::time::Duration;
///
/// let election = client.election("scheduler", Duration::from_secs(10));
/// loop {
///     let mut leadership = election.campaign().await?; // waits until this client leads
///     let token = leadership.token();
///     println!("leading with token {token:?}");
///     // Lead until the leadership is lost, say by select!-ing the work against it.
///     let why = leadership.lost().await;
///     println!("no longer the leader: {why}");
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Election {
    lock: Lock,
    lease: Duration,
    interval: Duration,
    options: Options,
}

impl Client {
    /// An election on lock `name` whose leadership lasts `lease` unless renewed (every
    /// `lease / 3` by default); nothing is sent until a call.
    pub fn election(&self, name: impl Into<Bytes>, lease: Duration) -> Election {
        Election {
            lock: self.lock(name),
            lease,
            interval: lease / 3,
            options: Options::default(),
        }
    }
}

impl Election {
    /// Renew every `interval` instead (it must leave time to renew before the lease lapses).
    pub fn with_renew_interval(mut self, interval: Duration) -> Election {
        self.interval = interval;
        self
    }

    /// Campaign with these options: the session id makes the candidate (several candidates of
    /// one client each need their own), the timeout bounds the wait of each campaign.
    pub fn with_options(mut self, options: Options) -> Election {
        self.options = options;
        self
    }

    /// The lock the election is held on.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Waits until this candidate is the leader (or the timeout of its options); the
    /// leadership is renewed until it is lost or resigned.
    pub async fn campaign(&self) -> Result<Leadership, Error> {
        let intent = Intent::Keep {
            lease: self.lease,
            interval: self.interval,
            wait: true,
        };
        let client = self.lock.client();
        let hold = client.start_hold(self.lock.name(), intent, self.options.clone());
        // A campaign that waits never ends busy.
        let hold = hold.await?.ok_or(Error::Closed)?;
        Ok(Leadership { hold })
    }

    /// The current leader, `None` when there is none.
    pub async fn leader(&self) -> Result<Option<Holder>, Error> {
        self.lock.holder(self.options.clone()).await
    }

    /// The leader changes, until the [`Observer`] is dropped.
    pub async fn observe(&self) -> Result<Observer, Error> {
        self.lock.observe().await
    }
}

/// This candidate leads until [`Leadership::lost`] resolves. Dropping it resigns.
#[must_use = "dropping a Leadership resigns it"]
#[derive(Debug)]
pub struct Leadership {
    hold: Hold,
}

impl Leadership {
    /// The current lease, while it may be used.
    pub fn lease(&self) -> Option<Lease> {
        self.hold.lease()
    }

    /// The current fencing token, while it may be used: guard the leader's writes with it.
    pub fn token(&self) -> Option<FencingToken> {
        self.hold.token()
    }

    /// A handle to the lease for other tasks.
    pub fn watch(&self) -> HoldWatch {
        self.hold.watch()
    }

    /// The hold behind the leadership: its fenced [`Hold::set`], [`Hold::get`] and
    /// [`Hold::delete`] write with the leader's token.
    pub fn hold(&self) -> &Hold {
        &self.hold
    }

    /// Resolves when the leadership is lost: [`Error::LeaseLost`] with why, or the error that
    /// ended it. Cancel-safe: `select!` the leader's work against it.
    pub async fn lost(&mut self) -> Error {
        while self.hold.next_event().await.is_some() {}
        self.hold.error().cloned().unwrap_or(Error::Closed)
    }

    /// Stop leading and release the lock; `true` when the store still had it as ours.
    pub async fn resign(self) -> Result<bool, Error> {
        self.hold.close().await
    }
}
