//! L3, the handoff bound (message mode): a waiter that has been told its lock is free does not
//! sleep through it.
//!
//! The race it watches: a waiter's SET reaches the store while another client holds the lock and
//! is refused; the holder's DELETE follows, and its notification overtakes the refusal on the way
//! back. Once the refusal arrives, the waiter knows the lock was freed after its SET was sent, so
//! it must try again at once (within the retry jitter), not wait a lease for a re-check.

use leasedlock::bytes::Bytes;
use leasedlock::store::{self, Command, NotificationOp};
use leasedlock::Message;

use super::checks::OpKind;
use super::world::{Check, World, LOCK_NAMES, NS_PER_MS};

/// What one client's watch knows of its acquisitions of one lock.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watch {
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

    /// Client `c` starts an operation on lock `li` (a release among them): what the watch saw
    /// belongs to the operations before, and it starts afresh.
    pub(super) fn handoff_reset(&mut self, c: usize, li: usize) {
        self.clients[c].handoff[li] = Watch::default();
    }

    /// Client `c`'s connection ended, its process restarted, or it cancelled an operation: its
    /// watches start afresh.
    pub(super) fn handoff_forget(&mut self, c: usize) {
        for watch in &mut self.clients[c].handoff {
            *watch = Watch::default();
        }
    }

    /// L3: no waiter that must try again is still waiting past its due time.
    pub(super) fn check_handoff(&mut self) -> Check {
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

    /// Whether client `c` has an operation that waits for lock `li` (an acquire, or a hold).
    fn waits_for(&self, c: usize, li: usize) -> bool {
        let client = &self.clients[c];
        let now = self.client_now(c);
        let waiting = client
            .ops
            .values()
            .any(|t| t.lock == li && !t.ended && matches!(t.kind, OpKind::Acquire | OpKind::Hold));
        waiting && client.connected && !client.link.engine().is_held(now, client.locks[li])
    }
}
