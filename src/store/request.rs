//! Requests: a [`Command`] with its timestamp and fencing token ⇄ [`Message`] (docs/PROTOCOL.md §1).

use std::time::Duration;

use bytes::Bytes;

use super::{is_valid_response_topic, response_topic, Command, ServiceError, REQUEST_TOPIC};
use crate::hlc::{FencingToken, Hlc};
use crate::{Message, QoS, SharedStr};

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// The protocol version this crate speaks (`__protVer`).
pub const PROTOCOL_VERSION: &str = "1.0";

/// User property: the client id of the sender.
pub const PROP_SOURCE_ID: &str = "__srcId";
/// User property: request timestamp (requests) or key version (responses, notifications).
pub const PROP_TIMESTAMP: &str = "__ts";
/// User property: protocol version.
pub const PROP_PROTOCOL_VERSION: &str = "__protVer";
/// User property: broker partition key (the client id).
pub const PROP_PARTITION: &str = "$partition";
/// User property: present (empty) on every request.
pub const PROP_HIGH_PRIORITY: &str = "$high_priority";
/// User property: fencing token.
pub const PROP_FENCING_TOKEN: &str = "__ft";

/// A request ready to be sent: the command, the client's HLC at send time and an optional token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// The client's HLC at send time (`__ts`).
    pub timestamp: Hlc,
    /// The fencing token guarding a SET/DEL/VDEL (`__ft`).
    pub fencing_token: Option<FencingToken>,
}

/// Why a request cannot be sent.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The command's key is empty (the service would answer "the key length is zero").
    #[error("the key is empty")]
    EmptyKey,
    /// The client id is empty.
    #[error("the client id is empty")]
    EmptyClientId,
    /// The timeout is zero.
    #[error("the request timeout is zero")]
    ZeroTimeout,
    /// The correlation data is empty.
    #[error("the correlation data is empty")]
    EmptyCorrelationData,
    /// The client id makes an unusable response topic (wildcards, NUL, reserved prefix).
    #[error("client id {0:?} gives an invalid response topic")]
    InvalidResponseTopic(String),
}

/// The Message Expiry Interval for a request timeout: whole seconds rounded up, at least 1,
/// saturating at `u32::MAX`.
pub fn expiry_seconds(timeout: Duration) -> u32 {
    let secs = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// What every request of one client carries: its client id and response topic, checked and
/// built once (cloning them later costs no allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSender {
    client_id: SharedStr,
    response_topic: SharedStr,
}

impl RequestSender {
    /// The sender for `client_id`, whose response topic is [`response_topic`]`(client_id)`.
    pub fn new(client_id: &str) -> Result<Self, RequestError> {
        if client_id.is_empty() {
            return Err(RequestError::EmptyClientId);
        }
        let topic = response_topic(client_id);
        if !is_valid_response_topic(&topic) {
            return Err(RequestError::InvalidResponseTopic(client_id.to_owned()));
        }
        Ok(RequestSender {
            client_id: client_id.into(),
            response_topic: topic.into(),
        })
    }

    /// The client id (`__srcId`, `$partition`).
    pub fn client_id(&self) -> &SharedStr {
        &self.client_id
    }

    /// The response topic of every request.
    pub fn response_topic(&self) -> &SharedStr {
        &self.response_topic
    }
}

impl Request {
    /// The request as an MQTT message from `sender`, expiring after `timeout` (rounded up to
    /// whole seconds; keep a sub-second deadline locally).
    ///
    /// User properties, in order: `__srcId`, `__ts`, `__protVer`, `$partition`, `$high_priority`,
    /// then `__ft` when there is a token.
    pub fn to_message(
        &self,
        sender: &RequestSender,
        correlation_data: Bytes,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        self.to_message_with_payload(sender, correlation_data, timeout, self.command.to_payload())
    }

    /// [`Request::to_message`] with the command's payload already encoded (by
    /// [`Command::encode`], into a buffer of the caller's choice).
    pub fn to_message_with_payload(
        &self,
        sender: &RequestSender,
        correlation_data: Bytes,
        timeout: Duration,
        payload: Bytes,
    ) -> Result<Message, RequestError> {
        if self.command.key().is_empty() {
            return Err(RequestError::EmptyKey);
        }
        if timeout.is_zero() {
            return Err(RequestError::ZeroTimeout);
        }
        if correlation_data.is_empty() {
            return Err(RequestError::EmptyCorrelationData);
        }
        let mut user_properties = Vec::with_capacity(6);
        user_properties.extend([
            (
                SharedStr::from_static(PROP_SOURCE_ID),
                sender.client_id.clone(),
            ),
            (
                SharedStr::from_static(PROP_TIMESTAMP),
                self.timestamp.to_shared_text(),
            ),
            (
                SharedStr::from_static(PROP_PROTOCOL_VERSION),
                SharedStr::from_static(PROTOCOL_VERSION),
            ),
            (
                SharedStr::from_static(PROP_PARTITION),
                sender.client_id.clone(),
            ),
            (
                SharedStr::from_static(PROP_HIGH_PRIORITY),
                SharedStr::default(),
            ),
        ]);
        if let Some(ft) = &self.fencing_token {
            user_properties.push((
                SharedStr::from_static(PROP_FENCING_TOKEN),
                ft.as_hlc().to_shared_text(),
            ));
        }
        Ok(Message {
            topic: SharedStr::from_static(REQUEST_TOPIC),
            payload,
            qos: QoS::AtLeastOnce,
            correlation_data: Some(correlation_data),
            response_topic: Some(sender.response_topic.clone()),
            message_expiry: Some(expiry_seconds(timeout)),
            content_type: Some(SharedStr::from_static(CONTENT_TYPE)),
            user_properties,
        })
    }
}

/// A request as the service sees it (for an emulator): every part parsed separately, so the
/// emulator can answer exactly like the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// `__srcId`, if present.
    pub client_id: Option<String>,
    /// `__ts`: `TimestampMissing` when absent, `TimestampMalformed` when not an HLC.
    pub timestamp: Result<Hlc, ServiceError>,
    /// `__ft`: `Ok(None)` when absent, `TimestampMalformed` when not an HLC.
    pub fencing_token: Result<Option<FencingToken>, ServiceError>,
    /// The decoded payload (see [`Command::decode`]).
    pub command: Result<Command, ServiceError>,
    /// Correlation Data, if present.
    pub correlation_data: Option<Bytes>,
    /// Response Topic, if present.
    pub response_topic: Option<SharedStr>,
    /// `__protVer`, if present (absent means 1.0).
    pub protocol_version: Option<String>,
}

impl ParsedRequest {
    /// The parts a service needs, or the first error it would answer with: timestamp, then fencing
    /// token, then command.
    pub fn check(&self) -> Result<(&Hlc, Option<&FencingToken>, &Command), ServiceError> {
        let ts = self.timestamp.as_ref().map_err(Clone::clone)?;
        let ft = self.fencing_token.as_ref().map_err(Clone::clone)?;
        let command = self.command.as_ref().map_err(Clone::clone)?;
        Ok((ts, ft.as_ref(), command))
    }
}

/// Parses a request message the way the service does (for an emulator). Never fails: every
/// problem is recorded in the part it concerns.
pub fn parse_request(msg: &Message) -> ParsedRequest {
    let timestamp = match msg.user_property(PROP_TIMESTAMP) {
        None => Err(ServiceError::TimestampMissing),
        Some(text) => text.parse().map_err(|_| ServiceError::TimestampMalformed),
    };
    let fencing_token = msg
        .user_property(PROP_FENCING_TOKEN)
        .map(|text| text.parse().map_err(|_| ServiceError::TimestampMalformed))
        .transpose();
    ParsedRequest {
        client_id: msg.user_property(PROP_SOURCE_ID).map(str::to_owned),
        timestamp,
        fencing_token,
        command: Command::decode(&msg.payload),
        correlation_data: msg.correlation_data.clone(),
        response_topic: msg.response_topic.clone(),
        protocol_version: msg.user_property(PROP_PROTOCOL_VERSION).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ft: Option<FencingToken>) -> Request {
        Request {
            command: Command::Get {
                key: Bytes::from_static(b"k"),
            },
            timestamp: Hlc::new(5, 1, "c"),
            fencing_token: ft,
        }
    }

    #[test]
    fn expiry_rounds_up() {
        assert_eq!(expiry_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(expiry_seconds(Duration::from_millis(999)), 1);
        assert_eq!(expiry_seconds(Duration::from_secs(1)), 1);
        assert_eq!(expiry_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(expiry_seconds(Duration::from_secs(10)), 10);
        assert_eq!(expiry_seconds(Duration::ZERO), 1);
        assert_eq!(
            expiry_seconds(Duration::from_secs(u64::from(u32::MAX) + 5)),
            u32::MAX
        );
        assert_eq!(expiry_seconds(Duration::MAX), u32::MAX);
    }

    #[test]
    fn to_message_rejects() {
        let cd = Bytes::from_static(b"0123456789abcdef");
        let t = Duration::from_secs(1);
        assert_eq!(RequestSender::new(""), Err(RequestError::EmptyClientId));
        assert_eq!(
            RequestSender::new("a/#"),
            Err(RequestError::InvalidResponseTopic("a/#".into()))
        );
        let c = RequestSender::new("c").unwrap();
        assert_eq!(
            req(None).to_message(&c, cd.clone(), Duration::ZERO),
            Err(RequestError::ZeroTimeout)
        );
        assert_eq!(
            req(None).to_message(&c, Bytes::new(), t),
            Err(RequestError::EmptyCorrelationData)
        );
        let mut empty = req(None);
        empty.command = Command::Del { key: Bytes::new() };
        assert_eq!(empty.to_message(&c, cd, t), Err(RequestError::EmptyKey));
    }

    #[test]
    fn parse_request_reads_every_part() {
        let ft: FencingToken = "1:2:n".parse().unwrap();
        let cd = Bytes::from_static(b"0123456789abcdef");
        let msg = req(Some(ft.clone()))
            .to_message(
                &RequestSender::new("c").unwrap(),
                cd.clone(),
                Duration::from_secs(3),
            )
            .unwrap();
        let p = parse_request(&msg);
        assert_eq!(p.client_id.as_deref(), Some("c"));
        assert_eq!(p.timestamp, Ok(Hlc::new(5, 1, "c")));
        assert_eq!(p.fencing_token, Ok(Some(ft.clone())));
        assert_eq!(p.correlation_data, Some(cd));
        assert_eq!(p.response_topic, Some(response_topic("c").into()));
        assert_eq!(p.protocol_version.as_deref(), Some("1.0"));
        let (ts, got_ft, cmd) = p.check().unwrap();
        assert_eq!(
            (ts, got_ft, cmd),
            (&Hlc::new(5, 1, "c"), Some(&ft), &req(None).command)
        );
    }

    #[test]
    fn parse_request_errors_in_service_order() {
        let msg = Message {
            payload: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
            ..Message::default()
        };
        let p = parse_request(&msg);
        assert_eq!(p.timestamp, Err(ServiceError::TimestampMissing));
        assert_eq!(p.fencing_token, Ok(None));
        assert_eq!(p.command, Err(ServiceError::UnknownCommand));
        assert_eq!(p.check(), Err(ServiceError::TimestampMissing));

        let mut msg = msg;
        msg.user_properties = vec![("__ts".into(), "1:2".into()), ("__ft".into(), "x".into())];
        assert_eq!(
            parse_request(&msg).check(),
            Err(ServiceError::TimestampMalformed)
        );
        msg.user_properties[0].1 = "1:2:c".into();
        let p = parse_request(&msg);
        assert_eq!(p.fencing_token, Err(ServiceError::TimestampMalformed));
        assert_eq!(p.check(), Err(ServiceError::TimestampMalformed));
        msg.user_properties.pop();
        assert_eq!(
            parse_request(&msg).check(),
            Err(ServiceError::UnknownCommand)
        );
    }
}
