//! What the actor drives: the lock engine together with whatever carries its messages — the
//! driver's own [`Connection`], or a [`Bridge`] to the application's MQTT client.

use crate::transport::{Bridge, Transport};
use leasedlock::connection::{Connection, Event as ConnEvent};
use leasedlock::lock;
use leasedlock::Now;
use std::time::Instant;

/// The intents and polls the actor needs, the same over every carrier.
pub(crate) trait Engine {
    /// The lock engine, read-only.
    fn engine(&self) -> &lock::Client;
    /// Runs `intent` on the engine at `now` and moves what it output on.
    fn intent<R>(&mut self, now: Now, intent: impl FnOnce(&mut lock::Client) -> R) -> R;
    fn handle_timeout(&mut self, now: Now);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_event(&mut self) -> Option<ConnEvent>;
}

impl Engine for Connection {
    fn engine(&self) -> &lock::Client {
        Connection::engine(self)
    }
    fn intent<R>(&mut self, now: Now, intent: impl FnOnce(&mut lock::Client) -> R) -> R {
        Connection::intent(self, now, intent)
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
    fn intent<R>(&mut self, _now: Now, intent: impl FnOnce(&mut lock::Client) -> R) -> R {
        Bridge::intent(self, intent)
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
