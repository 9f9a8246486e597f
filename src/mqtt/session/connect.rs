//! Connecting: CONNECT, CONNACK, and enhanced authentication (AUTH) at connection time and after.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::publish::{Inflight, Waiting};
use super::{AuthError, DisconnectCause, Event, ServerLimits, Session, State};
use crate::mqtt::codec::{self, Auth, ConnAck, ConnectFields, EncodeError};
use crate::mqtt::reason::DisconnectReason;

#[cfg(doc)]
use super::Options;

/// The enhanced authentication exchange on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthExchange {
    /// Nothing under way.
    Idle,
    /// We sent AUTH (0x19, or 0x18 answering a challenge); the server has not decided yet.
    AwaitingServer,
    /// The server sent AUTH 0x18; we have not answered yet.
    Challenged,
}

/// AUTH reason codes.
const SUCCESS: u8 = 0x00;
const CONTINUE_AUTHENTICATION: u8 = 0x18;
const REAUTHENTICATE: u8 = 0x19;

/// A keep-alive interval in whole seconds that fits the 16-bit CONNECT field.
pub(super) fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().min(u64::from(u16::MAX)))
}

impl Session {
    /// The transport is up: queue a CONNECT. The first connection uses [`Options::clean_start`],
    /// later ones resume the session. Calling it while connected starts over on a new transport.
    pub fn connect(&mut self, now: Instant) {
        self.tx.clear();
        self.forget_connection();
        let keep_alive = whole_secs(self.options.keep_alive);
        self.limits.keep_alive = keep_alive;
        self.clean_start_sent = self.options.clean_start && !self.connected_before;
        let fields = ConnectFields {
            client_id: &self.client_id,
            clean_start: self.clean_start_sent,
            keep_alive_secs: keep_alive.as_secs() as u16,
            session_expiry: self.options.session_expiry,
            username: self.options.username.as_deref(),
            password: self.options.password.as_deref(),
            authentication_method: self.options.authentication_method.as_deref(),
            authentication_data: self.options.authentication_data.as_deref(),
            maximum_packet_size: self.max_inbound(),
        };
        match codec::encode_connect(&mut self.tx, &fields) {
            Ok(()) => {
                self.state = State::Connecting {
                    deadline: now.checked_add(self.options.connect_timeout),
                };
                self.last_sent = Some(now);
            }
            Err(e) => {
                self.state = State::Idle;
                let field = match e {
                    EncodeError::FieldTooLong(field) => field,
                    EncodeError::PacketTooLong => "CONNECT",
                };
                self.push_event(Event::Disconnected(DisconnectCause::InvalidOptions(field)));
            }
        }
    }

    /// New Authentication Data (a rotated token, say): kept for every later CONNECT and, while
    /// connected, sent at once in AUTH 0x19 (re-authenticate) with [`Options::authentication_method`].
    /// Returns whether AUTH went out; the server answers [`Event::Reauthenticated`], an
    /// [`Event::AuthenticationChallenge`], or DISCONNECT. While not connected the data waits for
    /// the next CONNECT; while connecting (CONNECT sent with older data) AUTH 0x19 goes out right
    /// after the CONNACK.
    pub fn reauthenticate(&mut self, now: Instant, data: Bytes) -> Result<bool, AuthError> {
        if self.options.authentication_method.is_none() {
            return Err(AuthError::NoMethod);
        }
        if data.len() > usize::from(u16::MAX) {
            return Err(AuthError::FieldTooLong("authentication data"));
        }
        match self.state {
            State::Idle => {}
            State::Connecting { .. } => self.reauthenticate_after_connack = true,
            State::Connected if self.auth != AuthExchange::Idle => {
                return Err(AuthError::InProgress)
            }
            State::Connected => {
                self.options.authentication_data = Some(data);
                self.send_reauthenticate(now);
                return Ok(true);
            }
        }
        self.options.authentication_data = Some(data);
        Ok(false)
    }

    /// Sends AUTH 0x19 with the method and the current authentication data.
    fn send_reauthenticate(&mut self, now: Instant) {
        if let Some(method) = self.options.authentication_method.as_deref() {
            // Lengths were checked when the data was given: this cannot fail.
            let _ = codec::encode_auth(
                &mut self.tx,
                REAUTHENTICATE,
                method,
                self.options.authentication_data.as_deref(),
            );
            self.last_sent = Some(now);
            self.auth = AuthExchange::AwaitingServer;
        }
    }

    /// Answers the server's [`Event::AuthenticationChallenge`] with AUTH 0x18 (continue
    /// authentication) carrying `data`.
    pub fn continue_authentication(&mut self, now: Instant, data: Bytes) -> Result<(), AuthError> {
        let Some(method) = self.options.authentication_method.as_deref() else {
            return Err(AuthError::NoMethod);
        };
        if self.auth != AuthExchange::Challenged || self.state == State::Idle {
            return Err(AuthError::NoChallenge);
        }
        codec::encode_auth(&mut self.tx, CONTINUE_AUTHENTICATION, method, Some(&data))
            .map_err(|_| AuthError::FieldTooLong("authentication data"))?;
        self.last_sent = Some(now);
        self.auth = AuthExchange::AwaitingServer;
        Ok(())
    }

    /// A server AUTH: a challenge (0x18) while connecting with a method or while
    /// re-authenticating, or success (0x00) ending a re-authentication. Anything else, or another
    /// method than ours, breaks the protocol.
    pub(super) fn handle_auth(&mut self, auth: Auth) {
        let Some(method) = self.options.authentication_method.as_deref() else {
            return self.violation(
                "AUTH without enhanced authentication",
                DisconnectReason::ProtocolError,
            );
        };
        if auth.method.as_deref() != Some(method) {
            return self.violation(
                "AUTH with another authentication method",
                DisconnectReason::ProtocolError,
            );
        }
        let connecting = matches!(self.state, State::Connecting { .. });
        match (auth.reason, self.auth) {
            (CONTINUE_AUTHENTICATION, AuthExchange::Idle) if connecting => {}
            (CONTINUE_AUTHENTICATION, AuthExchange::AwaitingServer) => {}
            (SUCCESS, AuthExchange::AwaitingServer) if !connecting => {
                self.auth = AuthExchange::Idle;
                self.push_event(Event::Reauthenticated);
                return;
            }
            _ => {
                return self.violation(
                    "unexpected AUTH reason code",
                    DisconnectReason::ProtocolError,
                )
            }
        }
        self.auth = AuthExchange::Challenged;
        self.push_event(Event::AuthenticationChallenge { data: auth.data });
    }

    pub(super) fn handle_connack(&mut self, now: Instant, ack: ConnAck) {
        if let Some(reason) = ack.refused {
            self.state = State::Idle;
            self.rx.clear();
            self.push_event(Event::ConnectFailed(reason));
            return;
        }
        if ack.session_present && self.clean_start_sent {
            return self.violation(
                "CONNACK resumes a session after Clean Start",
                DisconnectReason::ProtocolError,
            );
        }
        if ack.receive_maximum == Some(0) || ack.maximum_packet_size == Some(0) {
            return self.violation(
                "CONNACK with Receive Maximum or Maximum Packet Size 0",
                DisconnectReason::ProtocolError,
            );
        }
        if let Some(id) = ack.assigned_client_id {
            self.client_id = id;
        }
        self.limits = ServerLimits {
            receive_maximum: ack.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: ack.maximum_packet_size,
            qos1: ack.maximum_qos != Some(0),
            keep_alive: ack.server_keep_alive.map_or(self.limits.keep_alive, |s| {
                Duration::from_secs(u64::from(s))
            }),
        };
        self.state = State::Connected;
        self.auth = AuthExchange::Idle;
        self.connected_before = true;
        if std::mem::take(&mut self.reauthenticate_after_connack) {
            self.send_reauthenticate(now);
        }
        self.push_event(Event::Connected {
            session_present: ack.session_present,
        });
        // Everything sent before goes back to the head of the queue, in its original order.
        let resent: Vec<Inflight> = self.inflight.drain(..).collect();
        for previous in resent.into_iter().rev() {
            self.waiting.push_front(Waiting {
                id: previous.id,
                packet_id: Some(previous.packet_id),
                message: previous.message,
                send_by: previous.send_by,
            });
        }
        if !ack.session_present {
            let mut kept = VecDeque::with_capacity(self.waiting.len());
            for waiting in std::mem::take(&mut self.waiting) {
                if let Some(packet_id) = waiting.packet_id {
                    self.used_packet_ids.remove(&packet_id);
                    self.push_event(Event::PublishDropped {
                        id: waiting.id,
                        message: waiting.message.into_message(),
                    });
                } else {
                    kept.push_back(waiting);
                }
            }
            self.waiting = kept;
        }
        self.drain_soon(now);
    }
}
