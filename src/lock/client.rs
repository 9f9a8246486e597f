//! [`Client`]: the engine's state, its construction, its outputs and the inputs from the world
//! (connection changes, messages, responses, timers). Intents are in `intent.rs`, the operation
//! state machine in `operation.rs`, replies in `reply.rs`.

use super::notify::Notify;
use super::operation::{EditPhase, Op, OpKind};
use super::registry::LockTable;
use super::request::{Owner, Pending, PendingRequests, RequestId, RequestLost};
use super::rng::SplitMix64;
use super::slab::Slab;
use super::timer::{TimerKey, Timers};
use super::{
    Config, ConfigError, IntentError, LockId, LossReason, NotDelivered, OpError, OpId, Output,
};
use crate::block::Blocks;
use crate::burst::shrink_after_burst;
use crate::hlc::HlcClock;
use crate::store::{self, RequestSender, ResponseParser};
use crate::{Message, Now};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Delay before repeating a request that reached no state store.
const NOT_DELIVERED_RETRY: Duration = Duration::from_millis(100);

/// Counters of what the client sent, repeated, ignored or refused; useful in tests, diagnostics
/// and metrics. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests published.
    pub requests_sent: u64,
    /// Requests that got no response in time (the request timeout or the operation's deadline).
    pub request_timeouts: u64,
    /// Requests of an operation that had to be made again: the previous one timed out, was cut
    /// by a disconnect, or reached no state store.
    pub retries: u64,
    /// Responses whose correlation data matched no pending request (late, duplicate or foreign).
    pub unmatched_responses: u64,
    /// Messages that could not be decoded or were on a topic the client does not use.
    pub malformed_messages: u64,
    /// Timestamps the hybrid logical clock refused (drift or overflow).
    pub clock_errors: u64,
    /// Notifications processed.
    pub notifications: u64,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    OpDeadline(OpId),
    Retry(OpId),
    Request(RequestId),
    LeaseEnd(LockId),
}

/// Where one of the two subscriptions stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Waiting,
    Granted,
    Refused,
}

/// The sans-IO lock client. See the [module docs](super) for the drive loop.
#[derive(Debug)]
pub struct Client {
    pub(super) config: Config,
    pub(super) sender: RequestSender,
    /// The holder value without a session id.
    pub(super) holder: Bytes,
    pub(super) response_topic: String,
    pub(super) notify_filter: String,
    pub(super) clock: HlcClock,
    /// Reads response messages (`handle_message`).
    pub(super) responses: ResponseParser,
    pub(super) rng: SplitMix64,
    pub(super) connected: bool,
    pub(super) sub_response: Sub,
    pub(super) sub_notify: Sub,
    pub(super) locks: LockTable,
    /// Edits waiting for the edit in progress on their lock, oldest first (rare: kept aside).
    pub(super) edit_queues: BTreeMap<LockId, VecDeque<OpId>>,
    /// Counts operations and requests: their order of creation.
    pub(super) next_seq: u64,
    pub(super) ops: Slab<OpId, Op>,
    pub(super) pending: PendingRequests,
    pub(super) timers: Timers<Timer>,
    pub(super) out: VecDeque<Output>,
    /// Where the correlation data and payloads of messages are cut from (`Client::to_message`).
    pub(super) blocks: Blocks,
    pub(super) stats: Stats,
    /// The clocks at the last `handle_timeout`: a wall clock that ran ahead of the monotonic one
    /// since then tells of a suspended host (see [`Client::expire_after_pause`]).
    pub(super) last_tick: Option<Now>,
    /// The smoothed round trip of the requests answered so far (zero before the first answer).
    pub(super) round_trip: RoundTrip,
}

/// A smoothed round trip of requests, from the monotonic instants of their sending and of their
/// answers: each answer moves it an eighth of the way to what it took (as TCP smooths its RTT).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RoundTrip {
    smoothed: Option<Duration>,
}

impl RoundTrip {
    /// A request sent at `sent` was answered at `now`.
    pub(super) fn sample(&mut self, sent: Instant, now: Instant) {
        let took = now.saturating_duration_since(sent);
        self.smoothed = Some(match self.smoothed {
            None => took,
            Some(s) => (s * 7 + took) / 8,
        });
    }

    /// The smoothed round trip, zero before the first answer.
    pub(super) fn get(&self) -> Duration {
        self.smoothed.unwrap_or_default()
    }
}

impl Client {
    /// A client with no locks, not connected. `seed` drives correlation ids and retry jitter.
    /// Its deadlines count from `now`: later calls must not give an earlier monotonic instant
    /// (one that does sees what is due at `now` as due).
    pub fn new(config: Config, now: Now, seed: u64) -> Result<Client, ConfigError> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let correlation_prefix = rng.next_u64();
        let sender = RequestSender::new(&config.client_id)
            .map_err(|_| ConfigError::InvalidClientId(config.client_id.clone()))?;
        Ok(Client {
            clock: HlcClock::new(sender.client_id().clone(), config.max_clock_drift),
            holder: Bytes::from(config.client_id.clone()),
            sender,
            response_topic: store::response_topic(&config.client_id),
            notify_filter: store::notification_filter(&config.client_id),
            responses: ResponseParser::default(),
            rng,
            connected: false,
            sub_response: Sub::Waiting,
            sub_notify: Sub::Waiting,
            locks: LockTable::default(),
            edit_queues: BTreeMap::new(),
            next_seq: 0,
            ops: Slab::new(),
            pending: PendingRequests::new(correlation_prefix),
            timers: Timers::new(now.instant),
            out: VecDeque::new(),
            blocks: Blocks::new(4096),
            stats: Stats::default(),
            last_tick: None,
            round_trip: RoundTrip::default(),
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

    /// Number of locks this client holds a lease on (whether by `try_acquire`/`acquire`, a hold
    /// or an edit), until the lease is released, lost or its validity ends.
    pub fn leases_held(&self) -> usize {
        self.locks.iter().filter(|l| l.lease.is_some()).count()
    }

    /// Number of operations that have not ended.
    pub fn operations_in_progress(&self) -> usize {
        self.ops.len()
    }

    /// Number of locks the client keeps: those in use, and idle ones whose slots the next new
    /// name will free ([`LockId`]).
    pub fn locks_kept(&self) -> usize {
        self.locks.len()
    }

    /// The id of the lock called `name`, the same for the same name; the first call for a name
    /// makes its entry (no I/O: this only names the lock, it takes nothing).
    pub fn lock_id(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError> {
        self.locks.id(name.as_ref())
    }

    /// The name of a lock.
    pub fn lock_name(&self, lock: LockId) -> Option<&Bytes> {
        self.locks.get(lock).ok().map(|l| &l.name)
    }

    // ----- inspection -------------------------------------------------------------------------

    // ----- outputs ----------------------------------------------------------------------------

    /// The next thing to do: drain until `None` after every call.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.out.pop_front();
        if output.is_none() {
            shrink_after_burst(&mut self.out);
        }
        output
    }

    /// Whether [`Client::poll_output`] has something.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// What every request of this client carries (client id, response topic).
    pub fn sender(&self) -> &RequestSender {
        &self.sender
    }

    /// When [`Client::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    // ----- world inputs -------------------------------------------------------------------------

    /// The MQTT connection is up: the client asks for its two subscriptions.
    pub fn handle_connected(&mut self, now: Now) {
        // A new connection without a disconnect in between (a driver that connected again over
        // a new transport): the old one's registrations and requests are gone with it.
        if self.connected {
            self.handle_disconnected(now);
        }
        self.connected = true;
        self.sub_response = Sub::Waiting;
        self.sub_notify = Sub::Waiting;
        self.emit(Output::Subscribe(self.response_topic.clone()));
        self.emit(Output::Subscribe(self.notify_filter.clone()));
    }

    /// The SUBACK for a filter the client asked for.
    pub fn handle_subscribed(&mut self, now: Now, filter: &str, granted: bool) {
        // `canary-suback` plants a bug for the simulator: a refusal ignored, as if still waited for.
        if !granted && cfg!(feature = "canary-suback") {
            return;
        }
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
            // Failing one may end others (an undo release settling wakes its lock's waiters).
            let ids = self.op_ids_in_order();
            for id in ids {
                if let Some(lock) = self.ops.get(&id).map(|op| op.lock) {
                    let error = OpError::SubscriptionRefused(filter.to_string());
                    self.fail(now, id, lock, error);
                }
            }
        } else if !was_ready && self.ready() {
            self.on_ready(now);
        }
    }

    /// Reports the leases that a pause of the monotonic clock (a suspended host or VM) has ended:
    /// their timers count monotonic time and would fire late, while [`Client::token`] already
    /// refuses them by the wall clock. Looks at every lease only when the wall clock ran ahead
    /// of the monotonic one since the last call by more than [`PAUSE_SLACK`](crate::time::PAUSE_SLACK).
    fn expire_after_pause(&mut self, now: Now) {
        let last = self.last_tick.replace(now);
        if last.and_then(|last| now.pause_since(last)).is_none() {
            return;
        }
        let ended: Vec<LockId> = self
            .locks
            .ids()
            .filter(|&lock| {
                let l = &self.locks[lock];
                l.lease
                    .as_ref()
                    .is_some_and(|lease| !lease.validity.holds_at(now))
            })
            .collect();
        for lock in ended {
            self.lease_lost(now, lock, LossReason::ExpiredLocally);
        }
    }

    /// The MQTT connection is down. Requests in flight are given up (and repeated after the next
    /// connection where that is safe); leases stay trusted until their validity ends.
    pub fn handle_disconnected(&mut self, now: Now) {
        self.connected = false;
        self.sub_response = Sub::Waiting;
        self.sub_notify = Sub::Waiting;
        for l in self.locks.iter_mut() {
            l.notify = Notify::Off;
        }
        let locks: Vec<LockId> = self.locks.ids().collect();
        for lock in locks {
            self.locks.may_be_idle(lock);
        }
        let ids = self.pending.ids_in_order();
        for req_id in ids {
            if let Some(p) = self.pending.remove(&req_id) {
                self.timers.cancel(p.timer);
                self.request_lost(now, p, RequestLost::Disconnected);
            }
        }
    }

    /// A message on the response topic or the notification filter. Anything else is counted and
    /// ignored; nothing that arrives can make the client panic.
    ///
    /// Timers due by `now` fire first: what was due before the message (a lease's end above
    /// all) happened before it, whichever the driver looked at first.
    pub fn handle_message(&mut self, now: Now, message: &Message) {
        if message.topic == self.response_topic {
            // `handle_response` fires the due timers first.
            self.on_response_message(now, message);
        } else {
            self.handle_timeout(now);
            match store::parse_notification(message) {
                Ok(n) => self.on_notification(now, n),
                Err(_) => self.stats.malformed_messages += 1,
            }
        }
    }

    /// Whether the client still waits for the answer to the request with this correlation
    /// data: `false` once it has given the request up (timed out, cancelled, its operation
    /// ended), when a copy reaching the store would only do harm. A driver whose MQTT session
    /// still holds the request unsent drops it then.
    pub fn awaits(&self, correlation_data: &[u8]) -> bool {
        self.pending
            .id_of(correlation_data)
            .is_some_and(|id| self.pending.get(&id).is_some())
    }

    /// The broker did not deliver the request with this correlation data (a PUBACK with a failure
    /// reason, or "no matching subscribers"). A request the state store never saw is repeated
    /// after a short delay; a refused one fails its operation. Unknown correlation data is ignored.
    pub fn handle_not_delivered(&mut self, now: Now, correlation_data: &[u8], why: NotDelivered) {
        let Some(req_id) = self.pending.id_of(correlation_data) else {
            return;
        };
        let Some(Pending {
            owner: Owner::Op(id),
            ..
        }) = self.pending.get(&req_id)
        else {
            // Registrations and releases of the engine itself wait for their timeout.
            return;
        };
        let id = *id;
        let Some(p) = self.pending.remove(&req_id) else {
            return;
        };
        self.timers.cancel(p.timer);
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.req = None;
        let lock = op.lock;
        // The store never saw it: a write not delivered was not applied.
        match &mut op.kind {
            OpKind::Edit(edit) => {
                if let EditPhase::Writing { attempts, .. } = &mut edit.phase {
                    *attempts = attempts.saturating_sub(1);
                }
            }
            OpKind::Access(a) => a.sent = false,
            _ => {}
        }
        match why {
            NotDelivered::Unsent => self.request_lost(now, p, RequestLost::Timeout),
            NotDelivered::NoSubscribers => {
                let delay = self.backoff(id, NOT_DELIVERED_RETRY);
                self.stats.retries += 1;
                self.retry_after(now, id, delay);
            }
            NotDelivered::Refused(reason) => {
                self.fail(now, id, lock, OpError::NotDelivered(reason));
            }
        }
    }

    /// Deadlines up to `now` have passed.
    pub fn handle_timeout(&mut self, now: Now) {
        self.expire_after_pause(now);
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
                            self.advance(now, id);
                        }
                    }
                }
                Timer::Request(req_id) => {
                    if let Some(p) = self.pending.remove(&req_id) {
                        self.stats.request_timeouts += 1;
                        self.request_lost(now, p, RequestLost::Timeout);
                    }
                }
                Timer::LeaseEnd(lock) => {
                    let l = &self.locks[lock];
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

    pub(super) fn on_ready(&mut self, now: Now) {
        let locks: Vec<LockId> = self.locks.ids().collect();
        for lock in locks {
            self.ensure_notify(now, lock);
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
            .partition(|id| matches!(self.ops[id].kind, OpKind::Release { .. }));
        for id in releases.into_iter().chain(others) {
            self.advance(now, id);
        }
    }

    pub(super) fn emit(&mut self, output: Output) {
        self.out.push_back(output);
    }
}
