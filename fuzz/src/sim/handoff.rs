//! The handoff bounds (message mode): L3, a waiter that has been told its lock is free does not
//! sleep through it; L5, a waiter that has not been told (its DELETE notification lost, or the
//! store forgot its registration) does not sleep through it either, beyond its fallback
//! re-check.
//!
//! The race it watches: a waiter's SET reaches the store while another client holds the lock and
//! is refused; the holder's DELETE follows, and its notification overtakes the refusal on the way
//! back. Once the refusal arrives, the waiter knows the lock was freed after its SET was sent, so
//! it must try again at once (within the retry jitter), not wait a lease for a re-check.

use leasedlock::bytes::Bytes;
use leasedlock::store::{self, Command, NotificationOp};
use leasedlock::Message;
use std::time::Duration;

use super::checks::OpKind;
use super::link::Mode;
use super::world::{ns, Check, World, LOCK_NAMES, NS_PER_MS};

/// A stretch in which a client has neither sent a SET of a lock nor had a reason to look at it
/// afresh (an operation started, a new connection, a restart, a wake from suspension) (L5).
#[derive(Clone, Copy, Debug)]
struct Quiet {
    /// When it began, ns.
    since: u64,
    /// The client's connection epoch then: a new connection ends it.
    epoch: u64,
    /// The client's suspended time then: a wake ends it.
    suspended_ns: u64,
}

impl Quiet {
    /// Whether `now` (a stretch that would begin now) still belongs to the same connection and
    /// the same time awake.
    fn goes_on_in(&self, now: Quiet) -> bool {
        (self.epoch, self.suspended_ns) == (now.epoch, now.suspended_ns)
    }
}

/// What one client's watch knows of its acquisitions of one lock.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watch {
    quiet: Option<Quiet>,
    /// When the client last sent a SET of the lock, and its correlation data.
    set_sent: Option<(u64, Bytes)>,
    /// When a DELETE notification of the lock arrived after that SET was sent.
    freed_after_set: Option<u64>,
    /// The refusal of that SET arrived after the DELETE: a new SET is due by then.
    due: Option<u64>,
}

/// The lock (index) a key names, if it is one of the locks.
fn lock_of(key: &[u8]) -> Option<usize> {
    LOCK_NAMES.iter().position(|n| n.as_bytes() == key)
}

impl World<'_> {
    /// Client `c` sends `msg`: a SET of a lock starts a new watch of that lock.
    pub(super) fn handoff_on_request(&mut self, c: usize, msg: &Message) {
        let Ok(Command::Set { key, .. }) = store::parse_request(msg).command else {
            return;
        };
        if let Some(li) = lock_of(&key) {
            let corr = msg.correlation_data.clone().unwrap_or_default();
            self.clients[c].handoff[li] = Watch {
                set_sent: Some((self.t_ns, corr)),
                quiet: Some(self.quiet_from(c)),
                ..Watch::default()
            };
        }
    }

    /// `msg` reaches client `c` (before it reads it): a DELETE of a lock after the SET, or the
    /// refusal of the SET after such a DELETE.
    pub(super) fn handoff_on_message(&mut self, c: usize, msg: &Message) {
        let now = self.t_ns;
        if let Ok(n) = store::parse_notification(msg) {
            if let (NotificationOp::Delete, Some(li)) = (&n.op, lock_of(&n.key)) {
                let watch = &mut self.clients[c].handoff[li];
                if watch.set_sent.as_ref().is_some_and(|(sent, _)| *sent < now) {
                    watch.freed_after_set.get_or_insert(now);
                }
            }
            return;
        }
        let bound = self.cfg.jitter_max_ns() + NS_PER_MS;
        let refused = msg.payload.starts_with(b":-1");
        for li in 0..LOCK_NAMES.len() {
            let waiting = self.waits_for(c, li);
            let watch = &mut self.clients[c].handoff[li];
            let answers = watch
                .set_sent
                .as_ref()
                .is_some_and(|(_, corr)| msg.correlation_data.as_ref() == Some(corr));
            if waiting && refused && answers && watch.freed_after_set.is_some() {
                watch.due = Some(now + bound);
            }
        }
    }

    /// Client `c` starts an operation on lock `li` (a release among them), or one ends: what
    /// the watch saw belongs to the operations before, and it starts afresh.
    pub(super) fn handoff_reset(&mut self, c: usize, li: usize) {
        self.clients[c].handoff[li] = Watch {
            quiet: Some(self.quiet_from(c)),
            ..Watch::default()
        };
    }

    /// Client `c`'s connection ended, its process restarted, or it cancelled an operation: its
    /// watches start afresh.
    pub(super) fn handoff_forget(&mut self, c: usize) {
        let quiet = Some(self.quiet_from(c));
        for watch in &mut self.clients[c].handoff {
            *watch = Watch {
                quiet,
                ..Watch::default()
            };
        }
    }

    /// A quiet stretch of client `c` beginning now.
    fn quiet_from(&self, c: usize) -> Quiet {
        let client = &self.clients[c];
        Quiet {
            since: self.t_ns,
            epoch: client.epoch,
            suspended_ns: client.suspended_ns,
        }
    }

    /// The store holds lock `li` or not (checked after every step): a free lock starts the
    /// count of L5 from its own freeing.
    pub(super) fn note_lock_at_store(&mut self, li: usize, free: bool) {
        match (free, self.lock_free_since[li]) {
            (true, None) => self.lock_free_since[li] = Some(self.t_ns),
            (false, Some(_)) => self.lock_free_since[li] = None,
            _ => {}
        }
    }

    /// How long a waiter may go without a SET while its lock is free: its fallback re-check
    /// comes a lease after a refusal (by a clock that may run slow by the drift bound), a SET
    /// whose reply is lost is given up after the request timeout, a VDEL of the same client
    /// (its own release, or the undo of a SET given up) keeps it back until the VDEL's message
    /// may have expired (the request timeout in whole seconds, rounded up), and the retry waits
    /// for the jitter; the messages' delays come on top.
    fn quiet_bound(&self) -> u64 {
        let lease = self.cfg.lease_ns();
        let drift = lease / 1_000_000 * 2 * u64::from(self.cfg.drift_ppm);
        let timeout = self.cfg.request_timeout;
        let vdel = Duration::from_secs(u64::from(store::expiry_seconds(timeout)));
        lease
            + drift
            + ns(timeout)
            + ns(vdel)
            + 2 * self.cfg.jitter_max_ns()
            + 2 * self.net.max_delay_ns
            + 50 * NS_PER_MS
    }

    /// When L5 is next due to be looked at (message mode): a bound running out is an instant of
    /// its own, or time could jump past it to the waiter's next timer.
    pub(super) fn quiet_due(&self) -> Option<u64> {
        if self.mode != Mode::Messages {
            return None;
        }
        let bound = self.quiet_bound();
        let mut due = None;
        for c in 0..self.clients.len() {
            for li in 0..self.cfg.n_locks {
                let (Some(free), Some(quiet)) =
                    (self.lock_free_since[li], self.clients[c].handoff[li].quiet)
                else {
                    continue;
                };
                let at = quiet.since.max(free) + bound + 1;
                if at > self.t_ns && self.waits_for(c, li) {
                    due = Some(due.map_or(at, |d: u64| d.min(at)));
                }
            }
        }
        due
    }

    /// L5: no waiter sleeps through a free lock longer than [`World::quiet_bound`], counted from
    /// the later of the lock's freeing and the waiter's last SET or fresh look.
    fn check_quiet_waiters(&mut self) -> Check {
        if self.mode != Mode::Messages {
            return Ok(());
        }
        let bound = self.quiet_bound();
        for c in 0..self.clients.len() {
            for (li, name) in LOCK_NAMES.iter().enumerate().take(self.cfg.n_locks) {
                let fresh = self.quiet_from(c);
                let watch = &mut self.clients[c].handoff[li];
                let quiet = match watch.quiet {
                    Some(q) if q.goes_on_in(fresh) => q.since,
                    _ => {
                        // A new connection or a wake: the engine looks at its locks afresh.
                        watch.quiet = Some(fresh);
                        continue;
                    }
                };
                let Some(free) = self.lock_free_since[li] else {
                    continue;
                };
                let since = quiet.max(free);
                if self.t_ns > since + bound && self.waits_for(c, li) {
                    return Err(format!(
                        "L5: {} waits for {}, free at the store since {:.3} ms, and has sent no \
                         SET of it since {:.3} ms",
                        self.clients[c].id,
                        name,
                        free as f64 / 1e6,
                        quiet as f64 / 1e6
                    ));
                }
            }
        }
        Ok(())
    }

    /// L3: no waiter that must try again is still waiting past its due time; L5.
    pub(super) fn check_handoff(&mut self) -> Check {
        self.check_quiet_waiters()?;
        for c in 0..self.clients.len() {
            for (li, name) in LOCK_NAMES.iter().enumerate() {
                let Some(due) = self.clients[c].handoff[li].due.filter(|d| *d < self.t_ns) else {
                    continue;
                };
                self.clients[c].handoff[li].due = None;
                if self.waits_for(c, li) {
                    return Err(format!(
                        "L3: {} was told {} was freed after its SET was sent, and has not tried \
                         again by {:.3} ms, when its refusal had arrived",
                        self.clients[c].id,
                        name,
                        due as f64 / 1e6
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether client `c` has an operation that waits for lock `li` (an acquire, a hold, or an
    /// edit, which acquires the lock first).
    fn waits_for(&self, c: usize, li: usize) -> bool {
        let client = &self.clients[c];
        let now = self.client_now(c);
        let waiting = client.ops.values().any(|t| {
            t.lock == li
                && !t.ended
                && matches!(t.kind, OpKind::Acquire | OpKind::Hold | OpKind::Edit)
        });
        waiting && client.connected && !client.link.engine().is_held(now, client.locks[li])
    }
}
