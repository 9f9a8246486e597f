//! What the actor drives: the lock engine together with whatever carries its messages — the
//! driver's own [`Connection`], or a [`Bridge`] to the application's MQTT client.

use crate::transport::{Bridge, Transport};
use leasedlock::connection::{Connection, Event as ConnEvent};
use leasedlock::lock::{self, EditAction, Intent, IntentError, LockId, OpId, Options};
use leasedlock::Now;
use std::time::Instant;

/// The intents and polls the actor needs, the same over every carrier.
pub(crate) trait Engine {
    /// The lock engine, read-only.
    fn engine(&self) -> &lock::Client;
    fn lock_id(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError>;
    fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError>;
    fn complete_edit(&mut self, now: Now, op: OpId, action: EditAction) -> Result<(), IntentError>;
    fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError>;
    fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError>;
    fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError>;
    fn handle_timeout(&mut self, now: Now);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_event(&mut self) -> Option<ConnEvent>;
}

impl Engine for Connection {
    fn engine(&self) -> &lock::Client {
        Connection::engine(self)
    }
    fn lock_id(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError> {
        Connection::lock_id(self, name)
    }
    fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError> {
        Connection::start(self, now, lock, intent, options)
    }
    fn complete_edit(&mut self, now: Now, op: OpId, action: EditAction) -> Result<(), IntentError> {
        Connection::complete_edit(self, now, op, action)
    }
    fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        Connection::observe(self, now, lock)
    }
    fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        Connection::unobserve(self, now, lock)
    }
    fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
        Connection::cancel(self, now, op)
    }
    fn handle_timeout(&mut self, now: Now) {
        Connection::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Connection::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<ConnEvent> {
        Connection::poll_event(self)
    }
}

impl<T: Transport> Engine for Bridge<T> {
    fn engine(&self) -> &lock::Client {
        Bridge::engine(self)
    }
    fn lock_id(&mut self, name: impl AsRef<[u8]>) -> Result<LockId, IntentError> {
        self.intent(|c| c.lock_id(name))
    }
    fn start(
        &mut self,
        now: Now,
        lock: LockId,
        intent: Intent,
        options: Options,
    ) -> Result<OpId, IntentError> {
        self.intent(|c| c.start(now, lock, intent, options))
    }
    fn complete_edit(&mut self, now: Now, op: OpId, action: EditAction) -> Result<(), IntentError> {
        self.intent(|c| c.complete_edit(now, op, action))
    }
    fn observe(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        self.intent(|c| c.observe(now, lock))
    }
    fn unobserve(&mut self, now: Now, lock: LockId) -> Result<(), IntentError> {
        self.intent(|c| c.unobserve(now, lock))
    }
    fn cancel(&mut self, now: Now, op: OpId) -> Result<(), IntentError> {
        self.intent(|c| c.cancel(now, op))
    }
    fn handle_timeout(&mut self, now: Now) {
        Bridge::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.engine().poll_timeout()
    }
    fn poll_event(&mut self) -> Option<ConnEvent> {
        Bridge::poll_event(self)
    }
}
