//! Requests: what the engine asks the state store ([`Request`], the typed seam to whoever owns the
//! wire), and the requests still waiting for their response ([`PendingRequests`]).
//!
//! One name for a request inside the engine: its [`RequestId`], the slab key of its entry. On the
//! wire the id travels as 16 bytes of MQTT correlation data: this client's random 64-bit prefix,
//! then the id (both big-endian), so a response is matched without a search and a response meant
//! for another client (or an earlier incarnation of this one) matches nothing
//! (`docs/PROTOCOL.md` §1).

use super::client::{Client, Timer};
use super::slab::{Slab, SlabKey};
use super::timer::TimerKey;
use super::{LockId, OpError, OpId, Output};
use crate::hlc::{FencingToken, Hlc};
use crate::store::{self, Command};
use crate::time::later;
use crate::{Message, Now};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A state-store request the engine wants sent, with everything its PUBLISH carries that is not
/// the same for all of this client's requests. Turn it into bytes with the connection's template,
/// or into a [`Message`] with [`Client::to_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The MQTT correlation data: names the request in its response (and in its PUBACK).
    pub correlation_data: [u8; 16],
    /// What to do.
    pub command: Command,
    /// The client's hybrid logical clock at send time (`__ts`).
    pub timestamp: Hlc,
    /// The fencing token that guards a write under a lock (`__ft`).
    pub fencing_token: Option<FencingToken>,
    /// How long the request may take; its message expiry is this rounded up to whole seconds.
    pub timeout: Duration,
}

impl Request {
    /// The Message Expiry Interval of the request's PUBLISH, in seconds.
    pub fn message_expiry(&self) -> u32 {
        store::expiry_seconds(self.timeout)
    }
}

/// Names a pending request of this client (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RequestId(NonZeroU64);

impl SlabKey for RequestId {
    fn from_raw(raw: u64) -> Self {
        // Slab keys are never 0; MAX names no slot that can exist.
        RequestId(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
    fn raw(self) -> u64 {
        self.0.get()
    }
}

impl SlabKey for OpId {
    fn from_raw(raw: u64) -> Self {
        OpId(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MAX))
    }
    fn raw(self) -> u64 {
        self.0.get()
    }
}

/// What a pending request is for: how its response is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestKind {
    /// SET NEX PX: acquire or renew; `epoch` of the lock at send time.
    Set { epoch: u64 },
    /// GET of the lock (holder) or of an edited key.
    Get,
    /// The fenced SET of an edit that raises the key's fence before the user sees the value.
    Fence,
    /// The fenced SET or DEL of an edit.
    Write,
    /// VDEL: release.
    VDel,
    /// The GET, SET or DEL of a store access.
    Access,
    /// KEYNOTIFY of a lock.
    KeyNotify,
    /// KEYNOTIFY STOP of a lock.
    KeyNotifyStop,
}

/// Who is waiting for a response.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    /// An operation.
    Op(OpId),
    /// The engine itself, for a lock: KEYNOTIFY registrations, and a VDEL whose release ended.
    Lock(LockId),
}

/// A request waiting for its response.
#[derive(Debug)]
pub(super) struct Pending {
    /// Order of sending.
    pub(super) seq: u64,
    pub(super) owner: Owner,
    pub(super) kind: RequestKind,
    pub(super) sent: Instant,
    /// When the request is given up; `None` when its operation's deadline timer, due at the
    /// same instant, ends the operation (and with it the request) first.
    pub(super) timer: Option<TimerKey>,
}

/// Why a request will get no (usable) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestLost {
    Timeout,
    Disconnected,
}

/// The requests awaiting their response, by id.
#[derive(Debug)]
pub(super) struct PendingRequests {
    /// The high half of every correlation data of this client.
    prefix: u64,
    slab: Slab<RequestId, Pending>,
}

impl PendingRequests {
    pub(super) fn new(prefix: u64) -> Self {
        PendingRequests {
            prefix,
            slab: Slab::new(),
        }
    }

    /// The request named by this correlation data, if it is this client's.
    pub(super) fn id_of(&self, correlation_data: &[u8]) -> Option<RequestId> {
        let wire = u128::from_be_bytes(<[u8; 16]>::try_from(correlation_data).ok()?);
        NonZeroU64::new(wire as u64)
            .filter(|_| (wire >> 64) as u64 == self.prefix)
            .map(RequestId)
    }

    /// The correlation data of a request.
    pub(super) fn correlation_data(&self, id: RequestId) -> [u8; 16] {
        ((u128::from(self.prefix) << 64) | u128::from(id.0.get())).to_be_bytes()
    }

    /// The id the next [`PendingRequests::insert`] gives.
    pub(super) fn next_id(&self) -> RequestId {
        self.slab.next_key()
    }

    pub(super) fn insert(&mut self, p: Pending) -> RequestId {
        self.slab.insert(p)
    }

    pub(super) fn get(&self, id: &RequestId) -> Option<&Pending> {
        self.slab.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &RequestId) -> Option<&mut Pending> {
        self.slab.get_mut(id)
    }

    pub(super) fn remove(&mut self, id: &RequestId) -> Option<Pending> {
        self.slab.remove(id)
    }

    /// Every pending request, in the order they were sent.
    pub(super) fn ids_in_order(&self) -> Vec<RequestId> {
        let mut all: Vec<(u64, RequestId)> =
            self.slab.keys().map(|k| (self.slab[&k].seq, k)).collect();
        all.sort_unstable();
        all.into_iter().map(|(_, id)| id).collect()
    }
}

impl Client {
    /// The [`Message`] of a request, for callers that bring their own MQTT client: publish it with
    /// QoS 1. (The correlation data and payload are cut from a shared block: few allocations.)
    pub fn to_message(&mut self, request: &Request) -> Message {
        let correlation_data = self.blocks.copy(&request.correlation_data);
        let (payload, ()) = self.blocks.write(request.command.encoded_len(), |out| {
            request.command.encode(out)
        });
        let parts = store::Request {
            command: request.command.clone(),
            timestamp: request.timestamp.clone(),
            fencing_token: request.fencing_token.clone(),
        };
        // The engine never makes a request with an empty key or a zero timeout, and its
        // correlation data is 16 bytes: nothing can fail.
        parts
            .to_message_with_payload(&self.sender, correlation_data, request.timeout, payload)
            .unwrap_or_default()
    }

    /// Queues a request and registers it as pending; it ends with its response, its timeout
    /// (the operation's deadline or the request timeout, whichever is first) or a disconnect.
    pub(super) fn send(
        &mut self,
        now: Now,
        owner: Owner,
        kind: RequestKind,
        command: Command,
        fencing_token: Option<FencingToken>,
        deadline: Option<Instant>,
    ) -> Result<RequestId, OpError> {
        let timestamp = self.clock.send(now.wall_ms).map_err(|e| {
            self.stats.clock_errors += 1;
            OpError::Clock(e)
        })?;
        let mut give_up_at = later(now.instant, self.config.request_timeout);
        if let Some(d) = deadline {
            give_up_at = give_up_at.min(d);
        }
        let timeout = give_up_at
            .saturating_duration_since(now.instant)
            .max(Duration::from_millis(1));
        let id = self.pending.next_id();
        // A VDEL may be applied until the broker lets its message expire (whole seconds, rounded
        // up): until then it counts as in flight, and the lock's release barrier stays up.
        let lost_at = match kind {
            RequestKind::VDel => later(
                now.instant,
                Duration::from_secs(u64::from(store::expiry_seconds(timeout))),
            ),
            _ => give_up_at,
        };
        // The operation's own deadline, at this very instant, fires first (it was scheduled
        // first) and ends the operation and its request: no second timer for the same instant.
        let covered = kind != RequestKind::VDel
            && matches!(owner, Owner::Op(op) if self.ops.get(&op).is_some_and(|op| {
                op.deadline_timer.is_some() && op.deadline == Some(lost_at)
            }));
        let timer = (!covered).then(|| self.timers.schedule(lost_at, Timer::Request(id)));
        self.next_seq += 1;
        self.pending.insert(Pending {
            seq: self.next_seq,
            owner,
            kind,
            sent: now.instant,
            timer,
        });
        self.stats.requests_sent += 1;
        let correlation_data = self.pending.correlation_data(id);
        self.out.push_back(Output::Request(Request {
            correlation_data,
            command,
            timestamp,
            fencing_token,
            timeout,
        }));
        Ok(id)
    }
}
