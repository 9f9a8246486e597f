//! Timers: the CONNACK deadline, PINGREQ after a keep-alive interval in which either direction
//! was quiet, the PINGRESP deadline.

use std::time::Instant;

use super::{DisconnectCause, Session, State};
use crate::mqtt::codec;

impl Session {
    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Connecting { deadline } => deadline,
            State::Connected => self.ping_deadline.or_else(|| self.next_ping()),
        }
    }

    /// Time has passed: fire due timers. Safe to call early, late or repeatedly.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Idle => {}
            State::Connecting { deadline } => {
                if deadline.is_some_and(|deadline| now >= deadline) {
                    self.end(DisconnectCause::ConnectTimeout, None);
                }
            }
            State::Connected => {
                if let Some(deadline) = self.ping_deadline {
                    if now >= deadline {
                        self.end(DisconnectCause::KeepAliveTimeout, None);
                    }
                } else if self.next_ping().is_some_and(|at| now >= at) {
                    codec::encode_pingreq(&mut self.tx);
                    self.last_sent = Some(now);
                    self.ping_deadline =
                        Some(now.checked_add(self.limits.keep_alive / 2).unwrap_or(now));
                }
            }
        }
    }

    fn next_ping(&self) -> Option<Instant> {
        if self.limits.keep_alive.is_zero() {
            return None;
        }
        // A PINGREQ once either direction has been quiet for the keep-alive: its PINGRESP is due
        // half an interval later, so a broker that sends nothing is noticed after 1.5 intervals.
        let quiet_since = match (self.last_sent, self.last_received) {
            (Some(sent), Some(received)) => Some(sent.min(received)),
            (sent, received) => sent.or(received),
        };
        quiet_since.and_then(|at| at.checked_add(self.limits.keep_alive))
    }
}
