//! The simulated world: clients with their own clocks, the store, the network, the run.
//!
//! What differs between the two modes lives elsewhere: the client's front in `link.rs`, the
//! network in `net.rs`, the broker in `broker.rs`, and how outputs are carried and delivered in
//! `carry.rs`. The invariants are in `checks.rs`, the trace in `trace.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use leasedlock::bytes::Bytes;
use leasedlock::emulator::{Emulator, EmulatorConfig};
use leasedlock::lock::{Config, EditAction, Intent, LockId, OpId, Options};
use leasedlock::Now;

use super::broker::Broker;
use super::checks::{Invariants, OpKind, Track, Write};
use super::handoff::Watch;
use super::input::{mode_of, Input, SplitMix64};
use super::link::{Link, Mode, MqttConfig};
use super::net::{Delivery, Net};
use super::trace::Trace;

/// Wall clock of the store at the start, in ms since the Unix epoch.
const WALL0: u64 = 1_800_000_000_000;
pub(super) const NS_PER_MS: u64 = 1_000_000;
pub(super) const LOCK_NAMES: [&str; 2] = ["lock-a", "lock-b"];
pub(super) const COUNTER_KEYS: [&str; 2] = ["counter-a", "counter-b"];
/// Bound on the deliveries and timer firings processed at one instant (a livelock guard).
const MAX_AT_ONE_INSTANT: usize = 10_000;

/// What a completed run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Which front the clients had.
    pub mode: Mode,
    /// Steps: actions, deliveries and timer firings.
    pub steps: u64,
    /// Hash of the whole trace (same input → same hash).
    pub trace_hash: u64,
    /// Number of clients.
    pub clients: usize,
    /// Edits reported written.
    pub edits_written: u64,
    /// Acquisitions announced to users (`Acquired`).
    pub acquisitions: u64,
    /// Simulated time, in ms.
    pub simulated_ms: u64,
    /// The last trace lines.
    pub trace: Vec<String>,
}

/// A violated invariant, with the last events of the trace.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which front the clients had.
    pub mode: Mode,
    /// Step at which it was found.
    pub step: u64,
    /// Which invariant, and how.
    pub message: String,
    /// The last trace lines.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed at step {} ({:?} mode): {}",
            self.step, self.mode, self.message
        )?;
        writeln!(f, "last {} trace lines:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

pub(super) struct SimClient {
    /// What the trace calls it.
    pub id: String,
    /// Its MQTT client id: its name, but for a twin, which has the id of client 0.
    pub client_id: String,
    pub link: Link,
    pub incarnation: u32,
    /// Message mode: connected. Byte mode: the transport is open (the session may still be
    /// connecting).
    pub connected: bool,
    /// Connection epoch: what was sent to an older connection is not delivered to the client.
    pub epoch: u64,
    /// Monotonic clock, ns since the start.
    pub local_ns: u64,
    /// Time the host spent suspended, ns: the monotonic clock stood still, the wall clock ran.
    pub suspended_ns: u64,
    /// The host is suspended: its clock stands, it runs no timers, what arrives for it waits.
    pub asleep: bool,
    /// Rate drift of the monotonic clock, ppm (|rate| ≤ the configured bound).
    pub rate_ppm: i64,
    pub skew_ms: i64,
    pub sessions: bool,
    pub locks: Vec<LockId>,
    pub ops: BTreeMap<OpId, Track>,
    /// L3's watch of each lock (message mode).
    pub handoff: Vec<Watch>,
    /// The broker refused a subscription on connection `.0`, in a SUBACK that ends at offset
    /// `.1` of what it wrote to the client (message mode: `u64::MAX` until the SUBACK arrives,
    /// then 0): once the client has read that far, L4 holds it to its refusal.
    pub refused: Option<(u64, u64)>,
    /// The first letter of its session ids (`t` for a twin: its holder values differ from its
    /// twin's).
    pub session_tag: char,
    /// A twin put away at the healing: it does not connect again.
    pub retired: bool,
    pub awaiting_edits: Vec<(OpId, Option<Bytes>)>,
}

pub(super) struct SimConfig {
    pub n_locks: usize,
    pub(super) drift_ppm: u32,
    lease: Duration,
    pub(super) request_timeout: Duration,
    jitter_max: Duration,
    mqtt: MqttConfig,
    /// The store forgets registrations (action 31) while connections go on.
    forgetful: bool,
    /// The store fills up and empties again (action 30): a full store refuses every SET with
    /// its quota error.
    fills_up: bool,
    /// Message mode: the clients' edits go without the edit fence
    /// ([`Config::raise_edit_fence`] off), and no fenced write is held (the fault the fence is
    /// for): the path of an edit that writes, waits for the answer and then releases, and
    /// repeats a write whose answer was lost.
    pub(super) unfenced: bool,
}

impl SimConfig {
    /// The largest retry jitter of the engines, in ns.
    pub(super) fn jitter_max_ns(&self) -> u64 {
        ns(self.jitter_max)
    }

    /// The lease of every lock operation, in ns.
    pub(super) fn lease_ns(&self) -> u64 {
        ns(self.lease)
    }
}

pub(crate) struct World<'a> {
    pub(super) input: Input<'a>,
    pub(super) cfg: SimConfig,
    pub(super) mode: Mode,
    pub(super) base: Instant,
    pub(super) t_ns: u64,
    pub(super) clients: Vec<SimClient>,
    pub(super) store: Emulator,
    pub(super) broker: Broker,
    pub(super) net: Net,
    /// What arrived for a suspended client, in order of arrival: it reads it when it wakes.
    waiting_for_wake: Vec<Delivery>,
    rng: SplitMix64,
    pub(super) healing: bool,
    pub(super) steps: u64,
    pub(super) trace: Trace,
    pub(super) inv: Invariants,
    /// Since when each lock has been free at the store, as last checked (L5).
    pub(super) lock_free_since: Vec<Option<u64>>,
    /// The store refuses every SET (see `World::fill_or_empty_store`).
    store_full: bool,
}

/// The process reads the clock once, as the driver: every later reading is made up.
#[allow(clippy::disallowed_methods)]
fn start_instant() -> Instant {
    Instant::now()
}

pub(super) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) type Check = Result<(), String>;

impl<'a> World<'a> {
    pub(crate) fn run(data: &'a [u8]) -> Result<Summary, Failure> {
        let mut w = World::new(data);
        match w.main() {
            Ok(()) => Ok(Summary {
                mode: w.mode,
                steps: w.steps,
                trace_hash: w.trace.hash,
                clients: w.clients.len(),
                edits_written: w.inv.sets.iter().map(|t| t.ok).sum(),
                acquisitions: w.inv.acquisitions,
                simulated_ms: w.t_ns / NS_PER_MS,
                trace: w.trace.lines(),
            }),
            Err(message) => {
                w.log(format!("VIOLATION {message}"));
                Err(Failure {
                    mode: w.mode,
                    step: w.steps,
                    message,
                    trace: w.trace.lines(),
                })
            }
        }
    }

    /// The configuration from the first bytes: `b0` clients (bits 0–1) and, in byte mode (bit
    /// 7), the Receive Maximum (bits 2–3) and the keep alive (bit 4); `b1` locks (bit 0), loss
    /// (bits 1–2), a store that fills up (bits 3–4 = 3), refusals or twins (bits 5–6); `b2` delays (bits 0–1), drift (bits 2–3) and a store that forgets
    /// registrations (bit 4), and in message mode edits without the fence (bits 5–7 = 7); `b3` lease, request timeout and
    /// jitter; two bytes of seed; two bytes per client.
    fn new(data: &'a [u8]) -> World<'a> {
        let mut input = Input::new(data);
        let b0 = input.byte_or_zero();
        let b1 = input.byte_or_zero();
        let b2 = input.byte_or_zero();
        let b3 = input.byte_or_zero();
        let seed = u64::from(input.byte_or_zero()) | (u64::from(input.byte_or_zero()) << 8);
        let mode = mode_of(data);
        let n_clients = 1 + usize::from(b0 % 4);
        let drift_ppm = [0, 1_000, 10_000, 50_000][usize::from((b2 >> 2) % 4)];
        let loss_mod = [0, 64, 24, 10][usize::from((b1 >> 1) % 4)];
        let max_delay_ns = [0, 5, 20, 50][usize::from(b2 % 4)] * NS_PER_MS;
        let receive_maximum = [None, Some(4), Some(2), Some(1)][usize::from((b0 >> 2) % 4)];
        let lease = Duration::from_millis([600, 1_500, 4_000][usize::from(b3 % 3)]);
        let cfg = SimConfig {
            n_locks: 1 + usize::from(b1 % 2),
            drift_ppm,
            lease,
            request_timeout: Duration::from_millis(
                [500, 2_000, 10_000][usize::from((b3 >> 2) % 3)],
            ),
            jitter_max: Duration::from_millis([0, 50][usize::from((b3 >> 4) % 2)]),
            mqtt: MqttConfig {
                keep_alive: Duration::from_secs([60, 3][usize::from((b0 >> 4) % 2)]),
            },
            forgetful: (b2 >> 4) & 1 == 1,
            fills_up: (b1 >> 3) & 3 == 3,
            unfenced: mode == Mode::Messages && b2 >> 5 == 7,
        };
        let base = start_instant();
        let store_now = Now::new(base, WALL0);
        let store = Emulator::new(
            EmulatorConfig {
                record_requests: true,
                ..EmulatorConfig::default()
            },
            store_now,
        );
        // Bits 5–6 of `b1` = 2 (with two clients or more): client 1 is a twin of client 0, a
        // second engine with the same client id; both tell their holder values apart by session
        // ids.
        let twins = n_clients >= 2 && (b1 >> 5) & 3 == 2;
        let ids: Vec<String> = (0..n_clients)
            .map(|i| format!("client{}", if twins && i == 1 { 0 } else { i }))
            .collect();
        // What the trace calls each client.
        let names = (0..n_clients).map(|i| format!("client{i}"));
        // Byte mode draws its variations from generators of its own: message mode's draws stay
        // as they were.
        // Bits 5–6 of `b1` = 1: the broker refuses one subscription in four.
        let refusals = ((b1 >> 5) & 3 == 1).then_some(seed ^ 0x5bac_0f5e_5eed_0003);
        let broker = Broker::new(
            ids.clone(),
            receive_maximum,
            seed ^ 0xb40c_e12d_5eed_0001,
            refusals,
        );
        let mut w = World {
            input,
            cfg,
            mode,
            base,
            t_ns: 0,
            clients: Vec::new(),
            store,
            broker,
            net: Net::new(
                loss_mod,
                max_delay_ns,
                2 * ns(lease),
                seed ^ 0x7c9f_0a11_5eed_0002,
            ),
            waiting_for_wake: Vec::new(),
            rng: SplitMix64::new(seed),
            healing: false,
            steps: 0,
            trace: Trace::new(),
            inv: Invariants::new(),
            lock_free_since: vec![None; LOCK_NAMES.len()],
            store_full: false,
        };
        for (i, (client_id, id)) in ids.into_iter().zip(names).enumerate() {
            let b = w.input.byte_or_zero();
            let skew_ms = [0, 30, -30, 1_500, -1_500, 20_000, -20_000, 3][usize::from(b % 8)];
            let ppm = i64::from(drift_ppm);
            let rate_ppm = i64::from(b >> 3) * 2 * ppm / 31 - ppm;
            let sessions = w.input.byte_or_zero().is_multiple_of(3) || twins && i <= 1;
            let session_tag = if twins && i == 1 { 't' } else { 's' };
            let (link, locks) = w.new_link(&client_id, client_now_of(base, 0, 0, skew_ms));
            w.log(format!(
                "config {id}: skew {skew_ms} ms, rate {rate_ppm:+} ppm, sessions {sessions}"
            ));
            w.clients.push(SimClient {
                id,
                client_id,
                link,
                incarnation: 0,
                connected: false,
                epoch: 0,
                local_ns: 0,
                suspended_ns: 0,
                asleep: false,
                rate_ppm,
                skew_ms,
                sessions,
                locks,
                ops: BTreeMap::new(),
                handoff: vec![Watch::default(); LOCK_NAMES.len()],
                refused: None,
                session_tag,
                retired: false,
                awaiting_edits: Vec::new(),
            });
        }
        w.log(format!(
            "config: {} clients, {} locks, lease {:?}, request timeout {:?}, max delay {} ms, loss 1/{}, drift bound {} ppm",
            n_clients,
            w.cfg.n_locks,
            w.cfg.lease,
            w.cfg.request_timeout,
            w.net.max_delay_ns / NS_PER_MS,
            w.net.loss_mod,
            w.cfg.drift_ppm
        ));
        if refusals.is_some() {
            w.log("config: the broker refuses one subscription in four".into());
        }
        if twins {
            w.log("config: client 1 is a twin of client 0 (one client id)".into());
        }
        if mode == Mode::Bytes {
            w.log(format!(
                "config: byte mode, Receive Maximum {}, keep alive {:?}",
                receive_maximum.unwrap_or(u16::MAX),
                w.cfg.mqtt.keep_alive
            ));
        }
        w
    }

    /// A fresh engine (at start and after a crash) with a seed from the world's rng, behind the
    /// run's front, and its lock ids.
    fn new_link(&mut self, id: &str, now: Now) -> (Link, Vec<LockId>) {
        let mut config = Config::new(id);
        config.request_timeout = self.cfg.request_timeout;
        config.clock_rate_drift_ppm = self.cfg.drift_ppm;
        config.retry_jitter_max = self.cfg.jitter_max;
        config.raise_edit_fence &= !self.cfg.unfenced;
        let seed = self.rng.next_u64();
        let mut link = Link::new(self.mode, config, &self.cfg.mqtt, now, seed);
        let locks = LOCK_NAMES[..self.cfg.n_locks]
            .iter()
            .map(|n| link.lock_id(n))
            .collect();
        (link, locks)
    }

    // ----- the run ------------------------------------------------------------------------------

    fn main(&mut self) -> Check {
        for i in 0..self.clients.len() {
            self.connect(i)?;
        }
        while !self.input.is_empty() {
            self.action()?;
        }
        self.heal()
    }

    fn action(&mut self) -> Check {
        let Some(a) = self.input.byte() else {
            return Ok(());
        };
        let n = self.clients.len();
        match a % 32 {
            10 | 11 => {
                let ms = u64::from(self.input.byte().unwrap_or(0)) * 20;
                self.log(format!("sleep {ms} ms"));
                self.advance_until(self.t_ns + ms * NS_PER_MS)
            }
            12..=21 => {
                let c = self.input.choose(n).unwrap_or(0);
                let what = self.input.byte().unwrap_or(0);
                self.intent(c, what)
            }
            22 | 23 => self.complete_some_edit(),
            24 => {
                let c = self.input.choose(n).unwrap_or(0);
                self.disconnect(c)
            }
            25 | 26 => {
                let c = self.input.choose(n).unwrap_or(0);
                self.connect(c)
            }
            27 => {
                let c = self.input.choose(n).unwrap_or(0);
                self.crash(c)
            }
            28 => {
                let c = self.input.choose(n).unwrap_or(0);
                let b = self.input.byte().unwrap_or(0);
                let ppm = i64::from(self.cfg.drift_ppm);
                let rate = i64::from(b) * 2 * ppm / 255 - ppm;
                self.clients[c].rate_ppm = rate;
                self.log(format!("{} clock rate {rate:+} ppm", self.clients[c].id));
                Ok(())
            }
            29 => {
                let c = self.input.choose(n).unwrap_or(0);
                let b = self.input.byte().unwrap_or(0);
                self.suspend(c, b)
            }
            30 if self.cfg.fills_up => self.fill_or_empty_store(),
            31 if self.cfg.forgetful => {
                let c = self.input.choose(n).unwrap_or(0);
                self.forget_registrations(c)
            }
            _ => self.advance(),
        }
    }

    /// When the input ends: no more faults, everyone reconnects, holds close, edits complete;
    /// run to quiescence; then L1 and L2.
    fn heal(&mut self) -> Check {
        self.healing = true;
        self.log("heal: faults stop".into());
        self.broker.stop_refusing();
        if self.store_full {
            self.fill_or_empty_store()?;
        }
        // Twins cannot both stay connected (each connection takes the other's over): the twin
        // stops, as its process would, and stays away.
        if self.broker.has_twin(1) {
            self.crash(1)?;
            self.clients[1].retired = true;
        }
        for i in 0..self.clients.len() {
            // A connection with a refused subscription stays of no use: the client reconnects.
            let client = &self.clients[i];
            if client.connected && client.refused.is_some_and(|(e, _)| e == client.epoch) {
                self.disconnect(i)?;
            }
        }
        for i in 0..self.clients.len() {
            if !self.clients[i].connected {
                self.connect(i)?;
            }
        }
        for i in 0..self.clients.len() {
            let holds: Vec<usize> = self.clients[i]
                .ops
                .values()
                .filter(|t| matches!(t.kind, OpKind::Hold | OpKind::Keep) && !t.ended)
                .map(|t| t.lock)
                .collect();
            for lock in holds {
                self.intent_close_hold(i, lock)?;
            }
            while !self.clients[i].awaiting_edits.is_empty() {
                self.complete_edit(i, 0)?;
            }
        }
        // L1: every operation ends.
        let limit = self.t_ns + ns(Duration::from_secs(600));
        while self.open_ops() > 0 && self.t_ns < limit {
            if !self.advance_checked()? {
                break;
            }
        }
        if let Some((c, op, t)) = self.first_open_op() {
            return Err(format!(
                "L1: operation {op:?} ({:?} on {}) of {} did not end after healing",
                t.kind, LOCK_NAMES[t.lock], self.clients[c].id
            ));
        }
        // L2: with the lock free (released or expired), a fresh acquire succeeds.
        let c = 0;
        let lock = self.clients[c].locks[0];
        let now = self.client_now(c);
        if self.clients[c].link.engine().is_held(now, lock) {
            self.intent_release(c, 0)?;
        }
        let now = self.client_now(c);
        let options = self.options(c);
        let op = self.clients[c]
            .link
            .intents()
            .start(
                now,
                lock,
                Intent::Acquire {
                    lease: self.cfg.lease,
                },
                options,
            )
            .map_err(|e| format!("L2: acquire refused: {e}"))?;
        self.track(c, op, OpKind::Acquire, 0);
        self.log(format!(
            "L2: {} acquire lock-a as {op:?}",
            self.clients[c].id
        ));
        self.drain(c)?;
        let bound = self.cfg.lease * 4 + self.cfg.request_timeout * 4 + Duration::from_secs(30);
        let limit = self.t_ns + ns(bound);
        while self.clients[c].ops.get(&op).is_some_and(|t| !t.ended) && self.t_ns < limit {
            if !self.advance_checked()? {
                break;
            }
        }
        let now = self.client_now(c);
        if !self.clients[c].link.engine().is_held(now, lock) {
            return Err(format!(
                "L2: a fresh acquire by {} did not get the free lock within {bound:?}",
                self.clients[c].id,
            ));
        }
        Ok(())
    }

    fn open_ops(&self) -> usize {
        self.clients
            .iter()
            .map(|c| c.ops.values().filter(|t| !t.ended).count())
            .sum()
    }

    fn first_open_op(&self) -> Option<(usize, OpId, &Track)> {
        self.clients.iter().enumerate().find_map(|(i, c)| {
            c.ops
                .iter()
                .find(|(_, t)| !t.ended)
                .map(|(op, t)| (i, *op, t))
        })
    }

    fn advance_checked(&mut self) -> Result<bool, String> {
        match self.next_deadline() {
            Some(t) => {
                self.process_at(t)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    // ----- intents ------------------------------------------------------------------------------

    fn options(&mut self, c: usize) -> Options {
        let client = &self.clients[c];
        if client.sessions {
            Options::default()
                .with_session_id(format!("{}{}", client.session_tag, client.incarnation))
        } else {
            Options::default()
        }
    }

    fn track(&mut self, c: usize, op: OpId, kind: OpKind, lock: usize) {
        self.clients[c].ops.insert(
            op,
            Track {
                kind,
                lock,
                ended: false,
                writing: None,
                lost: false,
            },
        );
    }

    fn intent(&mut self, c: usize, what: u8) -> Check {
        let li = usize::from(what >> 4) % self.cfg.n_locks;
        let lock = self.clients[c].locks[li];
        let now = self.client_now(c);
        let lease = self.cfg.lease;
        let mut options = self.options(c);
        if what & 0x08 != 0 {
            options = options.with_timeout(Duration::from_millis(if what & 0x04 != 0 {
                300
            } else {
                3_000
            }));
        }
        let id = self.clients[c].id.clone();
        let e = self.clients[c].link.intents();
        let (name, result, kind) = match what % 12 {
            0 => (
                "try_acquire",
                e.start(now, lock, Intent::TryAcquire { lease }, options),
                OpKind::TryAcquire,
            ),
            1 | 2 => (
                "acquire",
                e.start(now, lock, Intent::Acquire { lease }, options),
                OpKind::Acquire,
            ),
            3 if what & 0x40 == 0 => (
                "hold",
                e.start(
                    now,
                    lock,
                    Intent::Hold {
                        lease,
                        interval: lease / 3,
                    },
                    options,
                ),
                OpKind::Hold,
            ),
            3 => (
                "keep",
                e.start(
                    now,
                    lock,
                    Intent::Keep {
                        lease,
                        interval: lease / 3,
                        wait: what & 0x80 != 0,
                    },
                    options,
                ),
                OpKind::Keep,
            ),
            4 => return self.intent_close_hold(c, li),
            5 => return self.intent_release(c, li),
            6 => (
                "holder",
                e.start(now, lock, Intent::Holder, options),
                OpKind::Holder,
            ),
            7..=9 => (
                "edit",
                e.start(
                    now,
                    lock,
                    Intent::Edit {
                        key: Bytes::from_static(COUNTER_KEYS[li].as_bytes()),
                        lease,
                    },
                    options,
                ),
                OpKind::Edit,
            ),
            10 => {
                let r = e.observe(now, lock).or_else(|_| e.unobserve(now, lock));
                self.log(format!("{id} observe/unobserve {}: {r:?}", LOCK_NAMES[li]));
                return self.drain(c);
            }
            _ => {
                let open: Vec<OpId> = self.clients[c]
                    .ops
                    .iter()
                    .filter(|(_, t)| !t.ended)
                    .map(|(op, _)| *op)
                    .collect();
                let Some(&op) = open.get(usize::from(what >> 4) % open.len().max(1)) else {
                    return Ok(());
                };
                let r = self.clients[c].link.intents().cancel(now, op);
                self.handoff_forget(c);
                self.log(format!("{id} cancel {op:?}: {r:?}"));
                return self.drain(c);
            }
        };
        match result {
            Ok(op) => {
                self.log(format!("{id} {name} {} → {op:?}", LOCK_NAMES[li]));
                self.handoff_reset(c, li);
                self.track(c, op, kind, li);
            }
            Err(e) => self.log(format!("{id} {name} {} refused: {e}", LOCK_NAMES[li])),
        }
        self.drain(c)
    }

    fn intent_close_hold(&mut self, c: usize, li: usize) -> Check {
        let now = self.client_now(c);
        let lock = self.clients[c].locks[li];
        let close = Intent::CloseHold;
        match self.clients[c]
            .link
            .intents()
            .start(now, lock, close, Options::default())
        {
            Ok(op) => {
                self.log(format!(
                    "{} close_hold {} → {op:?}",
                    self.clients[c].id, LOCK_NAMES[li]
                ));
                self.track(c, op, OpKind::Release, li);
                self.handoff_reset(c, li);
            }
            Err(e) => self.log(format!(
                "{} close_hold {} refused: {e}",
                self.clients[c].id, LOCK_NAMES[li]
            )),
        }
        self.drain(c)
    }

    fn intent_release(&mut self, c: usize, li: usize) -> Check {
        let now = self.client_now(c);
        let lock = self.clients[c].locks[li];
        let options = self.options(c);
        match self.clients[c]
            .link
            .intents()
            .start(now, lock, Intent::Release, options)
        {
            Ok(op) => {
                self.log(format!(
                    "{} release {} → {op:?}",
                    self.clients[c].id, LOCK_NAMES[li]
                ));
                self.track(c, op, OpKind::Release, li);
                self.handoff_reset(c, li);
            }
            Err(e) => self.log(format!(
                "{} release {} refused: {e}",
                self.clients[c].id, LOCK_NAMES[li]
            )),
        }
        self.drain(c)
    }

    fn complete_some_edit(&mut self) -> Check {
        let waiting: Vec<usize> = (0..self.clients.len())
            .filter(|&i| !self.clients[i].awaiting_edits.is_empty())
            .collect();
        if waiting.is_empty() {
            return self.advance();
        }
        let pick = self.input.byte().map_or(0, usize::from);
        let c = waiting[pick % waiting.len()];
        let k = (pick / 4) % self.clients[c].awaiting_edits.len();
        let action = self.input.byte().unwrap_or(0);
        match action % 16 {
            0 => self.delete_edit(c, k, EditAction::Delete),
            1 => self.delete_edit(c, k, EditAction::Abort),
            _ => self.complete_edit(c, k),
        }
    }

    /// Completes the `k`-th waiting edit of client `c` with `Delete`, or `Abort` (which deletes
    /// the placeholder of an edit that read the key absent).
    fn delete_edit(&mut self, c: usize, k: usize, action: EditAction) -> Check {
        let (op, current) = self.clients[c].awaiting_edits.remove(k);
        let write = (action == EditAction::Delete || current.is_none()).then_some(Write::Delete);
        self.answer_edit(c, op, action, write)
    }

    /// Completes the `k`-th waiting edit of client `c` with `Set(n + 1)`.
    pub(super) fn complete_edit(&mut self, c: usize, k: usize) -> Check {
        let (op, current) = self.clients[c].awaiting_edits.remove(k);
        let n = match &current {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("S4: the counter holds {v:?}, not a number"))?,
        };
        let value = Bytes::from((n + 1).to_string());
        self.answer_edit(c, op, EditAction::Set(value), Some(Write::Set))
    }

    /// Gives the user's `action` to edit `op` of client `c`, which may then be writing `write`.
    fn answer_edit(
        &mut self,
        c: usize,
        op: OpId,
        action: EditAction,
        write: Option<Write>,
    ) -> Check {
        let now = self.client_now(c);
        let line = format!("{} complete_edit {op:?} {action:?}", self.clients[c].id);
        let r = self.clients[c]
            .link
            .intents()
            .complete_edit(now, op, action);
        self.log(format!("{line}: {r:?}"));
        if r.is_ok() {
            if let Some(t) = self.clients[c].ops.get_mut(&op) {
                t.writing = write;
            }
        }
        self.drain(c)
    }

    // ----- faults -------------------------------------------------------------------------------

    /// The client process dies and restarts: a new engine with a new seed; its old leases and
    /// operations are gone. Writes it may have had on the wire count as indeterminate.
    fn crash(&mut self, c: usize) -> Check {
        for t in self.clients[c].ops.values().filter(|t| !t.ended) {
            if let Some(write) = t.writing {
                self.inv.tally(t.lock, write).indeterminate += 1;
            }
        }
        self.process_gone(c);
        self.handoff_forget(c);
        self.clients[c].incarnation += 1;
        let now = self.client_now(c);
        let id = self.clients[c].id.clone();
        let client_id = self.clients[c].client_id.clone();
        let (link, locks) = self.new_link(&client_id, now);
        let client = &mut self.clients[c];
        client.link = link;
        client.locks = locks;
        client.ops.clear();
        client.awaiting_edits.clear();
        self.log(format!("{id} crashed and restarted (disconnected)"));
        self.route_store_output(None)
    }

    /// The host of `c` is suspended for a while, from a quarter of a lease to over three: its
    /// monotonic clock stands still while its wall clock runs on (as `CLOCK_MONOTONIC` does on
    /// a suspended machine or VM). The rest of the world goes on meanwhile; the client runs no
    /// timer and reads nothing until it wakes, then reads what arrived, in order.
    fn suspend(&mut self, c: usize, b: u8) -> Check {
        let lease = self.cfg.lease_ns();
        let base = [lease / 4, lease, 3 * lease][usize::from(b % 3)];
        let pause = base + u64::from(b / 3) * (lease / 128);
        self.log(format!(
            "{} host suspended for {} ms",
            self.clients[c].id,
            pause / NS_PER_MS
        ));
        self.clients[c].asleep = true;
        self.broker.excuse_silence(c, self.t_ns, self.t_ns + pause);
        let woke = self.advance_until(self.t_ns + pause);
        self.clients[c].asleep = false;
        woke?;
        self.log(format!("{} host wakes", self.clients[c].id));
        for delivery in std::mem::take(&mut self.waiting_for_wake) {
            self.deliver(delivery)?;
        }
        self.check()
    }

    /// The store fills up (other tenants' keys take its whole quota: every SET is refused with
    /// `-ERR the quota has been exceeded`), or has room again. Reads and deletes go on.
    fn fill_or_empty_store(&mut self) -> Check {
        self.store_full = !self.store_full;
        let max_bytes = self.store_full.then_some(0);
        self.store.set_quota(None, max_bytes);
        let what = if self.store_full {
            "is full"
        } else {
            "has room again"
        };
        self.log(format!("store {what}"));
        self.check()
    }

    /// The store forgets the KEYNOTIFY registrations of `c`'s client id (it restarted or failed
    /// over without them) while the connection goes on: nobody tells the client, whose waiters
    /// must still get their lock through their fallback re-checks (L5).
    fn forget_registrations(&mut self, c: usize) -> Check {
        let client_id = self.clients[c].client_id.clone();
        self.store.forget_registrations(&client_id);
        self.log(format!("store forgets the registrations of {client_id}"));
        self.check()
    }

    // ----- time ---------------------------------------------------------------------------------

    pub(super) fn client_now(&self, c: usize) -> Now {
        let client = &self.clients[c];
        client_now_of(
            self.base,
            client.local_ns,
            client.suspended_ns,
            client.skew_ms,
        )
    }

    pub(super) fn store_now(&self) -> Now {
        Now::new(
            self.base + Duration::from_nanos(self.t_ns),
            WALL0 + self.t_ns / NS_PER_MS,
        )
    }

    /// Moves real time to `t` (never back); every client's clock advances at its own rate.
    fn set_time(&mut self, t: u64) {
        if t <= self.t_ns {
            return;
        }
        let dt = t - self.t_ns;
        self.t_ns = t;
        for c in &mut self.clients {
            let extra = i128::from(dt) * i128::from(c.rate_ppm) / 1_000_000;
            let elapsed = u64::try_from(i128::from(dt) + extra).unwrap_or(0);
            if c.asleep {
                c.suspended_ns += elapsed;
            } else {
                c.local_ns += elapsed;
            }
        }
    }

    /// Real time at which client `c` reaches its local instant `at`.
    fn real_time_of(&self, c: usize, at: Instant) -> u64 {
        let client = &self.clients[c];
        let target = ns(at.saturating_duration_since(self.base));
        if target <= client.local_ns {
            return self.t_ns;
        }
        let dl = u128::from(target - client.local_ns);
        let rate = u128::try_from(1_000_000 + client.rate_ppm).unwrap_or(1);
        let real = (dl * 1_000_000).div_ceil(rate);
        self.t_ns + u64::try_from(real).unwrap_or(u64::MAX / 2)
    }

    /// The next deadline: a delivery, a key expiry, a client timer (`engines_only`: a timer of
    /// an engine, not one of an MQTT session such as its keep-alive).
    fn next_deadline_of(&self, engines_only: bool) -> Option<u64> {
        let net = self.net.next_due();
        let store = self
            .store
            .poll_timeout()
            .map(|at| ns(at.saturating_duration_since(self.base)).max(self.t_ns));
        let clients = (0..self.clients.len()).filter_map(|c| {
            if self.clients[c].asleep {
                return None;
            }
            let link = &self.clients[c].link;
            let at = if engines_only {
                link.engine().poll_timeout()
            } else {
                link.poll_timeout()
            };
            at.map(|at| self.real_time_of(c, at))
        });
        net.into_iter()
            .chain(store)
            .chain(clients)
            .chain(self.quiet_due())
            .min()
    }

    fn next_deadline(&self) -> Option<u64> {
        self.next_deadline_of(false)
    }

    /// Time jumps to the next thing that happens in the world. An idle MQTT session always has a
    /// keep-alive deadline: the jump does not stop there (but the pings on the way go out on time).
    fn advance(&mut self) -> Check {
        match self.next_deadline_of(true) {
            Some(t) => self.advance_until(t),
            None => Ok(()),
        }
    }

    fn advance_until(&mut self, target: u64) -> Check {
        while let Some(t) = self.next_deadline().filter(|t| *t <= target) {
            self.process_at(t)?;
        }
        self.set_time(target);
        self.check()
    }

    /// Moves time to `t` and handles everything due then: deliveries, expiries, client timers.
    fn process_at(&mut self, t: u64) -> Check {
        self.set_time(t);
        for _ in 0..MAX_AT_ONE_INSTANT {
            if let Some(delivery) = self.net.pop_due(self.t_ns) {
                if self.clients[delivery.client].asleep && delivery.what.is_for_client() {
                    self.waiting_for_wake.push(delivery);
                } else {
                    self.deliver(delivery)?;
                }
                continue;
            }
            if self
                .store
                .poll_timeout()
                .is_some_and(|at| at <= self.store_now().instant)
            {
                self.steps += 1;
                self.store.handle_timeout(self.store_now());
                self.route_store_output(None)?;
                self.check()?;
                continue;
            }
            let due = (0..self.clients.len()).find(|&c| {
                if self.clients[c].asleep {
                    return false;
                }
                let now = self.client_now(c);
                self.clients[c]
                    .link
                    .poll_timeout()
                    .is_some_and(|at| at <= now.instant)
            });
            let Some(c) = due else {
                // Nothing else due: a bound of L5 may be.
                return self.check_handoff();
            };
            self.steps += 1;
            let now = self.client_now(c);
            self.clients[c].link.handle_timeout(now);
            self.drain(c)?;
        }
        Err(format!(
            "livelock: more than {MAX_AT_ONE_INSTANT} deliveries and timers at one instant"
        ))
    }
}

/// What a client with this clock reads: its monotonic clock and its skewed wall clock, which
/// also counts the time the host was suspended.
fn client_now_of(base: Instant, local_ns: u64, suspended_ns: u64, skew_ms: i64) -> Now {
    let awake_and_asleep = i128::from((local_ns + suspended_ns) / NS_PER_MS);
    let wall = i128::from(WALL0) + i128::from(skew_ms) + awake_and_asleep;
    Now::new(
        base + Duration::from_nanos(local_ns),
        u64::try_from(wall).unwrap_or(0),
    )
}
