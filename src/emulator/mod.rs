//! A sans-IO model of the state-store server (feature `emulator`), exact to docs/PROTOCOL.md: for
//! tests, the simulator in `fuzz/`, and an emulator binary.
//!
//! [`Emulator`] takes request [`Message`]s (with the MQTT client id of their sender), clock
//! readings and disconnect notices, and returns response and notification messages in order, and
//! the next key expiry. It reads no clock and does no I/O.
//!
//! # The drive loop
//!
//! After every call, drain [`Emulator::poll_message`] until `None` and publish each message on its
//! topic; call [`Emulator::handle_timeout`] at [`Emulator::poll_timeout`] (early, late or twice is
//! harmless: every call first expires the keys that are due).
//!
//! ```
//! use leasedlock::emulator::{Emulator, EmulatorConfig};
//! use leasedlock::hlc::Hlc;
//! use leasedlock::store::{self, Command, Request, SetOptions, StoreReply};
//! use leasedlock::{bytes::Bytes, Now};
//! use std::time::{Duration, Instant};
//!
//! let now = Now::new(Instant::now(), 1_700_000_000_000);
//! let mut store = Emulator::new(EmulatorConfig::default(), now);
//! let request = Request {
//!     command: Command::Set {
//!         key: Bytes::from_static(b"k"),
//!         value: Bytes::from_static(b"v"),
//!         options: SetOptions::default(),
//!     },
//!     timestamp: Hlc::new(now.wall_ms, 0, "c1"),
//!     fencing_token: None,
//! };
//! let sender = store::RequestSender::new("c1").unwrap();
//! let msg = request.to_message(&sender, Bytes::from_static(&[1; 16]), Duration::from_secs(1)).unwrap();
//! store.handle_request(now, "c1", &msg);
//! let response = store.poll_message().unwrap();
//! let body = store::parse_response(&response).unwrap().outcome.unwrap();
//! assert_eq!(body.reply, StoreReply::Ok);
//! assert_eq!(body.version.as_ref(), store.version(b"k"));
//! ```
//!
//! # Decisions where the protocol leaves a choice (docs/PROTOCOL.md §9)
//!
//! - **Versions** come from the emulator's own clock only ([`EmulatorConfig::node_id`], wall ms
//!   from `now.wall_ms`): `(wall, 0)` when the wall clock moved past the last version, else the
//!   last version's counter + 1. Client timestamps are never folded in. Every change (SET, DEL,
//!   VDEL that deleted, expiry) gets a new, strictly larger version.
//! - **`__ts` of responses:** SET `+OK` → the new version; SET `:-1`, VDEL `:-1`, GET hit → the
//!   key's current version; DEL/VDEL `:1` → the version of the deletion (the same as on the DELETE
//!   notification); GET miss, DEL/VDEL `:0`, KEYNOTIFY, service errors → none.
//! - **Notifications** carry the version of the change. A DELETE (DEL, VDEL, expiry) gets a new
//!   version from the store clock, so that clients can tell a stale DELETE from a fresh one. A
//!   request's response is queued before the notifications it causes. The sender of a SET that
//!   observes the key is notified too.
//! - **Check order:** `__protVer` (major ≠ 1 → status 505), `__ts` (missing / malformed / more than
//!   [`EmulatorConfig::max_skew`] ahead of the store's wall clock), `__ft` (malformed / too far
//!   ahead), payload (see [`Command::decode`]), fencing, then the command's condition. All service
//!   errors are `-ERR <text>` with `__stat` 200.
//! - **Fencing:** the first *applied* SET carrying `__ft` protects the key and stores the token; a
//!   refused SET (NX/NEX) changes nothing. Afterwards SET/DEL/VDEL without `__ft` or with a lower
//!   token are refused; an applied write with a newer token replaces the stored one. The token
//!   belongs to the key: deleting or expiring the key removes its protection. GET and KEYNOTIFY
//!   are never fenced. A `__ft` on an unprotected DEL/VDEL is accepted and ignored.
//! - **Expiry:** a key set with `PX ms` at instant `t` is gone from `t + ms` on (inclusive). A SET
//!   without `PX` clears an earlier expiry (as in Redis).
//! - **VDEL** on an absent key → `:0`; on a different value → `:-1`.
//! - **KEYNOTIFY** on an absent key is accepted (`+OK`); registering twice is one registration.
//!   Registrations belong to the sender's MQTT client id (not `__srcId`).
//! - **Refused without a response** (counted in [`Stats`]): a missing or invalid response topic
//!   (see [`store::is_valid_response_topic`]) and missing correlation data.
//! - **505** (protocol version): `__stMsg`, `__propName` = `__protVer`, `__propVal` and
//!   `__requestProtVer` = the version the request carried, `__supProtMajVer` = `1`.
//! - **Quotas** ([`EmulatorConfig::max_keys`], [`EmulatorConfig::max_bytes`]): checked last, only
//!   for a SET that would be applied: `-ERR the quota has been exceeded` when it would add a key
//!   beyond `max_keys` or make the keys and values stored exceed `max_bytes`. Updates that stay
//!   within the bounds, GET, DEL and VDEL always work.
//! - **Too large to deliver (status 413)**: the store never queues a PUBLISH larger than
//!   [`EmulatorConfig::max_packet_size`] (the broker's limit for what the store sends) or than the
//!   limit learned for the receiving client ([`Emulator::handle_client_packet_dropped`]), nor one
//!   MQTT cannot encode (a notification topic carries the key in hex, so a key of more than about
//!   32 KiB has none). A request whose answer or notifications would break that is refused, not
//!   applied, with a protocol error: `__stat` 413, empty payload, `__stMsg` saying what was too
//!   large. This covers a GET of a large value, a SET/DEL/VDEL whose notification to an observer
//!   would be too large, and a KEYNOTIFY on a key whose notifications cannot be sent. An expiry's
//!   DELETE notification that cannot be sent is dropped (counted in [`Stats::unsent`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hlc::{FencingToken, Hlc};
use crate::store::{
    self, Command, Notification, NotificationOp, ProtocolError, ServiceError, SetCondition,
    StoreReply,
};
use crate::{Message, Now, QoS};

mod delivery;
#[cfg(test)]
mod tests;

pub use delivery::{mqtt_packet_size, MAX_PACKET_SIZE, STATUS_TOO_LARGE};

/// The major protocol versions the store supports: `__supProtMajVer` of a 505.
pub const SUPPORTED_MAJOR_VERSIONS: &str = "1";

/// Configuration of an [`Emulator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Node id of the store's clock: the third part of every version it makes.
    pub node_id: String,
    /// How far ahead of the store's wall clock a `__ts` or `__ft` may be (60 s like the service).
    pub max_skew: Duration,
    /// Keep a [`RequestRecord`] of every request (read with [`Emulator::take_records`]).
    pub record_requests: bool,
    /// At most this many keys (`None`: no bound): a SET of a new key beyond it answers
    /// `-ERR the quota has been exceeded`.
    pub max_keys: Option<usize>,
    /// At most this many bytes of keys and values together (`None`: no bound): a SET that would
    /// store more answers `-ERR the quota has been exceeded`.
    pub max_bytes: Option<usize>,
    /// The largest PUBLISH packet the store may send, in bytes: the broker's Maximum Packet Size
    /// for the store's connection (see [`Emulator::set_max_packet_size`]). Default
    /// [`MAX_PACKET_SIZE`].
    pub max_packet_size: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            node_id: "statestore".to_owned(),
            max_skew: Duration::from_secs(60),
            record_requests: false,
            max_keys: None,
            max_bytes: None,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }
}

/// Counters of what the emulator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Request messages handed to [`Emulator::handle_request`].
    pub requests: u64,
    /// Requests answered with `+OK`/`:n`/`$…` (processed, no service error).
    pub processed: u64,
    /// Requests answered with a service error (`-ERR`).
    pub service_errors: u64,
    /// Requests answered with a protocol error (status ≥ 400).
    pub protocol_errors: u64,
    /// Requests dropped because the response topic was missing or invalid.
    pub invalid_response_topics: u64,
    /// Requests dropped because they had no correlation data.
    pub missing_correlation_data: u64,
    /// Notifications queued.
    pub notifications: u64,
    /// Keys that expired.
    pub expirations: u64,
    /// Writes accepted with a fencing token.
    pub fenced_writes: u64,
    /// Requests refused with status 413: their answer or a notification would be too large to be
    /// delivered (also counted in `protocol_errors`).
    pub too_large: u64,
    /// SETs refused because a quota was reached (also counted in `service_errors`).
    pub quota_exceeded: u64,
    /// Responses and notifications not queued because they could not be delivered (not even as a
    /// 413): e.g. an expiry's DELETE notification to a client whose limit is too small.
    pub unsent: u64,
}

/// What happened to one request (kept when [`EmulatorConfig::record_requests`] is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it was handled.
    pub at: Now,
    /// The sender's MQTT client id.
    pub client_id: String,
    /// The command, when the payload decoded.
    pub command: Option<Command>,
    /// The `__ft` it carried, when well formed.
    pub fencing_token: Option<FencingToken>,
    /// The token protecting the key before the request.
    pub stored_token: Option<FencingToken>,
    /// The reply; `None` when no reply was sent or it was a protocol error.
    pub reply: Option<StoreReply>,
    /// Whether the request changed the store (a SET applied, a key deleted).
    pub applied: bool,
}

#[derive(Clone, Debug)]
struct Entry {
    value: Bytes,
    version: Hlc,
    expires_at: Option<Instant>,
    fencing_token: Option<FencingToken>,
}

/// The state-store server model. See the [module docs](self).
#[derive(Debug)]
pub struct Emulator {
    config: EmulatorConfig,
    last_version: Hlc,
    keys: BTreeMap<Bytes, Entry>,
    expiries: BTreeSet<(Instant, Bytes)>,
    observers: BTreeMap<Bytes, BTreeSet<String>>,
    /// Bytes of keys and values stored.
    stored_bytes: usize,
    /// The largest packet known to reach a client, by client id (learned from broker drops).
    client_limits: BTreeMap<String, usize>,
    out: VecDeque<Message>,
    records: Vec<RequestRecord>,
    stats: Stats,
}

/// The outcome of executing a command: reply, response version, whether it changed the store.
/// A command that is refused as too large to answer gives a [`ProtocolError`] instead.
struct Outcome {
    reply: StoreReply,
    version: Option<Hlc>,
    applied: bool,
}

impl Outcome {
    fn new(reply: StoreReply, version: Option<Hlc>) -> Outcome {
        Outcome {
            reply,
            version,
            applied: false,
        }
    }
}

impl Emulator {
    /// An empty store whose clock starts at `now`.
    pub fn new(config: EmulatorConfig, now: Now) -> Emulator {
        let last_version = Hlc::new(now.wall_ms, 0, config.node_id.clone());
        Emulator {
            config,
            last_version,
            keys: BTreeMap::new(),
            expiries: BTreeSet::new(),
            observers: BTreeMap::new(),
            stored_bytes: 0,
            client_limits: BTreeMap::new(),
            out: VecDeque::new(),
            records: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.keys.get(key).map(|e| &e.value)
    }

    /// The version of `key`, if present.
    pub fn version(&self, key: &[u8]) -> Option<&Hlc> {
        self.keys.get(key).map(|e| &e.version)
    }

    /// The fencing token protecting `key`, if any.
    pub fn fencing_token(&self, key: &[u8]) -> Option<&FencingToken> {
        self.keys.get(key)?.fencing_token.as_ref()
    }

    /// When `key` expires, if it has an expiry.
    pub fn expires_at(&self, key: &[u8]) -> Option<Instant> {
        self.keys.get(key)?.expires_at
    }

    /// Whether `client_id` has a KEYNOTIFY registration on `key`.
    pub fn is_observing(&self, client_id: &str, key: &[u8]) -> bool {
        self.observers
            .get(key)
            .is_some_and(|clients| clients.contains(client_id))
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes of keys and values stored (what [`EmulatorConfig::max_bytes`] bounds).
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// The newest version the store's clock has made.
    pub fn last_version(&self) -> &Hlc {
        &self.last_version
    }

    /// The records kept since the last call (see [`EmulatorConfig::record_requests`]).
    pub fn take_records(&mut self) -> Vec<RequestRecord> {
        std::mem::take(&mut self.records)
    }

    /// The next response or notification to publish (on its `topic`), in order.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// The next key expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Expires the keys that are due, with a DELETE notification each.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now.instant {
                break;
            }
            self.expiries.pop_first();
            if let Some(e) = self.keys.remove(&key) {
                self.stored_bytes -= key.len() + e.value.len();
                self.stats.expirations += 1;
                let version = self.version_at(now);
                self.last_version = version.clone();
                // Nothing can refuse an expiry: a notification that cannot be sent is dropped.
                if let Some(clients) = self.observers.get(&key) {
                    let n = Notification {
                        key: key.clone(),
                        op: NotificationOp::Delete,
                        version: Some(version),
                    };
                    let mut sendable = Vec::with_capacity(clients.len());
                    for client in clients {
                        match self.notification_to(client, &n) {
                            Ok(m) => sendable.push(m),
                            Err(_) => self.stats.unsent += 1,
                        }
                    }
                    self.queue_notifications(sendable);
                }
            }
        }
    }

    /// The MQTT client `client_id` disconnected (or its session was taken over by a new
    /// connection with the same client id): its KEYNOTIFY registrations are dropped, and the
    /// packet limit learned for it is forgotten.
    pub fn handle_client_disconnected(&mut self, now: Now, client_id: &str) {
        self.handle_timeout(now);
        self.client_limits.remove(client_id);
        self.forget_registrations(client_id);
    }

    /// Changes the quotas ([`EmulatorConfig::max_keys`], [`EmulatorConfig::max_bytes`]) from
    /// now on, as other tenants filling a shared store or leaving it would: the keys already
    /// stored stay, and a bound below what is stored refuses every SET that would add a key or
    /// a byte until deletes make room.
    pub fn set_quota(&mut self, max_keys: Option<usize>, max_bytes: Option<usize>) {
        self.config.max_keys = max_keys;
        self.config.max_bytes = max_bytes;
    }

    /// Drops every KEYNOTIFY registration of `client_id` while its connection goes on, as a
    /// store that restarted or failed over without its registrations would: the client is told
    /// nothing, and its notifications stop until it registers again.
    pub fn forget_registrations(&mut self, client_id: &str) {
        self.observers.retain(|_, clients| {
            clients.remove(client_id);
            !clients.is_empty()
        });
    }

    /// Handles a request message published by the MQTT client `client_id` (whose KEYNOTIFY
    /// registrations it creates). Queues the response (if any) and the notifications it causes.
    pub fn handle_request(&mut self, now: Now, client_id: &str, msg: &Message) {
        self.handle_timeout(now);
        self.stats.requests += 1;
        let parsed = store::parse_request(msg);
        let mut record = RequestRecord {
            at: now,
            client_id: client_id.to_owned(),
            command: parsed.command.clone().ok(),
            fencing_token: parsed.fencing_token.clone().ok().flatten(),
            stored_token: parsed
                .command
                .as_ref()
                .ok()
                .and_then(|c| self.fencing_token(c.key()).cloned()),
            reply: None,
            applied: false,
        };
        let Some(topic) = parsed
            .response_topic
            .as_deref()
            .filter(|t| store::is_valid_response_topic(t))
        else {
            self.stats.invalid_response_topics += 1;
            self.record(record);
            return;
        };
        let Some(correlation_data) = parsed.correlation_data.clone() else {
            self.stats.missing_correlation_data += 1;
            self.record(record);
            return;
        };
        if let Some(v) = parsed
            .protocol_version
            .as_deref()
            .filter(|v| v.split('.').next() != Some("1"))
        {
            let error = ProtocolError {
                status: 505,
                message: Some(format!("unsupported protocol version {v}").into()),
                property_name: Some(store::PROP_PROTOCOL_VERSION.into()),
                property_value: Some(v.into()),
                supported_major_versions: Some(SUPPORTED_MAJOR_VERSIONS.into()),
                request_protocol_version: Some(v.into()),
                ..ProtocolError::default()
            };
            self.send_protocol_error(client_id, topic, correlation_data, &error);
            self.record(record);
            return;
        }
        let mark = self.out.len();
        let outcome = match self.check(now, &parsed) {
            Ok((ft, command)) => self.execute(now, client_id, command, ft.as_ref()),
            Err(e) => Ok(Outcome::new(StoreReply::Error(e), None)),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                self.stats.too_large += 1;
                self.send_protocol_error(client_id, topic, correlation_data, &error);
                self.record(record);
                return;
            }
        };
        let mut response = store::response_message(
            topic,
            correlation_data.clone(),
            200,
            outcome.version.as_ref(),
            &outcome.reply,
        );
        response.qos = QoS::AtLeastOnce;
        if let Err(error) = self.fits(client_id, &response, "the response") {
            if !outcome.applied {
                // E.g. a GET of a value larger than can be delivered: refused, nothing changed.
                self.stats.too_large += 1;
                self.send_protocol_error(client_id, topic, correlation_data, &error);
                self.record(record);
                return;
            }
            // Applied, but even its small response cannot be delivered to this client.
            self.stats.unsent += 1;
        } else {
            // The response goes before the notifications the request caused.
            self.out.insert(mark, response);
        }
        if matches!(outcome.reply, StoreReply::Error(_)) {
            self.stats.service_errors += 1;
        } else {
            self.stats.processed += 1;
        }
        record.reply = Some(outcome.reply);
        record.applied = outcome.applied;
        self.record(record);
    }

    /// Queues a protocol error response (counted in `protocol_errors`), or counts it as unsent
    /// when even that cannot be delivered.
    fn send_protocol_error(
        &mut self,
        client_id: &str,
        topic: &str,
        correlation_data: Bytes,
        error: &ProtocolError,
    ) {
        self.stats.protocol_errors += 1;
        let m = store::protocol_error_message(topic, correlation_data, error);
        if self.fits(client_id, &m, "the error response").is_ok() {
            self.out.push_back(m);
        } else {
            self.stats.unsent += 1;
        }
    }

    fn queue_notifications(&mut self, notes: Vec<Message>) {
        self.stats.notifications += notes.len() as u64;
        self.out.extend(notes);
    }

    fn record(&mut self, record: RequestRecord) {
        if self.config.record_requests {
            self.records.push(record);
        }
    }

    /// The request's token and command, or the first service error in the service's order.
    fn check(
        &self,
        now: Now,
        parsed: &store::ParsedRequest,
    ) -> Result<(Option<FencingToken>, Command), ServiceError> {
        let limit = now
            .wall_ms
            .saturating_add(u64::try_from(self.config.max_skew.as_millis()).unwrap_or(u64::MAX));
        let ts = parsed.timestamp.as_ref().map_err(Clone::clone)?;
        if ts.wall_ms > limit {
            return Err(ServiceError::TimestampSkew);
        }
        let ft = parsed.fencing_token.clone()?;
        if ft.as_ref().is_some_and(|ft| ft.as_hlc().wall_ms > limit) {
            return Err(ServiceError::FencingTokenSkew);
        }
        let command = parsed.command.clone()?;
        Ok((ft, command))
    }

    /// The fencing rule for a write to `key` carrying `ft`.
    fn check_fence(&self, key: &[u8], ft: Option<&FencingToken>) -> Result<(), ServiceError> {
        match (self.fencing_token(key), ft) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ServiceError::FencingTokenRequired),
            (Some(stored), Some(ft)) if ft < stored => Err(ServiceError::FencingTokenLowerVersion),
            (Some(_), Some(_)) => Ok(()),
        }
    }

    /// Executes a checked command; `Err` when an answer or notification it causes would be too
    /// large to deliver (then nothing changed).
    fn execute(
        &mut self,
        now: Now,
        client_id: &str,
        command: Command,
        ft: Option<&FencingToken>,
    ) -> Result<Outcome, ProtocolError> {
        if matches!(
            command,
            Command::Set { .. } | Command::Del { .. } | Command::VDel { .. }
        ) {
            if let Err(e) = self.check_fence(command.key(), ft) {
                return Ok(Outcome::new(StoreReply::Error(e), None));
            }
        }
        Ok(match command {
            Command::Set {
                key,
                value,
                options,
            } => {
                let old_size = match self.keys.get(&key) {
                    Some(e) => {
                        let refused = match options.condition {
                            SetCondition::Always => false,
                            SetCondition::NotExists => true,
                            SetCondition::NotExistsOrEqual => e.value != value,
                        };
                        if refused {
                            return Ok(Outcome::new(
                                StoreReply::Integer(-1),
                                Some(e.version.clone()),
                            ));
                        }
                        Some(key.len() + e.value.len())
                    }
                    None => None,
                };
                let stored_after =
                    self.stored_bytes - old_size.unwrap_or(0) + key.len() + value.len();
                let over_keys = old_size.is_none()
                    && self
                        .config
                        .max_keys
                        .is_some_and(|max| self.keys.len() >= max);
                let over_bytes = self.config.max_bytes.is_some_and(|max| stored_after > max);
                if over_keys || over_bytes {
                    self.stats.quota_exceeded += 1;
                    return Ok(Outcome::new(
                        StoreReply::Error(ServiceError::QuotaExceeded),
                        None,
                    ));
                }
                let version = self.version_at(now);
                let notes =
                    self.notifications(&key, NotificationOp::Set(value.clone()), &version)?;
                self.last_version = version.clone();
                self.stored_bytes = stored_after;
                let expires_at = options
                    .expiry
                    .and_then(|ms| now.instant.checked_add(Duration::from_millis(ms.get())));
                let old = self.keys.remove(&key);
                if let Some(at) = old.as_ref().and_then(|o| o.expires_at) {
                    self.expiries.remove(&(at, key.clone()));
                }
                if let Some(at) = expires_at {
                    self.expiries.insert((at, key.clone()));
                }
                if ft.is_some() {
                    self.stats.fenced_writes += 1;
                }
                let fencing_token = match (old.and_then(|o| o.fencing_token), ft) {
                    (Some(stored), Some(ft)) => Some(stored.max(ft.clone())),
                    (stored, ft) => stored.or_else(|| ft.cloned()),
                };
                self.keys.insert(
                    key,
                    Entry {
                        value,
                        version: version.clone(),
                        expires_at,
                        fencing_token,
                    },
                );
                self.queue_notifications(notes);
                Outcome {
                    reply: StoreReply::Ok,
                    version: Some(version),
                    applied: true,
                }
            }
            Command::Get { key } => match self.keys.get(&key) {
                Some(e) => {
                    Outcome::new(StoreReply::Value(e.value.clone()), Some(e.version.clone()))
                }
                None => Outcome::new(StoreReply::NotFound, None),
            },
            Command::Del { key } => self.delete(now, &key, None, ft)?,
            Command::VDel { key, value } => self.delete(now, &key, Some(&value), ft)?,
            Command::KeyNotify { key } => {
                // Its notifications must be deliverable: a DELETE is the smallest one (a SET's
                // is checked when it happens).
                let probe = Notification {
                    key: key.clone(),
                    op: NotificationOp::Delete,
                    version: Some(self.last_version.clone()),
                };
                self.notification_to(client_id, &probe)?;
                self.observers
                    .entry(key)
                    .or_default()
                    .insert(client_id.to_owned());
                Outcome::new(StoreReply::Ok, None)
            }
            Command::KeyNotifyStop { key } => {
                let removed = match self.observers.get_mut(&key) {
                    Some(clients) => {
                        let removed = clients.remove(client_id);
                        if clients.is_empty() {
                            self.observers.remove(&key);
                        }
                        removed
                    }
                    None => false,
                };
                let reply = if removed {
                    StoreReply::Ok
                } else {
                    StoreReply::Integer(0)
                };
                Outcome::new(reply, None)
            }
        })
    }

    /// DEL (`expected` = `None`) or VDEL.
    fn delete(
        &mut self,
        now: Now,
        key: &Bytes,
        expected: Option<&Bytes>,
        ft: Option<&FencingToken>,
    ) -> Result<Outcome, ProtocolError> {
        let Some(e) = self.keys.get(key) else {
            return Ok(Outcome::new(StoreReply::Integer(0), None));
        };
        if expected.is_some_and(|v| *v != e.value) {
            return Ok(Outcome::new(
                StoreReply::Integer(-1),
                Some(e.version.clone()),
            ));
        }
        let version = self.version_at(now);
        let notes = self.notifications(key, NotificationOp::Delete, &version)?;
        let fenced = ft.is_some() && e.fencing_token.is_some();
        if let Some(old) = self.keys.remove(key) {
            if let Some(at) = old.expires_at {
                self.expiries.remove(&(at, key.clone()));
            }
            self.stored_bytes -= key.len() + old.value.len();
        }
        if fenced {
            self.stats.fenced_writes += 1;
        }
        self.last_version = version.clone();
        self.queue_notifications(notes);
        Ok(Outcome {
            reply: StoreReply::Integer(1),
            version: Some(version),
            applied: true,
        })
    }

    /// The next version, strictly newer than every earlier one, from the store's wall clock
    /// (made the last one by whoever applies a change with it).
    fn version_at(&self, now: Now) -> Hlc {
        let last = &self.last_version;
        let (wall, counter) = if now.wall_ms > last.wall_ms {
            (now.wall_ms, 0)
        } else {
            match last.counter.checked_add(1) {
                Some(c) => (last.wall_ms, c),
                None => (last.wall_ms.saturating_add(1), 0),
            }
        };
        Hlc::new(wall, counter, self.config.node_id.clone())
    }
}
