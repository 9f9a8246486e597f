//! The async API: a cloneable [`Client`] handle, [`Hold`] and [`Observer`].
//!
//! Every method sends a command to the driver and awaits the events of its operation. Dropping a
//! future before it completes cancels the operation in the engine (a waiting acquire still sends
//! KEYNOTIFY STOP; a hold is released).

use crate::actor::{Command, Name, Ticket};
use crate::changes::{changes, ChangeSource};
use crate::mailbox::Sender;
use crate::slot::{Item, Sink, Slot};
use crate::state::ConnectionWatch;
use crate::stats::Stats;
use futures_channel::oneshot;
use futures_core::Stream;
use leasedlock::bytes::Bytes;
use leasedlock::lock::{
    EditAction, EditOutcome, Event, Holder, Intent, IntentError, LossReason, OpError, Options,
};
use leasedlock::mqtt::{ConnectReason, DisconnectCause};
use leasedlock::FencingToken;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused the intent at once: nothing was sent.
    #[error(transparent)]
    Intent(#[from] IntentError),
    /// The operation failed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// The driver has stopped (its task ended or was dropped).
    #[error("the driver has stopped")]
    Closed,
    /// The lease of a hold that ends at its first loss ([`Client::try_hold`], a
    /// [`Leadership`](crate::Leadership)) was lost.
    #[error("the lease was lost: {0:?}")]
    LeaseLost(LossReason),
    /// The broker refused the connection (CONNACK reason code: bad user name or password, not
    /// authorized, …). The driver keeps trying with backoff.
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReason),
    /// The connection attempt ended before the broker accepted it (DISCONNECT, connect timeout,
    /// transport closed). The driver keeps trying with backoff.
    #[error("the connection ended before it was accepted: {0:?}")]
    NotAccepted(DisconnectCause),
    /// The TCP connection or the TLS handshake failed. The driver keeps trying with backoff.
    #[error("cannot reach the broker ({kind:?}): {message}")]
    Transport {
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// Its text (for TLS, rustls' reason).
        message: String,
    },
}

/// A lease won: its fencing token and until when it may be used.
///
/// Pass the token along with every write to the resource the lock guards, and stop using it
/// once [`Lease::is_valid`] is false. A lease of `try_acquire`/`acquire` also turns invalid as
/// soon as the client learns that it is gone before its time: the store reported the lock
/// deleted or taken by another holder, or it was released.
///
/// ```no_run
/// use leasedlock_driver::{Client, Error};
/// use leasedlock::lock::Options;
/// use std::time::Duration;
///
/// async fn guarded_write(client: &Client) -> Result<(), Error> {
///     let lease = client.acquire("job", Duration::from_secs(10), Options::default()).await?;
///     if lease.is_valid() {
///         println!("write with fencing token {}", lease.token);
///     }
///     client.release("job", Options::default()).await?;
///     assert!(!lease.is_valid());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token of this acquisition (or renewal).
    pub token: FencingToken,
    /// The token may be used until this instant (lease minus the safety margin).
    pub valid_until: Instant,
    /// `valid_until` on the wall clock, read when the lease was reported: the monotonic clock
    /// stands still while the host is suspended, the wall clock does not.
    valid_until_wall_ms: u64,
    /// The slot of the `try_acquire`/`acquire` that won it: the actor revokes it there when
    /// the lease is gone early. `None` for a hold's leases, whose losses the hold reports.
    won_by: Option<Arc<Slot>>,
}

/// Two leases are the same lease when their token and end are.
impl PartialEq for Lease {
    fn eq(&self, other: &Lease) -> bool {
        self.token == other.token && self.valid_until == other.valid_until
    }
}

impl Eq for Lease {}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("token", &self.token)
            .field("valid_until", &self.valid_until)
            .field("revoked", &self.is_revoked())
            .finish()
    }
}

impl Lease {
    /// The lease the engine reported now: `token`, usable until `valid_until`.
    pub(crate) fn new(token: FencingToken, valid_until: Instant) -> Lease {
        let now = crate::clock::now();
        let left = valid_until.saturating_duration_since(now.instant);
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        Lease {
            token,
            valid_until,
            valid_until_wall_ms: now.wall_ms.saturating_add(left_ms),
            won_by: None,
        }
    }

    /// The lease a `try_acquire`/`acquire` won, revoked through its `slot`.
    fn won(token: FencingToken, valid_until: Instant, slot: Arc<Slot>) -> Lease {
        Lease {
            won_by: Some(slot),
            ..Lease::new(token, valid_until)
        }
    }

    fn is_revoked(&self) -> bool {
        self.won_by.as_ref().is_some_and(|slot| slot.is_revoked())
    }

    /// Whether the token may still be used now: by both clocks (a suspended host's monotonic
    /// clock does not advance), and while the client knows of no end of the lease.
    pub fn is_valid(&self) -> bool {
        let now = crate::clock::now();
        now.instant < self.valid_until
            && now.wall_ms < self.valid_until_wall_ms
            && !self.is_revoked()
    }
}

/// What happened to a [`Hold`] after it first acquired the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HoldEvent {
    /// The lease was renewed: use the new token from now on.
    Renewed(Lease),
    /// The lease was lost; the hold is acquiring again and reports the next [`HoldEvent::Acquired`].
    Lost(LossReason),
    /// The lock was won again after a loss.
    Acquired(Lease),
}

/// A cloneable handle to a driver: every lock operation, as async methods.
///
/// Lock names and keys are bytes; options (timeout, session id) are the core's
/// [`Options`](leasedlock::lock::Options). A call costs the adapter one allocation (the slot its
/// events come back in) when the lock name is at most 38 bytes long, two otherwise.
///
/// An adapter's `connect` returns one (the adapters re-export this type); clone it freely,
/// every clone talks to the same driver:
///
/// ```no_run
/// use leasedlock_driver::{Client, Error};
/// use leasedlock::lock::Options;
/// use std::time::Duration;
///
/// async fn run_once(client: &Client) -> Result<(), Error> {
///     client.connected().await?;
///     let lease = Duration::from_secs(10);
///     match client.try_acquire("nightly-report", lease, Options::default()).await? {
///         Some(won) => {
///             println!("mine, token {}", won.token);
///             client.release("nightly-report", Options::default()).await?;
///         }
///         None => println!("held by {:?}", client.holder("nightly-report", Options::default()).await?),
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    tx: Sender,
}

/// The handle side of one operation: the slot its events arrive in. Dropping it before the
/// operation ended cancels the operation.
pub(crate) struct Op {
    slot: Arc<Slot>,
    tx: Sender,
    /// The operation may still be running: cancel it when dropped.
    armed: bool,
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.armed {
            let slot = self.slot.clone();
            let _ = self.tx.send(Command::Cancel { slot });
        }
    }
}

impl Op {
    /// The next item of the operation; an intent refused and the end of the slot (the driver
    /// stopped) are errors.
    async fn next(&mut self) -> Result<Item, Error> {
        match poll_fn(|cx| self.slot.poll_next(cx)).await {
            Some(Item::Refused(e)) => {
                self.armed = false;
                Err(Error::Intent(e))
            }
            Some(item) => Ok(item),
            None => {
                self.armed = false;
                Err(Error::Closed)
            }
        }
    }

    /// The operation ended: nothing to cancel.
    fn done(&mut self) {
        self.armed = false;
    }

    /// Waits for the operation's final event: `outcome` maps it to the result (`None` for events
    /// that are not final); a failure is the operation's error.
    pub(crate) async fn outcome<T>(
        mut self,
        outcome: impl Fn(Event) -> Option<T>,
    ) -> Result<T, Error> {
        loop {
            let Item::Event(event) = self.next().await? else {
                continue;
            };
            if let Event::Failed { error, .. } = event {
                self.done();
                return Err(Error::Op(error));
            }
            if let Some(result) = outcome(event) {
                self.done();
                return Ok(result);
            }
        }
    }
}

impl Client {
    /// A handle sending to a driver's command queue.
    pub(crate) fn new(tx: Sender) -> Client {
        Client { tx }
    }

    /// Sends the start of an operation; its events arrive in a new slot, its only allocation
    /// (with a name of up to 38 bytes).
    pub(crate) fn start(&self, name: Name, intent: Intent, options: Options) -> Result<Op, Error> {
        let slot = Slot::new(matches!(intent, Intent::Hold { .. } | Intent::Keep { .. }));
        self.tx.send(Command::Start {
            name,
            intent,
            options,
            sink: Sink::new(slot.clone()),
        })?;
        Ok(Op {
            slot,
            tx: self.tx.clone(),
            armed: true,
        })
    }

    /// One attempt to take the lock: `Some(lease)` when won, `None` when another holder has it.
    pub async fn try_acquire(
        &self,
        name: impl AsRef<[u8]>,
        lease: Duration,
        options: Options,
    ) -> Result<Option<Lease>, Error> {
        let op = self.start(
            Name::new(name.as_ref()),
            Intent::TryAcquire { lease },
            options,
        )?;
        let slot = op.slot.clone();
        op.outcome(|event| match event {
            Event::Acquired {
                token, valid_until, ..
            } => Some(Some(Lease::won(token, valid_until, slot.clone()))),
            Event::Busy { .. } => Some(None),
            _ => None,
        })
        .await
    }

    /// Take the lock, waiting as long as needed or until `options.timeout`.
    pub async fn acquire(
        &self,
        name: impl AsRef<[u8]>,
        lease: Duration,
        options: Options,
    ) -> Result<Lease, Error> {
        let op = self.start(Name::new(name.as_ref()), Intent::Acquire { lease }, options)?;
        let slot = op.slot.clone();
        op.outcome(|event| match event {
            Event::Acquired {
                token, valid_until, ..
            } => Some(Lease::won(token, valid_until, slot.clone())),
            _ => None,
        })
        .await
    }

    /// Release the lock (ending any hold on it); `true` when the store had it under our holder.
    pub async fn release(&self, name: impl AsRef<[u8]>, options: Options) -> Result<bool, Error> {
        let op = self.start(Name::new(name.as_ref()), Intent::Release, options)?;
        released(op).await
    }

    /// Who holds the lock, `None` when it is free.
    pub async fn holder(
        &self,
        name: impl AsRef<[u8]>,
        options: Options,
    ) -> Result<Option<Holder>, Error> {
        let op = self.start(Name::new(name.as_ref()), Intent::Holder, options)?;
        op.outcome(|event| match event {
            Event::Holder { holder, .. } => Some(holder),
            _ => None,
        })
        .await
    }

    /// Take the lock and keep it, renewing every `interval`; resolves once it is first acquired
    /// (`options.timeout` bounds that first acquisition). Dropping the [`Hold`] releases the lock.
    /// After a loss the hold takes the lock again by itself ([`HoldEvent::Lost`], then
    /// [`HoldEvent::Acquired`]).
    ///
    /// A hold costs no task and no wake-up while nobody reads its events: its latest lease is
    /// kept for [`Hold::token`], and its renewals are coalesced (see [`Hold::next_event`]).
    pub async fn hold(
        &self,
        name: impl AsRef<[u8]>,
        lease: Duration,
        interval: Duration,
        options: Options,
    ) -> Result<Hold, Error> {
        let intent = Intent::Hold { lease, interval };
        // A hold that waits never ends busy.
        let held = self.start_hold(name.as_ref(), intent, options).await?;
        held.ok_or(Error::Op(OpError::Cancelled))
    }

    /// One attempt to take the lock, kept on success: `None` when another holder has it, else
    /// a [`Hold`] renewed every `interval` until it is closed or its lease is lost (the first
    /// loss ends it: [`HoldEvent::Lost`], then no more events, and [`Hold::error`] is
    /// [`Error::LeaseLost`]).
    pub async fn try_hold(
        &self,
        name: impl AsRef<[u8]>,
        lease: Duration,
        interval: Duration,
        options: Options,
    ) -> Result<Option<Hold>, Error> {
        let intent = Intent::Keep {
            lease,
            interval,
            wait: false,
        };
        self.start_hold(name.as_ref(), intent, options).await
    }

    /// Starts a hold or a keep and waits for its first acquisition (`None`: busy).
    pub(crate) async fn start_hold(
        &self,
        name: &[u8],
        intent: Intent,
        options: Options,
    ) -> Result<Option<Hold>, Error> {
        let name = Name::new(name);
        let ends_at_loss = matches!(intent, Intent::Keep { .. });
        let mut op = self.start(name.clone(), intent, options.clone())?;
        loop {
            match op.next().await? {
                Item::Event(Event::Acquired { .. }) => {
                    return Ok(Some(Hold {
                        name,
                        session_id: options.session_id.map(String::into_boxed_str),
                        op,
                        ends_at_loss,
                        lost: None,
                        end: None,
                    }))
                }
                Item::Event(Event::Busy { .. }) => {
                    op.done();
                    return Ok(None);
                }
                Item::Event(Event::Failed { error, .. }) => {
                    op.done();
                    return Err(Error::Op(error));
                }
                _ => {}
            }
        }
    }

    /// Read-modify-write `key` under the lock: acquire, read the key, let `f` decide from its
    /// current value (`None` when absent), write with the fencing token, release.
    pub async fn edit<F, Fut>(
        &self,
        name: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        lease: Duration,
        options: Options,
        f: F,
    ) -> Result<EditOutcome, Error>
    where
        F: FnOnce(Option<Bytes>) -> Fut,
        Fut: Future<Output = EditAction>,
    {
        let intent = Intent::Edit {
            key: Bytes::copy_from_slice(key.as_ref()),
            lease,
        };
        let mut op = self.start(Name::new(name.as_ref()), intent, options)?;
        let mut f = Some(f);
        loop {
            match op.next().await? {
                Item::Event(Event::EditRequested {
                    op: id, current, ..
                }) => {
                    let action = match f.take() {
                        Some(f) => f(current).await,
                        None => EditAction::Abort,
                    };
                    self.tx.send(Command::CompleteEdit { op: id, action })?;
                }
                Item::Event(Event::EditDone { outcome, .. }) => {
                    op.done();
                    return Ok(outcome);
                }
                Item::Event(Event::Failed { error, .. }) => {
                    op.done();
                    return Err(Error::Op(error));
                }
                _ => {}
            }
        }
    }

    /// Waits until the broker has accepted a connection: at once if it has, else the outcome
    /// of the attempt in progress or the next one — [`Error::Refused`] (a wrong password, say),
    /// [`Error::NotAccepted`] or [`Error::Transport`] (a TLS handshake refused, say). The driver
    /// keeps reconnecting after a failure; call again to wait for a later attempt.
    pub async fn connected(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::WatchConnection(tx))?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// The driver's metrics now: operations by kind and outcome, requests, retries,
    /// connections, ignored input, locks held, waits and renewal slack (see [`Stats`]).
    ///
    /// ```no_run
    /// # async fn run(client: leasedlock_driver::Client) -> Result<(), leasedlock_driver::Error> {
    /// let stats = client.stats().await?;
    /// println!(
    ///     "{} locks held, {} acquisitions waited {:?} in all, {} reconnects",
    ///     stats.locks_held, stats.acquisitions, stats.wait_total, stats.reconnects
    /// );
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Stats(tx))?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// A watch of the connection state: [`ConnectionState::Connecting`](crate::ConnectionState::Connecting),
    /// [`Connected`](crate::ConnectionState::Connected) or [`Disconnected`](crate::ConnectionState::Disconnected) with its cause. Unlike
    /// [`Client::connected`], it sees every later change too; its stream ends when the driver
    /// stops.
    pub fn connection_state(&self) -> ConnectionWatch {
        self.tx.connection_state()
    }

    /// Report the holder changes of a lock (`None`: released or expired) until the [`Observer`]
    /// is dropped.
    pub async fn observe(&self, name: impl AsRef<[u8]>) -> Result<Observer, Error> {
        let ticket = self.tx.ticket();
        let (sink, rx) = changes();
        let (ack, acked) = oneshot::channel();
        self.tx.send(Command::Observe {
            ticket,
            name: Name::new(name.as_ref()),
            sink,
            ack,
        })?;
        match acked.await {
            Ok(Ok(())) => Ok(Observer {
                rx,
                tx: self.tx.clone(),
                ticket,
            }),
            Ok(Err(e)) => Err(Error::Intent(e)),
            Err(_) => Err(Error::Closed),
        }
    }
}

async fn released(op: Op) -> Result<bool, Error> {
    op.outcome(|event| match event {
        Event::Released { was_held, .. } => Some(was_held),
        _ => None,
    })
    .await
}

/// `options` without their timeout (a hold's store accesses have none of their own).
/// A lock kept by renewals. Dropping it ends the hold and releases the lock.
///
/// ```no_run
/// # async fn run(client: leasedlock_driver::Client) -> Result<(), leasedlock_driver::Error> {
/// use leasedlock::lock::Options;
/// use std::time::Duration;
///
/// let mut hold = client
///     .hold("leader", Duration::from_secs(10), Duration::from_secs(3), Options::default())
///     .await?;
/// let watch = hold.watch(); // the token, readable from any task
/// hold.set("leader/config", "v2").await?; // fenced with the current token
/// while let Some(event) = hold.next_event().await {
///     println!("{event:?}; token now {:?}", watch.token());
/// }
/// println!("the hold ended: {:?}", hold.error());
/// # Ok(()) }
/// ```
#[must_use = "dropping a Hold releases the lock"]
pub struct Hold {
    name: Name,
    /// The session id of the hold's options, which names the lease of [`Hold::set`] and the
    /// others (the timeout was the first acquisition's; boxed, it takes 16 bytes, not 40).
    session_id: Option<Box<str>>,
    op: Op,
    /// Its first loss ends it ([`Client::try_hold`], a leadership).
    ends_at_loss: bool,
    /// The loss that ends a hold that ends at its first loss.
    lost: Option<LossReason>,
    /// The hold has ended: no more events. `Some(None)`: ended by a release or a close. Boxed:
    /// an error is the largest field, and only an ended hold has one.
    end: Option<Option<Box<Error>>>,
}

/// The lease of a [`Hold`], readable from any task while another awaits the hold's events
/// ([`Hold::watch`]); cheap to clone.
#[derive(Clone)]
pub struct HoldWatch {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for HoldWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldWatch")
            .field("lease", &self.lease())
            .finish()
    }
}

impl HoldWatch {
    /// [`Hold::lease`].
    pub fn lease(&self) -> Option<Lease> {
        self.slot.lease().filter(Lease::is_valid)
    }

    /// [`Hold::token`].
    pub fn token(&self) -> Option<FencingToken> {
        self.lease().map(|l| l.token)
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("name", &self.name)
            .field("lease", &self.lease())
            .finish()
    }
}

impl Hold {
    /// The current lease, while its token may be used (checked against the clock now). It is
    /// the latest renewal's, whether or not [`Hold::next_event`] has reported it.
    pub fn lease(&self) -> Option<Lease> {
        self.watch().lease()
    }

    /// The current fencing token, while it may be used.
    pub fn token(&self) -> Option<FencingToken> {
        self.lease().map(|l| l.token)
    }

    /// A handle to this hold's lease for other tasks.
    pub fn watch(&self) -> HoldWatch {
        HoldWatch {
            slot: self.op.slot.clone(),
        }
    }

    /// Why the hold ended, once [`Hold::next_event`] has returned `None` (as the Go seed's
    /// `Token()` returns it): the hold's error, [`Error::LeaseLost`] for a hold that ends at its
    /// first loss, [`Error::Closed`] when the driver stopped. `None` while the hold runs, and
    /// when a release ended it.
    pub fn error(&self) -> Option<&Error> {
        self.end.as_ref()?.as_deref()
    }

    /// The hold has ended, with this error (or none).
    fn ended(&mut self, error: Option<Error>) -> Option<HoldEvent> {
        self.op.done();
        self.end = Some(error.map(Box::new));
        None
    }

    /// The next renewal, loss or re-acquisition; `None` once the hold has ended (an error of the
    /// hold, or the driver stopped).
    ///
    /// Renewals are coalesced: a reader that falls behind sees the latest renewal, not every
    /// one (the events wait in a queue that holds at most one pending renewal, so a hold whose
    /// events are never read keeps bounded memory). Losses and re-acquisitions are never
    /// dropped and keep their order; a renewal reported before a loss is the last one before it.
    pub async fn next_event(&mut self) -> Option<HoldEvent> {
        if self.end.is_some() {
            return None;
        }
        loop {
            let event = match self.op.next().await {
                Ok(Item::Renewed(lease)) => return Some(HoldEvent::Renewed(lease)),
                Ok(Item::Event(event)) => event,
                Ok(Item::Refused(e)) => return self.ended(Some(Error::Intent(e))),
                Err(e) => return self.ended(Some(e)),
            };
            let lease = Lease::new;
            match event {
                Event::Renewed {
                    token, valid_until, ..
                } => return Some(HoldEvent::Renewed(lease(token, valid_until))),
                Event::Acquired {
                    token, valid_until, ..
                } => return Some(HoldEvent::Acquired(lease(token, valid_until))),
                Event::Lost { reason, .. } => {
                    if self.ends_at_loss {
                        self.lost = Some(reason.clone());
                    }
                    return Some(HoldEvent::Lost(reason));
                }
                Event::HoldEnded { .. } => {
                    let error = self.lost.take().map(Error::LeaseLost);
                    return self.ended(error);
                }
                Event::Failed { error, .. } => return self.ended(Some(Error::Op(error))),
                _ => {}
            }
        }
    }

    /// The client of this hold (its operation's route to the actor).
    fn client(&self) -> Client {
        Client {
            tx: self.op.tx.clone(),
        }
    }

    /// The lock this hold keeps.
    pub fn lock(&self) -> crate::Lock {
        self.client().lock(Bytes::copy_from_slice(&self.name))
    }

    /// The options of this hold's store accesses: its session id, no timeout of its own.
    pub(crate) fn options(&self) -> Options {
        match &self.session_id {
            Some(id) => Options::default().with_session_id(&**id),
            None => Options::default(),
        }
    }

    /// How many events wait unread (at most one of them a renewal). For tests and diagnostics.
    #[doc(hidden)]
    pub fn queued_events(&self) -> usize {
        self.op.slot.queued()
    }

    /// Stop renewing and release the lock; `true` when the store still had it under our holder.
    pub async fn close(mut self) -> Result<bool, Error> {
        if self.end.is_some() {
            return Err(Error::Intent(IntentError::NoHold));
        }
        let op = self
            .client()
            .start(self.name.clone(), Intent::CloseHold, Options::default());
        // The release ends the hold; the hold's own drop has nothing left to cancel.
        self.op.done();
        released(op?).await
    }
}

/// A holder change of an observed lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The lock was taken (or renewed, or taken over) by this holder.
    Held(Holder),
    /// The lock was released, or its lease ran out at the store.
    Free,
}

impl From<Option<Holder>> for Change {
    fn from(holder: Option<Holder>) -> Change {
        holder.map_or(Change::Free, Change::Held)
    }
}

/// Holder changes of one lock, as [`Change`]s; `Err` when the broker refused the notification
/// registration (the stream then ends).
///
/// An observer that falls behind by more than 64 changes loses the oldest ones (counted in
/// [`Stats::events_dropped`](crate::Stats::events_dropped)): memory stays bounded, and the last
/// change it reads is always the latest.
///
/// Dropping it stops observing (KEYNOTIFY STOP once nobody else needs notifications).
///
/// ```no_run
/// use leasedlock_driver::{Change, Client, Error};
///
/// async fn watch_leader(client: &Client) -> Result<(), Error> {
///     let mut changes = client.observe("leader").await?;
///     while let Some(change) = changes.next().await {
///         match change? {
///             Change::Held(holder) => println!("led by {holder}"),
///             _ => println!("nobody leads"),
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct Observer {
    rx: ChangeSource,
    tx: Sender,
    ticket: Ticket,
}

impl Drop for Observer {
    fn drop(&mut self) {
        let ticket = self.ticket;
        let _ = self.tx.send(Command::Unobserve { ticket });
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Observer {
    /// The next holder change; `None` when the driver stopped or observing failed.
    pub async fn next(&mut self) -> Option<Result<Change, OpError>> {
        poll_fn(|cx| self.rx.poll_next(cx)).await
    }
}

impl Stream for Observer {
    type Item = Result<Change, OpError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::mailbox;
    use crate::slot::tests::{ids, CountingWaker};
    use std::task::Waker;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_dropped_operation_future_cancels_its_operation() {
        let (tx, mut rx) = mailbox();
        let client = Client::new(tx);
        let mut fut = Box::pin(client.acquire("L", Duration::from_secs(5), Options::default()));
        assert!(poll_once(fut.as_mut()).is_pending());
        drop(fut);
        let started = match rx.try_recv() {
            Some(Command::Start { sink, .. }) => sink,
            other => panic!("expected Start, got {other:?}"),
        };
        match rx.try_recv() {
            Some(Command::Cancel { slot }) => {
                let (op, _) = ids();
                started.started(op);
                assert_eq!(
                    slot.op(),
                    Some(op),
                    "the cancel names the started operation"
                );
            }
            other => panic!("expected Cancel, got {other:?}"),
        }
    }

    #[test]
    fn a_finished_operation_sends_no_cancel() {
        let (tx, mut rx) = mailbox();
        let client = Client::new(tx);
        let mut fut = Box::pin(client.holder("L", Options::default()));
        assert!(poll_once(fut.as_mut()).is_pending());
        let Some(Command::Start { sink, .. }) = rx.try_recv() else {
            panic!("expected Start");
        };
        let (op, lock) = ids();
        sink.deliver(Event::Holder {
            op,
            lock,
            holder: None,
        });
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready(Ok(None)));
        drop(fut);
        assert!(rx.try_recv().is_none(), "nothing more was sent");
    }

    #[test]
    fn a_stopped_driver_is_reported_as_closed() {
        let (tx, rx) = mailbox();
        drop(rx);
        let client = Client::new(tx);
        let mut fut = Box::pin(client.release("L", Options::default()));
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready(Err(Error::Closed)));
    }

    #[test]
    fn a_pending_operation_is_woken_and_closed_when_the_driver_drops_its_route() {
        let (tx, mut rx) = mailbox();
        let client = Client::new(tx);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(client.acquire("L", Duration::from_secs(5), Options::default()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let Some(Command::Start { sink, .. }) = rx.try_recv() else {
            panic!("expected Start");
        };
        drop(sink);
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Err(Error::Closed)));
        drop(fut);
        assert!(
            rx.try_recv().is_none(),
            "an operation the driver ended is not cancelled"
        );
    }
}
