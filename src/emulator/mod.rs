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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hlc::{FencingToken, Hlc};
use crate::store::{
    self, Command, Notification, NotificationOp, ProtocolError, ServiceError, SetCondition,
    StoreReply,
};
use crate::{Message, Now};

#[cfg(test)]
mod tests;

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
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            node_id: "statestore".to_owned(),
            max_skew: Duration::from_secs(60),
            record_requests: false,
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
    out: VecDeque<Message>,
    records: Vec<RequestRecord>,
    stats: Stats,
}

/// The outcome of executing a command: reply, response version, whether it changed the store.
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
            if self.keys.remove(&key).is_some() {
                self.stats.expirations += 1;
                let version = self.next_version(now);
                self.notify(&key, NotificationOp::Delete, &version);
            }
        }
    }

    /// The MQTT client `client_id` disconnected: its KEYNOTIFY registrations are dropped.
    pub fn handle_client_disconnected(&mut self, now: Now, client_id: &str) {
        self.handle_timeout(now);
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
            self.stats.protocol_errors += 1;
            let error = ProtocolError {
                status: 505,
                message: Some(format!("unsupported protocol version {v}").into()),
                property_name: Some(store::PROP_PROTOCOL_VERSION.into()),
                property_value: Some(v.into()),
                supported_major_versions: Some(SUPPORTED_MAJOR_VERSIONS.into()),
                request_protocol_version: Some(v.into()),
                ..ProtocolError::default()
            };
            let m = store::protocol_error_message(topic, correlation_data, &error);
            self.out.push_back(m);
            self.record(record);
            return;
        }
        let mark = self.out.len();
        let outcome = match self.check(now, &parsed) {
            Ok((ft, command)) => self.execute(now, client_id, command, ft.as_ref()),
            Err(e) => Outcome::new(StoreReply::Error(e), None),
        };
        if matches!(outcome.reply, StoreReply::Error(_)) {
            self.stats.service_errors += 1;
        } else {
            self.stats.processed += 1;
        }
        let response = store::response_message(
            topic,
            correlation_data,
            200,
            outcome.version.as_ref(),
            &outcome.reply,
        );
        // The response goes before the notifications the request caused.
        self.out.insert(mark, response);
        record.reply = Some(outcome.reply);
        record.applied = outcome.applied;
        self.record(record);
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

    fn execute(
        &mut self,
        now: Now,
        client_id: &str,
        command: Command,
        ft: Option<&FencingToken>,
    ) -> Outcome {
        if matches!(
            command,
            Command::Set { .. } | Command::Del { .. } | Command::VDel { .. }
        ) {
            if let Err(e) = self.check_fence(command.key(), ft) {
                return Outcome::new(StoreReply::Error(e), None);
            }
        }
        match command {
            Command::Set {
                key,
                value,
                options,
            } => {
                if let Some(e) = self.keys.get(&key) {
                    let refused = match options.condition {
                        SetCondition::Always => false,
                        SetCondition::NotExists => true,
                        SetCondition::NotExistsOrEqual => e.value != value,
                    };
                    if refused {
                        return Outcome::new(StoreReply::Integer(-1), Some(e.version.clone()));
                    }
                }
                let version = self.next_version(now);
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
                    key.clone(),
                    Entry {
                        value: value.clone(),
                        version: version.clone(),
                        expires_at,
                        fencing_token,
                    },
                );
                self.notify(&key, NotificationOp::Set(value), &version);
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
            Command::Del { key } => self.delete(now, &key, None, ft),
            Command::VDel { key, value } => self.delete(now, &key, Some(&value), ft),
            Command::KeyNotify { key } => {
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
        }
    }

    /// DEL (`expected` = `None`) or VDEL.
    fn delete(
        &mut self,
        now: Now,
        key: &Bytes,
        expected: Option<&Bytes>,
        ft: Option<&FencingToken>,
    ) -> Outcome {
        let Some(e) = self.keys.get(key) else {
            return Outcome::new(StoreReply::Integer(0), None);
        };
        if expected.is_some_and(|v| *v != e.value) {
            return Outcome::new(StoreReply::Integer(-1), Some(e.version.clone()));
        }
        if let Some(at) = e.expires_at {
            self.expiries.remove(&(at, key.clone()));
        }
        if ft.is_some() && e.fencing_token.is_some() {
            self.stats.fenced_writes += 1;
        }
        self.keys.remove(key);
        let version = self.next_version(now);
        self.notify(key, NotificationOp::Delete, &version);
        Outcome {
            reply: StoreReply::Integer(1),
            version: Some(version),
            applied: true,
        }
    }

    /// Queues `op` on `key` for every observer of the key.
    fn notify(&mut self, key: &Bytes, op: NotificationOp, version: &Hlc) {
        let Some(clients) = self.observers.get(key) else {
            return;
        };
        let n = Notification {
            key: key.clone(),
            op,
            version: Some(version.clone()),
        };
        for client in clients {
            self.out.push_back(store::notification_message(client, &n));
            self.stats.notifications += 1;
        }
    }

    /// A new version, strictly newer than every earlier one, from the store's wall clock.
    fn next_version(&mut self, now: Now) -> Hlc {
        let last = &self.last_version;
        let (wall, counter) = if now.wall_ms > last.wall_ms {
            (now.wall_ms, 0)
        } else {
            match last.counter.checked_add(1) {
                Some(c) => (last.wall_ms, c),
                None => (last.wall_ms.saturating_add(1), 0),
            }
        };
        self.last_version = Hlc::new(wall, counter, self.config.node_id.clone());
        self.last_version.clone()
    }
}
