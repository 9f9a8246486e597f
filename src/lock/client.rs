//! The lock engine proper: operations, pending requests, timers and per-lock state.

use super::rng::SplitMix64;
use super::slab::{push_tight, Slab, SlabKey};
use super::timer::{TimerKey, Timers};
use super::{
    Config, ConfigError, EditAction, EditOutcome, Event, IntentError, LockId, LossReason,
    NotDelivered, OpError, OpId, Options, Output,
};
use crate::hlc::{FencingToken, Hlc, HlcClock};
use crate::request_packet::{RequestTemplate, TooLarge};
use crate::store::{
    self, Command, NotificationOp, Request, RequestError, RequestSender, ResponseBody,
    ResponseError, SetCondition, SetOptions, StoreReply,
};
use crate::{Message, Now, SharedStr};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// Longest lease or timeout accepted: anything longer is surely a unit mistake.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Delay before repeating a request that reached no state store.
const NOT_DELIVERED_RETRY: Duration = Duration::from_millis(100);
/// Shortest fallback re-check of a waiting acquire.
const MIN_FALLBACK: Duration = Duration::from_millis(10);
/// How long a lost race keeps this client's retries after a DELETE jittered (see `Lock::herd_until`).
const HERD_MEMORY: Duration = Duration::from_secs(1);

/// Names a pending request inside the engine: the slab key of its entry. On the wire, the
/// correlation data is this client's random prefix (high 64 bits) and this (low 64 bits).
type Corr = NonZeroU64;

/// The slot of a pending request (the low half of its correlation data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReqKey(u64);

impl SlabKey for ReqKey {
    fn from_raw(raw: u64) -> Self {
        ReqKey(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}

impl SlabKey for OpId {
    fn from_raw(raw: u64) -> Self {
        // Slab keys are never 0; MAX names no slot that can exist.
        OpId(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
    fn raw(self) -> u64 {
        self.0.get()
    }
}

/// The name of the request in a slot (slab keys are never 0; MAX names no slot that can exist).
fn corr_of_key(key: ReqKey) -> Corr {
    NonZeroU64::new(key.0).unwrap_or(NonZeroU64::MAX)
}

/// Requests awaiting their response, by correlation data: this client's prefix (high half) and a
/// slot of the slab (low half), so a response is matched without a search.
#[derive(Debug)]
struct PendingRequests {
    prefix: u64,
    slab: Slab<ReqKey, Pending>,
}

impl PendingRequests {
    /// The request named by 16 bytes of correlation data, if they are this client's.
    fn corr_of(&self, data: &[u8]) -> Option<Corr> {
        let wire = u128::from_be_bytes(<[u8; 16]>::try_from(data).ok()?);
        NonZeroU64::new(wire as u64).filter(|_| (wire >> 64) as u64 == self.prefix)
    }

    /// The correlation data of a request.
    fn wire(&self, corr: Corr) -> u128 {
        (u128::from(self.prefix) << 64) | u128::from(corr.get())
    }

    /// The name the next [`PendingRequests::insert`] gives.
    fn next_corr(&self) -> Corr {
        corr_of_key(self.slab.next_key())
    }

    fn insert(&mut self, p: Pending) -> Corr {
        corr_of_key(self.slab.insert(p))
    }

    fn get(&self, corr: &Corr) -> Option<&Pending> {
        self.slab.get(&ReqKey(corr.get()))
    }

    fn get_mut(&mut self, corr: &Corr) -> Option<&mut Pending> {
        self.slab.get_mut(&ReqKey(corr.get()))
    }

    fn remove(&mut self, corr: &Corr) -> Option<Pending> {
        self.slab.remove(&ReqKey(corr.get()))
    }

    /// The correlation data of every pending request, in the order they were sent.
    fn corrs_in_order(&self) -> Vec<Corr> {
        let mut all: Vec<(u64, Corr)> = self
            .slab
            .keys()
            .map(|k| (self.slab[&k].seq, corr_of_key(k)))
            .collect();
        all.sort_unstable();
        all.into_iter().map(|(_, corr)| corr).collect()
    }
}

/// Gives back the memory of a queue that a burst (thousands of locks at once) left large.
pub(crate) fn shrink_after_burst<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 1024 {
        queue.shrink_to(64);
    }
}

/// FNV-1a of a lock name: deterministic, for `Client::by_name`.
fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `at + d`, saturating far in the future instead of overflowing.
fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(MAX_DURATION))
        .unwrap_or(at)
}

/// Counters of what the client ignored or refused; useful in tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests published.
    pub requests_sent: u64,
    /// Responses whose correlation data matched no pending request (late, duplicate or foreign).
    pub unmatched_responses: u64,
    /// Messages that could not be decoded or were on a topic the client does not use.
    pub malformed_messages: u64,
    /// Timestamps the hybrid logical clock refused (drift or overflow).
    pub clock_errors: u64,
    /// Notifications processed.
    pub notifications: u64,
}

#[derive(Debug)]
struct Lease {
    holder: Bytes,
    token: FencingToken,
    valid_until: Instant,
    timer: TimerKey,
    /// The hold or edit whose lease this is; `None` for `try_acquire`/`acquire`.
    owner: Option<OpId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notify {
    Off,
    Pending(Corr),
    On,
}

/// A few operation ids in the order they were added (their order of creation). A lock rarely
/// has more than one operation: one is kept inline, more in a vector.
#[derive(Debug, Default)]
enum IdSet {
    #[default]
    Empty,
    One(OpId),
    Many(Vec<OpId>),
}

impl IdSet {
    fn as_slice(&self) -> &[OpId] {
        match self {
            IdSet::Empty => &[],
            IdSet::One(id) => std::slice::from_ref(id),
            IdSet::Many(ids) => ids,
        }
    }

    fn insert(&mut self, id: OpId) {
        match self {
            IdSet::Empty => *self = IdSet::One(id),
            IdSet::One(first) if *first != id => *self = IdSet::Many(vec![*first, id]),
            IdSet::Many(ids) if !ids.contains(&id) => ids.push(id),
            _ => {}
        }
    }

    /// Whether `id` was there.
    fn remove(&mut self, id: &OpId) -> bool {
        match self {
            IdSet::One(first) if first == id => {
                *self = IdSet::Empty;
                true
            }
            IdSet::Many(ids) => match ids.iter().position(|x| x == id) {
                Some(at) => {
                    ids.remove(at);
                    if ids.len() <= 1 {
                        *self = ids.first().map_or(IdSet::Empty, |&only| IdSet::One(only));
                    }
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = OpId> + '_ {
        self.as_slice().iter().copied()
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

#[derive(Debug)]
struct Lock {
    name: Bytes,
    lease: Option<Lease>,
    hold: Option<OpId>,
    /// The edit that currently works on the lock, and those waiting behind it.
    edit: Option<OpId>,
    /// Operations on this lock (all kinds).
    ops: IdSet,
    /// Operations that need KEYNOTIFY on this lock.
    watchers: IdSet,
    observed: bool,
    notify: Notify,
    /// Releases in progress: while any is, no SET is sent for the lock (a VDEL retried later
    /// must never delete a lease won after it).
    releasing: u32,
    /// Bumped by every release: a SET sent before it cannot give a lease (the VDEL follows it).
    epoch: u64,
    /// Whether our last acquisition of the lock had to wait for another holder.
    contended: bool,
    /// After releasing a contended lock, this client's next waiting acquisition holds back until
    /// then, so that the waiters woken by the DELETE get a fair chance (the release's own next SET
    /// would otherwise always arrive first, right behind the VDEL).
    reacquire_after: Option<Instant>,
    /// Until then this client retries after a DELETE with the seeded jitter: one of its SETs right
    /// after a DELETE was refused, so other clients wait for the lock too (a herd), and without a
    /// random spread the one the broker notifies first would nearly always win. A waiter that has
    /// not lost such a race retries at once (the handoff then costs no timer at all).
    herd_until: Option<Instant>,
}

impl Lock {
    fn notify_refs(&self) -> usize {
        self.watchers.len() + usize::from(self.observed)
    }
}

#[derive(Debug)]
enum EditPhase {
    Queued,
    Acquiring,
    Reading,
    AwaitingUser,
    Writing { action: EditAction, attempts: u32 },
}

#[derive(Debug)]
enum Kind {
    TryAcquire {
        lease: Duration,
    },
    Acquire {
        lease: Duration,
    },
    Release {
        silent: bool,
    },
    Holder,
    Hold {
        lease: Duration,
        interval: Duration,
        held: bool,
    },
    Edit {
        key: Bytes,
        lease: Duration,
        phase: EditPhase,
    },
}

#[derive(Debug)]
struct Op {
    /// Order of creation.
    seq: u64,
    lock: LockId,
    holder: Bytes,
    deadline: Option<Instant>,
    deadline_timer: Option<TimerKey>,
    /// The one request this operation has in flight.
    req: Option<Corr>,
    /// Retry, fallback re-check or renewal.
    retry_timer: Option<TimerKey>,
    /// The lock was busy at one of this operation's attempts.
    saw_busy: bool,
    /// The current attempt was made because of a DELETE (a refusal then means a lost race).
    after_delete: bool,
    kind: Kind,
}

impl Op {
    /// The lease of an operation that acquires, while it is acquiring.
    fn acquiring_lease(&self) -> Option<Duration> {
        match &self.kind {
            Kind::TryAcquire { lease } | Kind::Acquire { lease } => Some(*lease),
            Kind::Hold {
                lease, held: false, ..
            } => Some(*lease),
            Kind::Edit {
                lease,
                phase: EditPhase::Acquiring,
                ..
            } => Some(*lease),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    /// SET NEX PX: acquire or renew; `epoch` of the lock at send time.
    Set {
        epoch: u64,
    },
    Get,
    Write,
    VDel,
    KeyNotify,
    KeyNotifyStop,
}

#[derive(Debug, Clone, Copy)]
enum Owner {
    Op(OpId),
    Lock(LockId),
}

#[derive(Debug)]
struct Pending {
    /// Order of sending.
    seq: u64,
    owner: Owner,
    kind: ReqKind,
    sent: Instant,
    /// When the request is given up; `None` when its operation's deadline timer, due at the
    /// same instant, ends the operation (and with it the request) first.
    timer: Option<TimerKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    OpDeadline(OpId),
    Retry(OpId),
    Request(Corr),
    LeaseEnd(LockId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Waiting,
    Granted,
    Refused,
}

/// Why a request will get no (usable) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    Timeout,
    Disconnected,
}

/// The sans-IO lock client. See the [module docs](super) for the drive loop.
#[derive(Debug)]
pub struct Client {
    config: Config,
    sender: RequestSender,
    /// The holder value without a session id.
    holder: Bytes,
    response_topic: String,
    notify_filter: String,
    clock: HlcClock,
    /// The node id of the store's latest version, shared by the versions parsed after it.
    store_node: SharedStr,
    rng: SplitMix64,
    connected: bool,
    sub_response: Sub,
    sub_notify: Sub,
    locks: Vec<Lock>,
    /// Every lock by a hash of its name (the name itself is kept once, in the lock; names with
    /// the same hash are told apart by comparing them).
    by_name: BTreeSet<(u64, LockId)>,
    /// Edits waiting for the edit in progress on their lock, oldest first (rare: kept aside).
    edit_queues: BTreeMap<LockId, VecDeque<OpId>>,
    /// Counts operations and requests: their order of creation.
    next_seq: u64,
    ops: Slab<OpId, Op>,
    pending: PendingRequests,
    timers: Timers<Timer>,
    out: VecDeque<Queued>,
    /// Where the correlation data and payloads of requests are written (see `Client::cut`).
    block: BytesMut,
    /// Set: requests are queued as PUBLISH packets, not as messages.
    packets: Option<PacketWriter>,
    stats: Stats,
}

/// A request waiting in the output queue, before it becomes a message (or, in
/// [`Connection`](crate::connection::Connection), a PUBLISH packet written without one).
#[derive(Debug)]
pub(crate) struct QueuedRequest {
    pub(crate) request: Request,
    /// The correlation data (all 128 bits).
    pub(crate) corr: u128,
    pub(crate) timeout: Duration,
}

/// An entry of the output queue.
#[derive(Debug)]
pub(crate) enum Queued {
    Request(QueuedRequest),
    /// A request already written as a QoS 1 PUBLISH (see [`Client::write_packets`]): its packet
    /// id, two bytes at `id_at`, is left to the session.
    Packet {
        bytes: Bytes,
        id_at: usize,
        corr: u128,
    },
    /// A request too large for an MQTT packet (it stays pending and times out).
    TooLarge {
        size: usize,
    },
    Ready(Output),
}

/// Writes requests as PUBLISH packets, for [`Connection`](crate::connection::Connection).
#[derive(Debug)]
struct PacketWriter {
    template: RequestTemplate,
    /// The block packets are cut from (one allocation for many).
    block: BytesMut,
}

/// The size of the blocks request packets are written into.
const PACKET_BLOCK: usize = 8192;

/// The size of the blocks that requests' bytes are cut from.
const BLOCK_SIZE: usize = 4096;

impl Client {
    /// A client with no locks, not connected. `seed` drives correlation ids and retry jitter.
    pub fn new(config: Config, now: Now, seed: u64) -> Result<Client, ConfigError> {
        config.validate()?;
        let _ = now; // nothing is scheduled yet; taken like every other call, for one contract
        let mut rng = SplitMix64::new(seed);
        let corr_prefix = rng.next_u64();
        let sender = RequestSender::new(&config.client_id)
            .map_err(|_| ConfigError::InvalidClientId(config.client_id.clone()))?;
        Ok(Client {
            clock: HlcClock::new(sender.client_id().clone(), config.max_clock_drift),
            holder: Bytes::from(config.client_id.clone()),
            sender,
            response_topic: store::response_topic(&config.client_id),
            notify_filter: store::notification_filter(&config.client_id),
            store_node: SharedStr::default(),
            rng,
            connected: false,
            sub_response: Sub::Waiting,
            sub_notify: Sub::Waiting,
            locks: Vec::new(),
            by_name: BTreeSet::new(),
            edit_queues: BTreeMap::new(),
            next_seq: 0,
            ops: Slab::new(),
            pending: PendingRequests {
                prefix: corr_prefix,
                slab: Slab::new(),
            },
            timers: Timers::new(),
            out: VecDeque::new(),
            block: BytesMut::new(),
            packets: None,
            stats: Stats::default(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The topic the client receives responses on (subscribe to it).
    pub fn response_topic(&self) -> &str {
        &self.response_topic
    }

    /// The filter the client receives notifications on (subscribe to it).
    pub fn notification_filter(&self) -> &str {
        &self.notify_filter
    }

    /// Counters of ignored and refused input.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of operations that have not ended.
    pub fn operations_in_progress(&self) -> usize {
        self.ops.len()
    }

    /// The lock called `name` (the same id for the same name). No I/O.
    pub fn lock(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(IntentError::EmptyKey);
        }
        if let Some(id) = self.find_lock(name) {
            return Ok(id);
        }
        let id = LockId(u32::try_from(self.locks.len()).map_err(|_| IntentError::UnknownLock)?);
        push_tight(
            &mut self.locks,
            Lock {
                name: Bytes::copy_from_slice(name),
                lease: None,
                hold: None,
                edit: None,
                ops: IdSet::default(),
                watchers: IdSet::default(),
                observed: false,
                notify: Notify::Off,
                releasing: 0,
                epoch: 0,
                contended: false,
                reacquire_after: None,
                herd_until: None,
            },
        );
        self.by_name.insert((name_hash(name), id));
        Ok(id)
    }

    /// The lock called `name`, if there is one.
    fn find_lock(&self, name: &[u8]) -> Option<LockId> {
        let hash = name_hash(name);
        self.by_name
            .range((hash, LockId(0))..=(hash, LockId(u32::MAX)))
            .map(|&(_, id)| id)
            .find(|id| self.locks[id.0 as usize].name.as_ref() == name)
    }

    /// The name of a lock.
    pub fn lock_name(&self, lock: LockId) -> Option<&Bytes> {
        self.locks.get(lock.0 as usize).map(|l| &l.name)
    }

    // ----- inspection -------------------------------------------------------------------------

    /// The newest fencing token of the lock, while the lease is valid at `now`.
    pub fn token(&self, now: Now, lock: LockId) -> Option<&FencingToken> {
        let lease = self.locks.get(lock.0 as usize)?.lease.as_ref()?;
        (now.instant < lease.valid_until).then_some(&lease.token)
    }

    /// Whether the client holds the lock at `now` (the lease is valid).
    pub fn is_held(&self, now: Now, lock: LockId) -> bool {
        self.token(now, lock).is_some()
    }

    /// Until when the current lease may be trusted (it may already be in the past).
    pub fn valid_until(&self, lock: LockId) -> Option<Instant> {
        Some(self.locks.get(lock.0 as usize)?.lease.as_ref()?.valid_until)
    }

    // ----- outputs ----------------------------------------------------------------------------

    /// The next thing to do: drain until `None` after every call.
    pub fn poll_output(&mut self) -> Option<Output> {
        Some(match self.poll_queued()? {
            Queued::Ready(output) => output,
            Queued::Request(r) => Output::Publish(self.message_of(r)),
            // Only queued after `write_packets`, which `Connection` calls and polls itself.
            Queued::Packet { .. } | Queued::TooLarge { .. } => return self.poll_output(),
        })
    }

    /// Whether the output queue has something.
    pub(crate) fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next entry of the output queue, a request still unencoded.
    pub(crate) fn poll_queued(&mut self) -> Option<Queued> {
        let queued = self.out.pop_front();
        if queued.is_none() {
            shrink_after_burst(&mut self.out);
        }
        queued
    }

    /// The response topic, shared.
    pub(crate) fn response_topic_shared(&self) -> SharedStr {
        self.sender.response_topic().clone()
    }

    /// From now on, requests are queued as PUBLISH packets (`Queued::Packet`), written at once
    /// from a template of what every request of this client shares. Without effect when a string
    /// of the client is too long for the template.
    pub(crate) fn write_packets(&mut self) {
        self.packets = RequestTemplate::new(&self.sender).map(|template| PacketWriter {
            template,
            block: BytesMut::new(),
        });
    }

    /// The message of a queued request.
    pub(crate) fn message_of(&mut self, r: QueuedRequest) -> Message {
        // The correlation data and the payload are cut from one block (few allocations): both
        // live only until the broker acknowledges the request.
        let corr = self.cut(16, |out| out.extend_from_slice(&r.corr.to_be_bytes()));
        let payload = self.cut(r.request.command.encoded_len(), |out| {
            r.request.command.encode(out)
        });
        // Checked in `send`: the key is not empty, the timeout at least 1 ms, the correlation
        // data 16 bytes; nothing else can fail.
        r.request
            .to_message_with_payload(&self.sender, corr, r.timeout, payload)
            .unwrap_or_default()
    }

    /// When [`Client::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    // ----- intents ----------------------------------------------------------------------------

    /// One attempt to take the lock: [`Event::Acquired`] or [`Event::Busy`].
    pub fn try_acquire(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, true)?;
        Ok(self.start(now, lock, holder, deadline, Kind::TryAcquire { lease }))
    }

    /// Take the lock, waiting for it as long as needed (or until the timeout): [`Event::Acquired`].
    pub fn acquire(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, false)?;
        Ok(self.start(now, lock, holder, deadline, Kind::Acquire { lease }))
    }

    /// Release the lock (VDEL with the holder value): [`Event::Released`]. Ends any hold on the lock
    /// first ([`Event::HoldEnded`]); no renewal response that arrives later is used.
    pub fn release(
        &mut self,
        now: Now,
        lock: LockId,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let (holder, deadline) = self.admit(now, lock, None, &options, true)?;
        Ok(self.start_release(now, lock, holder, deadline, false))
    }

    /// Who holds the lock: [`Event::Holder`].
    pub fn holder(
        &mut self,
        now: Now,
        lock: LockId,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.lock_ref(lock)?;
        let deadline = self.deadline(now, &options, true)?;
        let holder = self.holder_value(&options)?;
        Ok(self.start(now, lock, holder, deadline, Kind::Holder))
    }

    /// Take the lock and keep it, renewing every `interval`: [`Event::Acquired`], then
    /// [`Event::Renewed`] per renewal; [`Event::Lost`] and a new `Acquired` when it is lost. The
    /// timeout bounds the first acquisition only. Ends with [`Client::close_hold`],
    /// [`Client::release`] or [`Client::cancel`].
    pub fn hold(
        &mut self,
        now: Now,
        lock: LockId,
        lease: Duration,
        interval: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let (holder, deadline) = self.admit(now, lock, Some(lease), &options, false)?;
        if let Some(h) = self.locks[lock.0 as usize].hold {
            return Err(IntentError::LockInUse(h));
        }
        let usable = lease - self.config.margin(lease);
        if interval.is_zero() || interval >= usable {
            return Err(IntentError::BadInterval { interval, usable });
        }
        let kind = Kind::Hold {
            lease,
            interval,
            held: false,
        };
        let id = self.start(now, lock, holder, deadline, kind);
        self.locks[lock.0 as usize].hold = Some(id);
        Ok(id)
    }

    /// Stop the hold on the lock and release it: the hold ends with [`Event::HoldEnded`], and the
    /// returned release operation with [`Event::Released`].
    pub fn close_hold(&mut self, now: Now, lock: LockId) -> Result<OpId, IntentError> {
        let hold = self.lock_ref(lock)?.hold.ok_or(IntentError::NoHold)?;
        let holder = self.ops[&hold].holder.clone();
        let deadline = Some(add(now.instant, self.config.request_timeout));
        Ok(self.start_release(now, lock, holder, deadline, false))
    }

    /// Read-modify-write `key` under the lock: acquire, GET, [`Event::EditRequested`], then
    /// [`Client::complete_edit`] writes with the fencing token, and the lock is released:
    /// [`Event::EditDone`]. Edits of one lock run one after the other.
    pub fn edit(
        &mut self,
        now: Now,
        lock: LockId,
        key: impl Into<Bytes>,
        lease: Duration,
        options: Options,
    ) -> Result<OpId, IntentError> {
        let key = key.into();
        if key.is_empty() {
            return Err(IntentError::EmptyKey);
        }
        let l = self.lock_ref(lock)?;
        if let Some(other) = l.ops.iter().find(|id| {
            !matches!(
                self.ops[id].kind,
                Kind::Edit { .. } | Kind::Holder | Kind::Release { .. }
            )
        }) {
            return Err(IntentError::LockInUse(other));
        }
        if self.is_held(now, lock) {
            return Err(IntentError::HeldLocally);
        }
        self.check_lease(lease)?;
        let deadline = self.deadline(now, &options, false)?;
        let holder = self.holder_value(&options)?;
        let busy = self.locks[lock.0 as usize].edit.is_some();
        let phase = if busy {
            EditPhase::Queued
        } else {
            EditPhase::Acquiring
        };
        let id = self.start(
            now,
            lock,
            holder,
            deadline,
            Kind::Edit { key, lease, phase },
        );
        if busy {
            self.edit_queues.entry(lock).or_default().push_back(id);
        } else {
            self.locks[lock.0 as usize].edit = Some(id);
        }
        Ok(id)
    }

    /// Answer an [`Event::EditRequested`].
    pub fn complete_edit(
        &mut self,
        now: Now,
        op: OpId,
        action: EditAction,
    ) -> Result<(), IntentError> {
        let o = self.ops.get(&op).ok_or(IntentError::NoSuchOperation)?;
        let lock = o.lock;
        if !matches!(
            o.kind,
            Kind::Edit {
                phase: EditPhase::AwaitingUser,
                ..
            }
        ) {
            return Err(IntentError::NoSuchOperation);
        }
        if action == EditAction::Abort {
            self.finish_edit(now, op, Ok(EditOutcome::Unchanged));
        } else if !self.is_held(now, lock) {
            self.finish_edit(now, op, Err(OpError::LeaseLapsed));
        } else {
            if let Some(Op {
                kind: Kind::Edit { phase, .. },
                ..
            }) = self.ops.get_mut(&op)
            {
                *phase = EditPhase::Writing {
                    action,
                    attempts: 0,
                };
            }
            self.step(now, op);
        }
        Ok(())
    }

    /// Report holder changes of the lock as [`Event::HolderChanged`].
    pub fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        let l = self.lock_mut(lock)?;
        if l.observed {
            return Err(IntentError::AlreadyObserving);
        }
        l.observed = true;
        self.ensure_notify(now, lock);
        Ok(())
    }

    /// Stop reporting holder changes of the lock.
    pub fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        let l = self.lock_mut(lock)?;
        if !l.observed {
            return Err(IntentError::NotObserving);
        }
        l.observed = false;
        self.maybe_stop_notify(now, lock);
        Ok(())
    }

    /// End an operation now: [`Event::Failed`] with [`OpError::Cancelled`] (a hold ends with
    /// [`Event::HoldEnded`] and releases the lock). A waiting acquire still unregisters KEYNOTIFY.
    pub fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
        let o = self.ops.get(&op).ok_or(IntentError::NoSuchOperation)?;
        let lock = o.lock;
        match &o.kind {
            Kind::Hold { .. } => self.end_hold(now, op, true),
            Kind::Edit { .. } => self.finish_edit(now, op, Err(OpError::Cancelled)),
            _ => self.finish(
                now,
                op,
                Some(Event::Failed {
                    op,
                    lock,
                    error: OpError::Cancelled,
                }),
            ),
        }
        Ok(())
    }

    // ----- world inputs -----------------------------------------------------------------------

    /// The MQTT connection is up: the client asks for its two subscriptions.
    pub fn handle_connected(&mut self, now: Now) {
        let _ = now;
        self.connected = true;
        self.sub_response = Sub::Waiting;
        self.sub_notify = Sub::Waiting;
        self.emit(Output::Subscribe(self.response_topic.clone()));
        self.emit(Output::Subscribe(self.notify_filter.clone()));
    }

    /// The SUBACK for a filter the client asked for.
    pub fn handle_subscribed(&mut self, now: Now, filter: &str, granted: bool) {
        let sub = if granted { Sub::Granted } else { Sub::Refused };
        let was_ready = self.ready();
        if filter == self.response_topic {
            self.sub_response = sub;
        } else if filter == self.notify_filter {
            self.sub_notify = sub;
        } else {
            return;
        }
        if !granted {
            let ids = self.op_ids_in_order();
            for id in ids {
                let lock = self.ops[&id].lock;
                let error = OpError::SubscriptionRefused(filter.to_string());
                self.fail(now, id, lock, error);
            }
        } else if !was_ready && self.ready() {
            self.on_ready(now);
        }
    }

    /// The MQTT connection is down. Requests in flight are given up (and repeated after the next
    /// connection where that is safe); leases stay trusted until their validity ends.
    pub fn handle_disconnected(&mut self, now: Now) {
        self.connected = false;
        self.sub_response = Sub::Waiting;
        self.sub_notify = Sub::Waiting;
        for l in &mut self.locks {
            l.notify = Notify::Off;
        }
        let corrs = self.pending.corrs_in_order();
        for corr in corrs {
            if let Some(p) = self.pending.remove(&corr) {
                self.timers.cancel(p.timer);
                self.request_lost(now, p, Lost::Disconnected);
            }
        }
    }

    /// A message on the response topic or the notification filter. Anything else is counted and
    /// ignored; nothing that arrives can make the client panic.
    pub fn handle_message(&mut self, now: Now, message: &Message) {
        if message.topic == self.response_topic {
            self.on_response_message(now, message);
        } else {
            match store::parse_notification(message) {
                Ok(n) => self.on_notification(now, n),
                Err(_) => self.stats.malformed_messages += 1,
            }
        }
    }

    /// The broker did not deliver the request with this correlation data (a PUBACK with a failure
    /// reason, or "no matching subscribers"). A request the state store never saw is repeated
    /// after a short delay; a refused one fails its operation. Unknown correlation data is ignored.
    pub fn handle_not_delivered(&mut self, now: Now, correlation_data: &[u8], why: NotDelivered) {
        let Some(corr) = self.pending.corr_of(correlation_data) else {
            return;
        };
        let Some(Pending {
            owner: Owner::Op(id),
            ..
        }) = self.pending.get(&corr)
        else {
            // Registrations and releases of the engine itself wait for their timeout.
            return;
        };
        let id = *id;
        let Some(p) = self.pending.remove(&corr) else {
            return;
        };
        self.timers.cancel(p.timer);
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.req = None;
        let lock = op.lock;
        // The store never saw it: a write not delivered was not applied.
        if let Kind::Edit {
            phase: EditPhase::Writing { attempts, .. },
            ..
        } = &mut op.kind
        {
            *attempts = attempts.saturating_sub(1);
        }
        match why {
            NotDelivered::NoSubscribers => {
                let delay = NOT_DELIVERED_RETRY + self.jitter();
                self.retry_after(now, id, delay);
            }
            NotDelivered::Refused(reason) => {
                self.fail(now, id, lock, OpError::NotDelivered(reason));
            }
        }
    }

    /// Deadlines up to `now` have passed.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some((key, timer)) = self.timers.pop_due(now.instant) {
            match timer {
                Timer::OpDeadline(id) => {
                    if let Some(op) = self.ops.get_mut(&id) {
                        if op.deadline_timer == Some(key) {
                            op.deadline_timer = None;
                            self.on_deadline(now, id);
                        }
                    }
                }
                Timer::Retry(id) => {
                    if let Some(op) = self.ops.get_mut(&id) {
                        if op.retry_timer == Some(key) {
                            op.retry_timer = None;
                            self.step(now, id);
                        }
                    }
                }
                Timer::Request(corr) => {
                    if let Some(p) = self.pending.remove(&corr) {
                        self.request_lost(now, p, Lost::Timeout);
                    }
                }
                Timer::LeaseEnd(lock) => {
                    let l = &self.locks[lock.0 as usize];
                    if l.lease.as_ref().is_some_and(|lease| lease.timer == key) {
                        let reason = if self.connected {
                            LossReason::ExpiredLocally
                        } else {
                            LossReason::Disconnected
                        };
                        self.lease_lost(now, lock, reason);
                    }
                }
            }
        }
    }

    // ----- internals: starting and ending operations -------------------------------------------

    fn lock_ref(&self, lock: LockId) -> Result<&Lock, IntentError> {
        self.locks
            .get(lock.0 as usize)
            .ok_or(IntentError::UnknownLock)
    }

    fn lock_mut(&mut self, lock: LockId) -> Result<&mut Lock, IntentError> {
        self.locks
            .get_mut(lock.0 as usize)
            .ok_or(IntentError::UnknownLock)
    }

    /// The checks every acquiring or releasing intent makes: the lock is not in an edit's hands,
    /// the lease (if any) is usable, the options are valid. Returns the holder value and deadline
    /// (`bounded`: without a timeout, the request timeout bounds the operation).
    fn admit(
        &self,
        now: Now,
        lock: LockId,
        lease: Option<Duration>,
        options: &Options,
        bounded: bool,
    ) -> Result<(Bytes, Option<Instant>), IntentError> {
        self.check_exclusive(lock)?;
        if let Some(lease) = lease {
            self.check_lease(lease)?;
        }
        let deadline = self.deadline(now, options, bounded)?;
        Ok((self.holder_value(options)?, deadline))
    }

    /// Acquiring, holding and releasing cannot run beside an edit of the same lock.
    fn check_exclusive(&self, lock: LockId) -> Result<(), IntentError> {
        match self.lock_ref(lock)?.edit {
            Some(edit) => Err(IntentError::LockInUse(edit)),
            None => Ok(()),
        }
    }

    fn check_lease(&self, lease: Duration) -> Result<(), IntentError> {
        let margin = self.config.margin(lease);
        if lease > MAX_DURATION || lease < margin + Duration::from_millis(1) {
            return Err(IntentError::LeaseTooShort { lease, margin });
        }
        Ok(())
    }

    fn deadline(
        &self,
        now: Now,
        options: &Options,
        bounded: bool,
    ) -> Result<Option<Instant>, IntentError> {
        match options.timeout {
            Some(t) if t.is_zero() => Err(IntentError::ZeroTimeout),
            Some(t) => Ok(Some(add(now.instant, t.min(MAX_DURATION)))),
            None if bounded => Ok(Some(add(now.instant, self.config.request_timeout))),
            None => Ok(None),
        }
    }

    fn holder_value(&self, options: &Options) -> Result<Bytes, IntentError> {
        match &options.session_id {
            None => Ok(self.holder.clone()),
            Some(s) if s.is_empty() => Err(IntentError::InvalidSessionId),
            Some(s) => Ok(Bytes::from(format!("{}:{}", self.config.client_id, s))),
        }
    }

    fn ready(&self) -> bool {
        self.connected && self.sub_response == Sub::Granted && self.sub_notify == Sub::Granted
    }

    /// Every live operation, oldest first.
    fn op_ids_in_order(&self) -> Vec<OpId> {
        let mut all: Vec<(u64, OpId)> = self.ops.keys().map(|id| (self.ops[&id].seq, id)).collect();
        all.sort_unstable();
        all.into_iter().map(|(_, id)| id).collect()
    }

    fn start(
        &mut self,
        now: Now,
        lock: LockId,
        holder: Bytes,
        deadline: Option<Instant>,
        kind: Kind,
    ) -> OpId {
        self.next_seq += 1;
        let id = self.ops.next_key();
        let watches = matches!(
            kind,
            Kind::Acquire { .. } | Kind::Hold { .. } | Kind::Edit { .. }
        );
        let deadline_timer = deadline.map(|d| self.timers.schedule(d, Timer::OpDeadline(id)));
        self.ops.insert(Op {
            seq: self.next_seq,
            lock,
            holder,
            deadline,
            deadline_timer,
            req: None,
            retry_timer: None,
            saw_busy: false,
            after_delete: false,
            kind,
        });
        let l = &mut self.locks[lock.0 as usize];
        l.ops.insert(id);
        if watches {
            l.watchers.insert(id);
            self.ensure_notify(now, lock);
        }
        self.step(now, id);
        id
    }

    fn start_release(
        &mut self,
        now: Now,
        lock: LockId,
        holder: Bytes,
        deadline: Option<Instant>,
        silent: bool,
    ) -> OpId {
        if let Some(hold) = self.locks[lock.0 as usize].hold {
            self.end_hold(now, hold, false);
        }
        let l = &mut self.locks[lock.0 as usize];
        if let Some(lease) = l.lease.take() {
            self.timers.cancel(Some(lease.timer));
        }
        l.releasing += 1;
        l.epoch += 1;
        if l.contended {
            let delay = self.config.release_holdback + self.jitter();
            self.locks[lock.0 as usize].reacquire_after = Some(add(now.instant, delay));
        }
        self.start(now, lock, holder, deadline, Kind::Release { silent })
    }

    /// Ends a hold: stops renewing, forgets the lease, and (when asked) releases it silently.
    fn end_hold(&mut self, now: Now, hold: OpId, release: bool) {
        let Some(op) = self.ops.get(&hold) else {
            return;
        };
        let (lock, holder) = (op.lock, op.holder.clone());
        self.finish(now, hold, Some(Event::HoldEnded { op: hold, lock }));
        if release {
            let deadline = Some(add(now.instant, self.config.request_timeout));
            self.start_release(now, lock, holder, deadline, true);
        }
    }

    fn fail(&mut self, now: Now, id: OpId, lock: LockId, error: OpError) {
        match self.ops.get(&id).map(|o| &o.kind) {
            Some(Kind::Edit { .. }) => self.finish_edit(now, id, Err(error)),
            Some(Kind::Hold { .. }) => {
                self.finish(
                    now,
                    id,
                    Some(Event::Failed {
                        op: id,
                        lock,
                        error,
                    }),
                );
            }
            Some(Kind::Release { silent: true }) => self.finish(now, id, None),
            Some(_) => self.finish(
                now,
                id,
                Some(Event::Failed {
                    op: id,
                    lock,
                    error,
                }),
            ),
            None => {}
        }
    }

    /// Ends an edit with its outcome, releasing the lock if the edit held it, and starts the next
    /// queued edit of the lock.
    fn finish_edit(&mut self, now: Now, id: OpId, outcome: Result<EditOutcome, OpError>) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        let lock = op.lock;
        let holder = op.holder.clone();
        // A write that was sent and got no definite answer may have been applied; so may an
        // earlier attempt of a write whose repetition was refused.
        let attempts = match &op.kind {
            Kind::Edit {
                phase: EditPhase::Writing { attempts, .. },
                ..
            } => *attempts,
            _ => 0,
        };
        let outcome = match outcome {
            Err(
                OpError::Timeout
                | OpError::Cancelled
                | OpError::LeaseLapsed
                | OpError::Disconnected
                | OpError::SubscriptionRefused(_),
            ) if attempts >= 1 => Err(OpError::Indeterminate),
            Err(_) if attempts >= 2 => Err(OpError::Indeterminate),
            o => o,
        };
        let event = match outcome {
            Ok(outcome) => Event::EditDone {
                op: id,
                lock,
                outcome,
            },
            Err(error) => Event::Failed {
                op: id,
                lock,
                error,
            },
        };
        let owned = self.locks[lock.0 as usize]
            .lease
            .as_ref()
            .is_some_and(|l| l.owner == Some(id));
        if owned {
            // Free the lock before anything else goes out.
            let deadline = Some(add(now.instant, self.config.request_timeout));
            self.start_release(now, lock, holder, deadline, true);
        }
        self.finish(now, id, Some(event));
        self.next_edit(now, lock);
    }

    fn next_edit(&mut self, now: Now, lock: LockId) {
        if self.locks[lock.0 as usize].edit.is_some() {
            return;
        }
        while let Some(next) = self.pop_queued_edit(lock) {
            if let Some(Op {
                kind: Kind::Edit { phase, .. },
                ..
            }) = self.ops.get_mut(&next)
            {
                *phase = EditPhase::Acquiring;
                self.locks[lock.0 as usize].edit = Some(next);
                self.step(now, next);
                return;
            }
        }
    }

    /// The oldest edit waiting for the lock's current edit to end.
    fn pop_queued_edit(&mut self, lock: LockId) -> Option<OpId> {
        let queue = self.edit_queues.get_mut(&lock)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.edit_queues.remove(&lock);
        }
        next
    }

    /// Removes an operation and everything it owns; emits its final event.
    fn finish(&mut self, now: Now, id: OpId, event: Option<Event>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        self.timers.cancel(op.deadline_timer);
        self.timers.cancel(op.retry_timer);
        // An acquiring SET still in flight may yet take the lock for us: release it after.
        let mut undo_set = false;
        // A VDEL still in flight keeps the release barrier up until it is answered or lost.
        let mut vdel_in_flight = false;
        if let Some(corr) = op.req {
            if let Some(p) = self.pending.get_mut(&corr) {
                if p.kind == ReqKind::VDel {
                    p.owner = Owner::Lock(op.lock);
                    vdel_in_flight = true;
                } else if let Some(p) = self.pending.remove(&corr) {
                    self.timers.cancel(p.timer);
                    undo_set = matches!(p.kind, ReqKind::Set { .. })
                        && !matches!(op.kind, Kind::Hold { held: true, .. });
                }
            }
        }
        let lock = op.lock;
        let l = &mut self.locks[lock.0 as usize];
        l.ops.remove(&id);
        let watched = l.watchers.remove(&id);
        if l.hold == Some(id) {
            l.hold = None;
        }
        if l.edit == Some(id) {
            l.edit = None;
        }
        if let Some(queue) = self.edit_queues.get_mut(&lock) {
            queue.retain(|q| *q != id);
            if queue.is_empty() {
                self.edit_queues.remove(&lock);
            }
        }
        let l = &mut self.locks[lock.0 as usize];
        if l.lease
            .as_ref()
            .is_some_and(|lease| lease.owner == Some(id))
        {
            if let Some(lease) = l.lease.take() {
                self.timers.cancel(Some(lease.timer));
            }
        }
        let released = matches!(op.kind, Kind::Release { .. }) && !vdel_in_flight;
        if let Some(event) = event {
            self.emit(Output::Event(event));
        }
        if watched {
            self.maybe_stop_notify(now, lock);
        }
        if undo_set && self.locks[lock.0 as usize].lease.is_none() {
            let deadline = Some(add(now.instant, self.config.request_timeout));
            self.start_release(now, lock, op.holder, deadline, true);
        }
        if released {
            self.release_settled(now, lock);
        }
    }

    /// A release's VDEL was answered or given up: once no release is in progress, the lock's
    /// waiting operations go on.
    fn release_settled(&mut self, now: Now, lock: LockId) {
        let l = &mut self.locks[lock.0 as usize];
        l.releasing = l.releasing.saturating_sub(1);
        if l.releasing == 0 {
            let waiting: Vec<OpId> = l.ops.iter().collect();
            for w in waiting {
                self.step(now, w);
            }
        }
    }

    fn on_deadline(&mut self, now: Now, id: OpId) {
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        let error = if self.connected {
            OpError::Timeout
        } else {
            OpError::Disconnected
        };
        let lock = op.lock;
        if matches!(op.kind, Kind::Hold { .. }) {
            // A hold's timeout bounds its first acquisition; it ends the hold.
            self.finish(
                now,
                id,
                Some(Event::Failed {
                    op: id,
                    lock,
                    error,
                }),
            );
        } else {
            self.fail(now, id, lock, error);
        }
    }

    // ----- internals: sending ------------------------------------------------------------------

    /// Does whatever the operation needs next, if it can now.
    fn step(&mut self, now: Now, id: OpId) {
        if !self.ready() {
            return;
        }
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        if op.req.is_some() || op.retry_timer.is_some() {
            return;
        }
        let lock = op.lock;
        let held = self.is_held(now, lock);
        let l = &self.locks[lock.0 as usize];
        // The lock's name and the holder value go into the command by reference count: each is
        // cloned once, only by the arm that needs it.
        let set = |lease: Duration| Command::Set {
            key: l.name.clone(),
            value: op.holder.clone(),
            options: SetOptions {
                condition: SetCondition::NotExistsOrEqual,
                expiry: NonZeroU64::new(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)),
            },
        };
        let (command, kind, fencing) = match &op.kind {
            Kind::Release { .. } => (
                Command::VDel {
                    key: l.name.clone(),
                    value: op.holder.clone(),
                },
                ReqKind::VDel,
                None,
            ),
            Kind::Holder => (
                Command::Get {
                    key: l.name.clone(),
                },
                ReqKind::Get,
                None,
            ),
            Kind::Hold {
                lease, held: true, ..
            } => (set(*lease), ReqKind::Set { epoch: l.epoch }, None),
            Kind::Edit {
                phase: EditPhase::Queued | EditPhase::AwaitingUser,
                ..
            } => return,
            Kind::Edit {
                key,
                phase: EditPhase::Reading,
                ..
            } => (Command::Get { key: key.clone() }, ReqKind::Get, None),
            Kind::Edit {
                key,
                phase: EditPhase::Writing { action, .. },
                ..
            } => {
                if !held {
                    self.finish_edit(now, id, Err(OpError::LeaseLapsed));
                    return;
                }
                let command = match action {
                    EditAction::Set(v) => Command::Set {
                        key: key.clone(),
                        value: v.clone(),
                        options: SetOptions::default(),
                    },
                    _ => Command::Del { key: key.clone() },
                };
                let token = l.lease.as_ref().map(|lease| lease.token.clone());
                (command, ReqKind::Write, token)
            }
            _ => {
                let Some(lease) = op.acquiring_lease() else {
                    return;
                };
                if l.releasing > 0 {
                    return; // after the release: see `Lock::releasing`
                }
                if let (Some(at), false) = (
                    l.reacquire_after.filter(|at| now.instant < *at),
                    matches!(op.kind, Kind::TryAcquire { .. }),
                ) {
                    self.retry_at(id, at);
                    return;
                }
                (set(lease), ReqKind::Set { epoch: l.epoch }, None)
            }
        };
        let deadline = op.deadline;
        match self.send(now, Owner::Op(id), kind, command, fencing, deadline) {
            Ok(corr) => {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.req = Some(corr);
                    if let Kind::Edit {
                        phase: EditPhase::Writing { attempts, .. },
                        ..
                    } = &mut op.kind
                    {
                        *attempts += 1;
                    }
                }
            }
            Err(error) => self.fail(now, id, lock, error),
        }
    }

    fn send(
        &mut self,
        now: Now,
        owner: Owner,
        kind: ReqKind,
        command: Command,
        fencing_token: Option<FencingToken>,
        deadline: Option<Instant>,
    ) -> Result<Corr, OpError> {
        let timestamp = self.clock.send_parts(now.wall_ms).map_err(|e| {
            self.stats.clock_errors += 1;
            OpError::Clock(e)
        })?;
        let mut req_deadline = add(now.instant, self.config.request_timeout);
        if let Some(d) = deadline {
            req_deadline = req_deadline.min(d);
        }
        let timeout = req_deadline
            .saturating_duration_since(now.instant)
            .max(Duration::from_millis(1));
        let corr = self.pending.next_corr();
        if command.key().is_empty() {
            return Err(OpError::UnexpectedReply(RequestError::EmptyKey.to_string()));
        }
        // A VDEL may be applied until the broker lets its message expire (whole seconds, rounded
        // up): until then it counts as in flight, and the lock's release barrier stays up.
        let lost_at = match kind {
            ReqKind::VDel => add(
                now.instant,
                Duration::from_secs(u64::from(store::expiry_seconds(timeout))),
            ),
            _ => req_deadline,
        };
        // The operation's own deadline, at this very instant, fires first (it was scheduled
        // first) and ends the operation and its request: no second timer for the same instant.
        let covered = kind != ReqKind::VDel
            && matches!(owner, Owner::Op(id) if self.ops.get(&id).is_some_and(|op| {
                op.deadline_timer.is_some() && op.deadline == Some(lost_at)
            }));
        let timer = (!covered).then(|| self.timers.schedule(lost_at, Timer::Request(corr)));
        self.next_seq += 1;
        self.pending.insert(Pending {
            seq: self.next_seq,
            owner,
            kind,
            sent: now.instant,
            timer,
        });
        self.stats.requests_sent += 1;
        let wire = self.pending.wire(corr);
        let queued = match &mut self.packets {
            Some(w) => {
                if w.block.capacity() - w.block.len() < 512 {
                    w.block = BytesMut::with_capacity(PACKET_BLOCK);
                }
                let expiry = store::expiry_seconds(timeout);
                let ft = fencing_token.as_ref();
                match w
                    .template
                    .write_parts(&command, timestamp, ft, wire, expiry, &mut w.block)
                {
                    Ok(id_at) => Queued::Packet {
                        bytes: w.block.split().freeze(),
                        id_at,
                        corr: wire,
                    },
                    Err(TooLarge { size }) => {
                        w.block.clear();
                        Queued::TooLarge { size }
                    }
                }
            }
            None => Queued::Request(QueuedRequest {
                request: Request {
                    command,
                    timestamp: Hlc {
                        wall_ms: timestamp.0,
                        counter: timestamp.1,
                        node_id: self.sender.client_id().clone(),
                    },
                    fencing_token,
                },
                corr: wire,
                timeout,
            }),
        };
        self.out.push_back(queued);
        Ok(corr)
    }

    fn emit(&mut self, output: Output) {
        self.out.push_back(Queued::Ready(output));
    }

    /// `len` bytes written by `write`, cut from the current block of `self.block`.
    fn cut(&mut self, len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
        if self.block.capacity() - self.block.len() < len {
            self.block = BytesMut::with_capacity(len.max(BLOCK_SIZE));
        }
        write(&mut self.block);
        self.block.split().freeze()
    }

    fn on_ready(&mut self, now: Now) {
        for i in 0..self.locks.len() {
            self.ensure_notify(now, LockId(i as u32));
        }
        // Re-check at once rather than at the next fallback or renewal time: a DELETE may have
        // been missed, and a renewal restores the lease's validity sooner.
        let retries: Vec<Option<TimerKey>> = self
            .ops
            .values_mut()
            .map(|op| op.retry_timer.take())
            .collect();
        for t in retries {
            self.timers.cancel(t);
        }
        // Releases first: a VDEL must reach the store before any SET of the same lock.
        let (releases, others): (Vec<OpId>, Vec<OpId>) = self
            .op_ids_in_order()
            .into_iter()
            .partition(|id| matches!(self.ops[id].kind, Kind::Release { .. }));
        for id in releases.into_iter().chain(others) {
            self.step(now, id);
        }
    }

    fn ensure_notify(&mut self, now: Now, lock: LockId) {
        let l = &self.locks[lock.0 as usize];
        if !self.ready() || l.notify != Notify::Off || l.notify_refs() == 0 {
            return;
        }
        let key = l.name.clone();
        if let Ok(corr) = self.send(
            now,
            Owner::Lock(lock),
            ReqKind::KeyNotify,
            Command::KeyNotify { key },
            None,
            None,
        ) {
            self.locks[lock.0 as usize].notify = Notify::Pending(corr);
        }
    }

    fn maybe_stop_notify(&mut self, now: Now, lock: LockId) {
        let l = &mut self.locks[lock.0 as usize];
        if l.notify_refs() > 0 || l.notify == Notify::Off {
            return;
        }
        l.notify = Notify::Off;
        let key = l.name.clone();
        if self.ready() {
            let _ = self.send(
                now,
                Owner::Lock(lock),
                ReqKind::KeyNotifyStop,
                Command::KeyNotifyStop { key },
                None,
                None,
            );
        }
    }

    // ----- internals: what comes back ---------------------------------------------------------

    fn request_lost(&mut self, now: Now, p: Pending, why: Lost) {
        match p.owner {
            Owner::Lock(lock) if p.kind == ReqKind::VDel => self.release_settled(now, lock),
            Owner::Lock(lock) => {
                let l = &mut self.locks[lock.0 as usize];
                if p.kind == ReqKind::KeyNotify && matches!(l.notify, Notify::Pending(_)) {
                    l.notify = Notify::Off;
                    if why == Lost::Timeout {
                        self.ensure_notify(now, lock);
                    }
                }
            }
            Owner::Op(id) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    return;
                };
                op.req = None;
                let lock = op.lock;
                if let Kind::Edit {
                    phase: EditPhase::Writing { attempts: 1.., .. },
                    ..
                } = op.kind
                {
                    // Repeat the fenced write while the lease lasts; after that, the outcome is
                    // unknown.
                    if !self.is_held(now, lock) {
                        self.finish_edit(now, id, Err(OpError::Indeterminate));
                        return;
                    }
                }
                self.step(now, id);
            }
        }
    }

    fn on_response_message(&mut self, now: Now, message: &Message) {
        match store::parse_response_known(message, &self.store_node) {
            Ok(r) => self.on_response(now, Some(&r.correlation_data), r.outcome),
            Err(_) => self.on_response(now, None, Err(ResponseError::MissingCorrelationData)),
        }
    }

    /// A message on the response topic left as bytes by the MQTT codec, which checked it (see
    /// [`Connection`](crate::connection::Connection)): the property block and the payload are
    /// ranges of `packet`.
    pub(crate) fn handle_raw_response(
        &mut self,
        now: Now,
        packet: &Bytes,
        props: std::ops::Range<usize>,
        payload: std::ops::Range<usize>,
    ) {
        let (corr, outcome) = store::parse_raw_response(packet, props, payload, &self.store_node);
        self.on_response(now, corr, outcome);
    }

    fn on_response(
        &mut self,
        now: Now,
        correlation_data: Option<&[u8]>,
        outcome: Result<ResponseBody, ResponseError>,
    ) {
        let Some(correlation_data) = correlation_data else {
            self.stats.malformed_messages += 1;
            return;
        };
        let Some(corr) = self.pending.corr_of(correlation_data) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let Some(p) = self.pending.remove(&corr) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.timers.cancel(p.timer);
        // Feed the clock with the version; a refusal never loses an applied change.
        let mut clock_error = None;
        if let Ok(ResponseBody {
            version: Some(v), ..
        }) = &outcome
        {
            if v.node_id != self.store_node {
                self.store_node = v.node_id.clone();
            }
            if let Err(e) = self.clock.receive(v, now.wall_ms) {
                self.stats.clock_errors += 1;
                clock_error = Some(e);
            }
        }
        match p.owner {
            Owner::Lock(lock) if p.kind == ReqKind::VDel => self.release_settled(now, lock),
            Owner::Lock(lock) => self.on_notify_reply(lock, corr, p.kind, outcome),
            Owner::Op(id) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    self.stats.unmatched_responses += 1;
                    return;
                };
                op.req = None;
                let lock = op.lock;
                let body = match outcome {
                    Ok(body) => body,
                    Err(e) => {
                        self.on_failed_reply(now, id, lock, p.kind, OpError::Protocol(e));
                        return;
                    }
                };
                if let StoreReply::Error(e) = &body.reply {
                    let error = OpError::Service(e.clone());
                    self.on_failed_reply(now, id, lock, p.kind, error);
                    return;
                }
                let applied = matches!(
                    (&body.reply, p.kind),
                    (StoreReply::Ok, ReqKind::Set { .. } | ReqKind::Write)
                        | (StoreReply::Integer(1..), ReqKind::VDel | ReqKind::Write)
                );
                if let (Some(e), false) = (clock_error, applied) {
                    self.on_failed_reply(now, id, lock, p.kind, OpError::Clock(e));
                    return;
                }
                match p.kind {
                    ReqKind::Set { epoch } => self.on_set_reply(now, id, &p, epoch, body),
                    ReqKind::Get => self.on_get_reply(now, id, body.reply),
                    ReqKind::Write => self.on_write_reply(now, id, body.reply),
                    ReqKind::VDel => {
                        let was_held = match body.reply {
                            StoreReply::Integer(n) => n > 0,
                            other => {
                                let error = OpError::UnexpectedReply(format!("{other:?}"));
                                self.fail(now, id, lock, error);
                                return;
                            }
                        };
                        let silent = matches!(self.ops[&id].kind, Kind::Release { silent: true });
                        let event = (!silent).then_some(Event::Released {
                            op: id,
                            lock,
                            was_held,
                        });
                        self.finish(now, id, event);
                    }
                    ReqKind::KeyNotify | ReqKind::KeyNotifyStop => {}
                }
            }
        }
    }

    fn on_notify_reply(
        &mut self,
        lock: LockId,
        corr: Corr,
        kind: ReqKind,
        outcome: Result<ResponseBody, ResponseError>,
    ) {
        let l = &mut self.locks[lock.0 as usize];
        if kind != ReqKind::KeyNotify || l.notify != Notify::Pending(corr) {
            return;
        }
        let error = match outcome {
            Ok(ResponseBody {
                reply: StoreReply::Ok,
                ..
            }) => {
                l.notify = Notify::On;
                return;
            }
            Ok(ResponseBody {
                reply: StoreReply::Error(e),
                ..
            }) => OpError::Service(e),
            Ok(other) => OpError::UnexpectedReply(format!("{:?}", other.reply)),
            Err(e) => OpError::Protocol(e),
        };
        // Waiters still make progress through their fallback re-checks; observers are told.
        l.notify = Notify::Off;
        if l.observed {
            l.observed = false;
            self.emit(Output::Event(Event::ObserveFailed { lock, error }));
        }
    }

    /// A request of an operation got an error reply.
    fn on_failed_reply(&mut self, now: Now, id: OpId, lock: LockId, kind: ReqKind, error: OpError) {
        let renewal = matches!(
            self.ops.get(&id).map(|o| &o.kind),
            Some(Kind::Hold { held: true, .. })
        );
        if renewal && kind != ReqKind::Write {
            // Try again soon; if nothing succeeds, the lease end reports the loss.
            let delay = self.jitter().max(MIN_FALLBACK);
            self.retry_after(now, id, delay);
            return;
        }
        self.fail(now, id, lock, error);
    }

    fn on_set_reply(&mut self, now: Now, id: OpId, p: &Pending, epoch: u64, body: ResponseBody) {
        // Whether this attempt followed a DELETE: refused, it lost a race to another waiter.
        let lost_race = self
            .ops
            .get_mut(&id)
            .is_some_and(|op| std::mem::take(&mut op.after_delete));
        let op = &self.ops[&id];
        let lock = op.lock;
        let (lease, renewal) = match &op.kind {
            Kind::Hold {
                lease, held: true, ..
            } => (*lease, true),
            _ => match op.acquiring_lease() {
                Some(lease) => (lease, false),
                None => return,
            },
        };
        match body.reply {
            StoreReply::Ok => {
                let Some(version) = body.version else {
                    let error = OpError::UnexpectedReply("SET +OK without __ts".into());
                    self.fail(now, id, lock, error);
                    return;
                };
                #[cfg(not(feature = "canary"))]
                let valid_until = add(p.sent, lease - self.config.margin(lease));
                #[cfg(feature = "canary")] // planted bug for the simulator: no safety margin
                let valid_until = add(p.sent, lease);
                let undone = self.locks[lock.0 as usize].epoch != epoch;
                if undone || valid_until <= now.instant {
                    // Released since, or the reply came too late to be trusted.
                    match &self.ops[&id].kind {
                        Kind::TryAcquire { .. } => {
                            self.fail(now, id, lock, OpError::LeaseLapsed);
                        }
                        _ => self.step(now, id),
                    }
                    return;
                }
                self.won(now, id, FencingToken::new(version), p.sent, valid_until);
            }
            StoreReply::Integer(-1) => {
                if renewal {
                    self.lease_lost(now, lock, LossReason::RenewalRefused);
                    return;
                }
                if let Some(op) = self.ops.get_mut(&id) {
                    op.saw_busy = true;
                }
                let l = &mut self.locks[lock.0 as usize];
                l.contended = true;
                if lost_race {
                    l.herd_until = Some(add(now.instant, HERD_MEMORY));
                }
                if matches!(self.ops[&id].kind, Kind::TryAcquire { .. }) {
                    self.finish(now, id, Some(Event::Busy { op: id, lock }));
                } else {
                    // Wait for the DELETE; re-check anyway once the holder's lease could be over.
                    self.retry_after(now, id, lease.max(MIN_FALLBACK));
                }
            }
            other => {
                let error = OpError::UnexpectedReply(format!("{other:?}"));
                self.fail(now, id, lock, error);
            }
        }
    }

    fn won(
        &mut self,
        now: Now,
        id: OpId,
        token: FencingToken,
        sent: Instant,
        valid_until: Instant,
    ) {
        let op = &self.ops[&id];
        let lock = op.lock;
        let owner = match op.kind {
            Kind::Hold { .. } | Kind::Edit { .. } => Some(id),
            _ => None,
        };
        let holder = op.holder.clone();
        let l = &mut self.locks[lock.0 as usize];
        if !matches!(op.kind, Kind::Hold { held: true, .. }) {
            l.contended = op.saw_busy;
        }
        // A lease under another holder value (another session id) is over: the store gave the
        // lock to this one.
        if self.locks[lock.0 as usize]
            .lease
            .as_ref()
            .is_some_and(|old| old.holder != holder)
        {
            self.lease_lost(now, lock, LossReason::TakenAway);
        }
        let l = &mut self.locks[lock.0 as usize];
        // Several SETs of one holder may succeed: the newest token and the latest end stand.
        let (token, valid_until, owner) = match l.lease.take() {
            Some(old) => {
                self.timers.cancel(Some(old.timer));
                (
                    token.max(old.token),
                    valid_until.max(old.valid_until),
                    owner.or(old.owner),
                )
            }
            None => (token, valid_until, owner),
        };
        let timer = self.timers.schedule(valid_until, Timer::LeaseEnd(lock));
        l.lease = Some(Lease {
            holder,
            token: token.clone(),
            valid_until,
            timer,
            owner,
        });
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        match &mut op.kind {
            Kind::Hold { interval, held, .. } => {
                let renewal = *held;
                *held = true;
                let next = add(sent, *interval);
                let event = if renewal {
                    Event::Renewed {
                        op: id,
                        lock,
                        token,
                        valid_until,
                    }
                } else {
                    // The timeout bounded the first acquisition only.
                    op.deadline = None;
                    let t = op.deadline_timer.take();
                    self.timers.cancel(t);
                    Event::Acquired {
                        op: id,
                        lock,
                        token,
                        valid_until,
                    }
                };
                self.emit(Output::Event(event));
                self.retry_at(id, next);
            }
            Kind::Edit { phase, .. } => {
                *phase = EditPhase::Reading;
                self.step(now, id);
            }
            _ => {
                let event = Event::Acquired {
                    op: id,
                    lock,
                    token,
                    valid_until,
                };
                self.finish(now, id, Some(event));
            }
        }
    }

    fn on_get_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let op = &self.ops[&id];
        let lock = op.lock;
        let value = match reply {
            // A value of its own: the reply's bytes share a block with other responses, and the
            // user may keep this for long.
            StoreReply::Value(v) => Some(Bytes::copy_from_slice(&v)),
            StoreReply::NotFound => None,
            other => {
                let error = OpError::UnexpectedReply(format!("{other:?}"));
                self.fail(now, id, lock, error);
                return;
            }
        };
        match &op.kind {
            Kind::Holder => self.finish(
                now,
                id,
                Some(Event::Holder {
                    op: id,
                    lock,
                    holder: value,
                }),
            ),
            Kind::Edit { .. } => {
                if !self.is_held(now, lock) {
                    self.finish_edit(now, id, Err(OpError::LeaseLapsed));
                    return;
                }
                if let Some(Op {
                    kind: Kind::Edit { phase, .. },
                    ..
                }) = self.ops.get_mut(&id)
                {
                    *phase = EditPhase::AwaitingUser;
                }
                self.emit(Output::Event(Event::EditRequested {
                    op: id,
                    lock,
                    current: value,
                }));
            }
            _ => {}
        }
    }

    fn on_write_reply(&mut self, now: Now, id: OpId, reply: StoreReply) {
        let outcome = match (&self.ops[&id].kind, reply) {
            (
                Kind::Edit {
                    phase:
                        EditPhase::Writing {
                            action: EditAction::Set(_),
                            ..
                        },
                    ..
                },
                StoreReply::Ok,
            ) => Ok(EditOutcome::Written),
            (_, StoreReply::Integer(n)) if n >= 0 => Ok(EditOutcome::Deleted),
            (_, other) => Err(OpError::UnexpectedReply(format!("{other:?}"))),
        };
        self.finish_edit(now, id, outcome);
    }

    fn on_notification(&mut self, now: Now, n: store::Notification) {
        self.stats.notifications += 1;
        if let Some(v) = &n.version {
            if self.clock.receive(v, now.wall_ms).is_err() {
                self.stats.clock_errors += 1; // never drop the notification for it
            }
        }
        let Some(lock) = self.find_lock(&n.key) else {
            return;
        };
        let l = &self.locks[lock.0 as usize];
        let holder = match &n.op {
            NotificationOp::Set(v) => Some(v.clone()),
            NotificationOp::Delete => None,
        };
        if l.observed {
            self.out
                .push_back(Queued::Ready(Output::Event(Event::HolderChanged {
                    lock,
                    holder: holder.clone(),
                })));
        }
        // A change newer than our lease that leaves the lock to someone else: the lease is gone.
        if let Some(lease) = &l.lease {
            let newer = n.version.as_ref().is_none_or(|v| v > lease.token.as_hlc());
            if newer && holder.as_ref() != Some(&lease.holder) {
                self.lease_lost(now, lock, LossReason::TakenAway);
            }
        }
        if holder.is_none() {
            // The lock is free: waiters retry at once, or, while this client is part of a herd
            // (see `Lock::herd_until`), after a seeded jitter so that the herd spreads out.
            let l = &self.locks[lock.0 as usize];
            let herd = l.herd_until.is_some_and(|until| now.instant < until);
            let waiting: Vec<OpId> = l
                .watchers
                .iter()
                .filter(|id| {
                    let op = &self.ops[id];
                    op.req.is_none() && op.retry_timer.is_some() && op.acquiring_lease().is_some()
                })
                .collect();
            for id in waiting {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.after_delete = true;
                }
                let delay = if herd { self.jitter() } else { Duration::ZERO };
                if delay.is_zero() {
                    // No timer round trip: a driver's timer may only fire on its next tick.
                    if let Some(op) = self.ops.get_mut(&id) {
                        let t = op.retry_timer.take();
                        self.timers.cancel(t);
                    }
                    self.step(now, id);
                } else {
                    self.retry_after(now, id, delay);
                }
            }
        }
    }

    /// The lease of `lock` is no longer trusted.
    fn lease_lost(&mut self, now: Now, lock: LockId, reason: LossReason) {
        let l = &mut self.locks[lock.0 as usize];
        let Some(lease) = l.lease.take() else {
            return;
        };
        self.timers.cancel(Some(lease.timer));
        match lease.owner {
            None => self.emit(Output::Event(Event::Expired { lock, reason })),
            Some(owner) => match self.ops.get(&owner).map(|o| &o.kind) {
                Some(Kind::Hold { .. }) => {
                    let op = self.ops.get_mut(&owner).expect("hold exists");
                    if let Kind::Hold { held, .. } = &mut op.kind {
                        *held = false;
                    }
                    // Whatever renewal is in flight can no longer give the hold back its lease.
                    let req = op.req.take();
                    let timer = op.retry_timer.take();
                    if let Some(p) = req.and_then(|c| self.pending.remove(&c)) {
                        self.timers.cancel(p.timer);
                    }
                    self.timers.cancel(timer);
                    self.emit(Output::Event(Event::Lost {
                        op: owner,
                        lock,
                        reason,
                    }));
                    self.step(now, owner);
                }
                Some(Kind::Edit { .. }) => {
                    self.finish_edit(now, owner, Err(OpError::LeaseLapsed));
                }
                _ => {}
            },
        }
    }

    fn jitter(&mut self) -> Duration {
        let lo = u64::try_from(self.config.retry_jitter_min.as_micros()).unwrap_or(u64::MAX);
        let hi = u64::try_from(self.config.retry_jitter_max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.between(lo, hi))
    }

    fn retry_after(&mut self, now: Now, id: OpId, delay: Duration) {
        let at = add(now.instant, delay);
        self.retry_at(id, at);
    }

    fn retry_at(&mut self, id: OpId, at: Instant) {
        let key = self.timers.schedule(at, Timer::Retry(id));
        if let Some(op) = self.ops.get_mut(&id) {
            let old = op.retry_timer.replace(key);
            self.timers.cancel(old);
        } else {
            self.timers.cancel(Some(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Config;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test is the driver
    fn a_name_always_finds_its_own_lock() {
        let now = Now::new(Instant::now(), 1_700_000_000_000);
        let mut c = Client::new(Config::new("c"), now, 1).unwrap();
        let names: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("lock-{i}").into_bytes())
            .chain([b"a".to_vec(), b"b".to_vec(), b"ab".to_vec(), b"ba".to_vec()])
            .collect();
        let ids: Vec<LockId> = names.iter().map(|n| c.lock(n).unwrap()).collect();
        let distinct: BTreeSet<LockId> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), names.len());
        for (name, id) in names.iter().zip(&ids) {
            assert_eq!(c.lock(name).unwrap(), *id);
            assert_eq!(c.find_lock(name), Some(*id));
            assert_eq!(c.lock_name(*id).map(|n| &n[..]), Some(&name[..]));
        }
        assert_eq!(c.find_lock(b"lock-3000"), None);
        assert_eq!(c.lock(b""), Err(IntentError::EmptyKey));
    }
}
