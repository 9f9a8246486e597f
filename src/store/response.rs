//! Responses: [`Message`] ⇄ the store's reply to one request (docs/PROTOCOL.md §3).

use bytes::{Bytes, BytesMut};

use super::request::{CONTENT_TYPE, PROP_PROTOCOL_VERSION, PROP_TIMESTAMP, PROTOCOL_VERSION};
use super::ServiceError;
use crate::hlc::Hlc;
use crate::mqtt::codec::property::{Properties, Property};
use crate::resp::{self, DecodeError, Reply};
use crate::{Message, QoS, SharedStr};

/// User property: HTTP-like status of a response.
pub const PROP_STATUS: &str = "__stat";
/// User property: status message of a protocol error.
pub const PROP_STATUS_MESSAGE: &str = "__stMsg";
/// User property: name of the property a protocol error is about.
pub const PROP_PROPERTY_NAME: &str = "__propName";
/// User property: value of the property a protocol error is about.
pub const PROP_PROPERTY_VALUE: &str = "__propVal";
/// User property: application error of a protocol error.
pub const PROP_APPLICATION_ERROR: &str = "__apErr";
/// User property of a 505 (unsupported protocol version): the major versions the service
/// supports, space-separated.
pub const PROP_SUPPORTED_MAJOR_VERSIONS: &str = "__supProtMajVer";
/// User property of a 505 (unsupported protocol version): the version the request carried.
pub const PROP_REQUEST_PROTOCOL_VERSION: &str = "__requestProtVer";

/// The store's answer to a processed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// `+OK`: SET applied, KEYNOTIFY (STOP) accepted.
    Ok,
    /// `:<n>`: `-1` = SET/VDEL not applied; DEL/VDEL/KEYNOTIFY STOP: number of keys affected.
    Integer(i64),
    /// `$<n>`: GET found this value.
    Value(Bytes),
    /// `$-1`: GET found no such key.
    NotFound,
    /// `-ERR <text>`: a service error.
    Error(ServiceError),
}

impl StoreReply {
    /// The RESP payload of this reply.
    pub fn to_payload(&self) -> Bytes {
        let reply = match self {
            StoreReply::Ok => Reply::Simple(Bytes::from_static(b"OK")),
            StoreReply::Integer(n) => Reply::Integer(*n),
            StoreReply::Value(v) => Reply::Blob(v.clone()),
            StoreReply::NotFound => Reply::Null,
            StoreReply::Error(e) => Reply::Error(Bytes::from(format!("ERR {}", e.text()))),
        };
        let mut out = BytesMut::new();
        resp::encode_reply(&reply, &mut out);
        out.freeze()
    }
}

/// A processed request's result: the key version and the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseBody {
    /// `__ts`: the version of the key (absent e.g. on a GET miss).
    pub version: Option<Hlc>,
    /// The store's reply.
    pub reply: StoreReply,
}

/// A response, attributed to its request by the correlation data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Correlation Data: which request this answers.
    pub correlation_data: Bytes,
    /// The result, or why that request failed.
    pub outcome: Result<ResponseBody, ResponseError>,
}

/// A protocol error (status ≥ 400): the request was not processed. (Texts are boxed `str`s to keep
/// the error small: results carrying it stay within clippy's `result_large_err` bound.)
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProtocolError {
    /// `__stat`.
    pub status: u16,
    /// `__stMsg`.
    pub message: Option<Box<str>>,
    /// `__propName`.
    pub property_name: Option<Box<str>>,
    /// `__propVal`.
    pub property_value: Option<Box<str>>,
    /// `__apErr`.
    pub application_error: Option<Box<str>>,
    /// `__supProtMajVer` (on a 505): the major protocol versions the service supports,
    /// space-separated (see [`ProtocolError::supported_major_versions`]).
    pub supported_major_versions: Option<Box<str>>,
    /// `__requestProtVer` (on a 505): the protocol version the request carried.
    pub request_protocol_version: Option<Box<str>>,
}

impl ProtocolError {
    /// The major versions listed in `__supProtMajVer` (entries that are not numbers are
    /// skipped); empty when the property is absent.
    pub fn supported_major_versions(&self) -> Vec<u32> {
        self.supported_major_versions
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}", self.status)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(n) = &self.property_name {
            write!(f, " (property {n}")?;
            if let Some(v) = &self.property_value {
                write!(f, " = {v:?}")?;
            }
            write!(f, ")")?;
        }
        if let Some(a) = &self.application_error {
            write!(f, " [application error {a}]")?;
        }
        if let Some(v) = &self.request_protocol_version {
            write!(f, " [request version {v}]")?;
        }
        if let Some(v) = &self.supported_major_versions {
            write!(f, " [supported major versions {v}]")?;
        }
        Ok(())
    }
}

/// Why a response cannot be used.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// No correlation data: the response cannot be attributed to a request.
    #[error("response without correlation data")]
    MissingCorrelationData,
    /// No `__stat` user property.
    #[error("response without __stat")]
    MissingStatus,
    /// `__stat` is not a decimal status code.
    #[error("response __stat {0:?} is not a status code")]
    BadStatus(String),
    /// Status ≥ 400: the service did not process the request.
    #[error("protocol error from the state store: {0}")]
    Protocol(ProtocolError),
    /// `__protVer` has a major version other than 1.
    #[error("unsupported protocol version {0:?}")]
    UnsupportedVersion(String),
    /// `__ts` is not an HLC.
    #[error("response __ts {0:?} is not an HLC")]
    BadTimestamp(String),
    /// The content type is present and not `application/octet-stream`.
    #[error("unexpected response content type {0:?}")]
    BadContentType(String),
    /// The payload is not one RESP reply.
    #[error("bad response payload: {0}")]
    Payload(#[from] DecodeError),
    /// A simple string other than `OK`.
    #[error("unexpected simple-string reply {0:?}")]
    UnexpectedReply(String),
}

/// Whether a `__protVer` value has major version 1 (`1`, `1.0`, `1.<digits>`).
fn is_supported_version(v: &str) -> bool {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    major == "1" && crate::decimal::parse(minor.as_bytes()).is_some()
}

/// The parts of a response message that [`parse_response`] reads: the first user property of
/// each name, the content type and the payload.
#[derive(Default)]
struct Fields<'a> {
    status: Option<&'a str>,
    protocol_version: Option<&'a str>,
    timestamp: Option<&'a str>,
    status_message: Option<&'a str>,
    property_name: Option<&'a str>,
    property_value: Option<&'a str>,
    application_error: Option<&'a str>,
    supported_major_versions: Option<&'a str>,
    request_protocol_version: Option<&'a str>,
    content_type: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Takes a user property if it is one of ours and the first of its name.
    fn user_property(&mut self, name: &[u8], value: &'a str) {
        if let Some(slot) = self.slot(name) {
            if slot.is_none() {
                *slot = Some(value);
            }
        }
    }

    /// Where the value of the user property `name` goes, if it is one of ours.
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<&'a str>> {
        Some(match name {
            b"__stat" => &mut self.status,
            b"__ts" => &mut self.timestamp,
            b"__protVer" => &mut self.protocol_version,
            b"__stMsg" => &mut self.status_message,
            b"__propName" => &mut self.property_name,
            b"__propVal" => &mut self.property_value,
            b"__apErr" => &mut self.application_error,
            b"__supProtMajVer" => &mut self.supported_major_versions,
            b"__requestProtVer" => &mut self.request_protocol_version,
            _ => return None,
        })
    }

    /// [`Fields::user_property`] of a property whose value is still bytes (checked UTF-8 by the
    /// codec): only a value that is kept is read as text.
    fn user_property_bytes(&mut self, name: &[u8], value: &'a [u8]) {
        if let Some(slot) = self.slot(name) {
            if slot.is_none() {
                *slot = str_of(value);
            }
        }
    }

    fn of_message(msg: &'a Message) -> Self {
        let mut fields = Fields {
            content_type: msg.content_type.as_deref(),
            ..Fields::default()
        };
        for (k, v) in &msg.user_properties {
            fields.user_property(k.as_bytes(), v);
        }
        fields
    }

    /// The fields of a response's MQTT properties (as the codec read them from the packet);
    /// also the correlation data.
    fn of_properties(properties: Properties<'a>) -> (Self, Option<&'a [u8]>) {
        let mut fields = Fields::default();
        let mut correlation = None;
        for property in properties {
            match property {
                Property::ContentType(v) => fields.content_type = str_of(v),
                Property::CorrelationData(v) => correlation = Some(v),
                Property::UserProperty(name, value) => fields.user_property_bytes(name, value),
                _ => {}
            }
        }
        (fields, correlation)
    }
}

/// Text the codec has checked is UTF-8 (`None` if it was not, which cannot happen).
fn str_of(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Reads the responses of one client. The versions in responses nearly always name the same
/// store node: the parser keeps the node id of the latest one and shares it with the versions
/// parsed after it (no allocation per version).
#[derive(Debug, Default)]
pub struct ResponseParser {
    store_node: SharedStr,
}

impl ResponseParser {
    /// [`parse_response`] of a message: its correlation data (`None`: absent) and what it says.
    pub fn parse_message<'m>(
        &mut self,
        msg: &'m Message,
    ) -> (Option<&'m [u8]>, Result<ResponseBody, ResponseError>) {
        let Some(correlation_data) = msg.correlation_data.as_deref() else {
            return (None, Err(ResponseError::MissingCorrelationData));
        };
        let outcome = parse_fields(
            &Fields::of_message(msg),
            &msg.payload,
            &self.store_node,
            || msg.payload.clone(),
        );
        self.remember_node(&outcome);
        (Some(correlation_data), outcome)
    }

    /// [`parse_response`] of a response the MQTT codec left as bytes (and checked): its
    /// properties and payload. The same result as for the message, without building it; the
    /// correlation data is borrowed from the packet. `payload_bytes` gives the payload as
    /// [`Bytes`] when the reply needs it (the most common, `+OK`, does not).
    pub(crate) fn parse_parts<'a>(
        &mut self,
        properties: Properties<'a>,
        payload: &[u8],
        payload_bytes: impl FnOnce() -> Bytes,
    ) -> (Option<&'a [u8]>, Result<ResponseBody, ResponseError>) {
        let (fields, correlation) = Fields::of_properties(properties);
        if correlation.is_none() {
            return (None, Err(ResponseError::MissingCorrelationData));
        }
        let outcome = parse_fields(&fields, payload, &self.store_node, payload_bytes);
        self.remember_node(&outcome);
        (correlation, outcome)
    }

    fn remember_node(&mut self, outcome: &Result<ResponseBody, ResponseError>) {
        if let Ok(ResponseBody {
            version: Some(v), ..
        }) = outcome
        {
            if v.node_id != self.store_node {
                self.store_node = v.node_id.clone();
            }
        }
    }
}

fn parse_body(msg: &Message, store_node: &SharedStr) -> Result<ResponseBody, ResponseError> {
    parse_fields(&Fields::of_message(msg), &msg.payload, store_node, || {
        msg.payload.clone()
    })
}

/// The checks of [`parse_response`] on the fields of a response; `payload_bytes` gives the payload
/// as [`Bytes`] when the reply needs it (the most common one, `+OK`, does not).
fn parse_fields(
    fields: &Fields<'_>,
    payload: &[u8],
    store_node: &SharedStr,
    payload_bytes: impl FnOnce() -> Bytes,
) -> Result<ResponseBody, ResponseError> {
    let text = fields.status.ok_or(ResponseError::MissingStatus)?;
    let status = crate::decimal::parse(text.as_bytes())
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| ResponseError::BadStatus(text.to_owned()))?;
    if status >= 400 {
        let owned = |v: Option<&str>| v.map(Box::from);
        return Err(ResponseError::Protocol(ProtocolError {
            status,
            message: owned(fields.status_message),
            property_name: owned(fields.property_name),
            property_value: owned(fields.property_value),
            application_error: owned(fields.application_error),
            supported_major_versions: owned(fields.supported_major_versions),
            request_protocol_version: owned(fields.request_protocol_version),
        }));
    }
    if let Some(v) = fields.protocol_version {
        if !is_supported_version(v) {
            return Err(ResponseError::UnsupportedVersion(v.to_owned()));
        }
    }
    if let Some(ct) = fields.content_type {
        if ct != CONTENT_TYPE {
            return Err(ResponseError::BadContentType(ct.to_string()));
        }
    }
    let version = fields
        .timestamp
        .map(|ts| {
            Hlc::parse_with_node(ts, store_node)
                .map_err(|_| ResponseError::BadTimestamp(ts.to_owned()))
        })
        .transpose()?;
    if payload == b"+OK\r\n" {
        return Ok(ResponseBody {
            version,
            reply: StoreReply::Ok,
        });
    }
    let reply = match resp::decode_reply(&payload_bytes())? {
        Reply::Simple(s) if &s[..] == b"OK" => StoreReply::Ok,
        Reply::Simple(s) => {
            return Err(ResponseError::UnexpectedReply(
                String::from_utf8_lossy(&s).into_owned(),
            ))
        }
        Reply::Integer(n) => StoreReply::Integer(n),
        Reply::Blob(v) => StoreReply::Value(v),
        Reply::Null => StoreReply::NotFound,
        Reply::Error(text) => {
            let text = String::from_utf8_lossy(&text);
            StoreReply::Error(match text.strip_prefix("ERR ") {
                Some(t) => ServiceError::from_text(t),
                None => ServiceError::Unknown(text.into_owned()),
            })
        }
    };
    Ok(ResponseBody { version, reply })
}

/// Parses a response message.
///
/// Fails only when the message cannot be attributed to a request (no correlation data); every
/// other problem is that request's failure, in `outcome`. Checks in order: `__stat` (missing, not
/// a number, ≥ 400), `__protVer` (absent = 1.0), content type, `__ts`, payload. A `-ERR <text>`
/// reply maps to [`ServiceError::from_text`]; an error line without the `ERR ` prefix is kept
/// whole as [`ServiceError::Unknown`].
pub fn parse_response(msg: &Message) -> Result<Response, ResponseError> {
    let correlation_data = msg
        .correlation_data
        .clone()
        .ok_or(ResponseError::MissingCorrelationData)?;
    Ok(Response {
        correlation_data,
        outcome: parse_body(msg, &SharedStr::default()),
    })
}

fn response_base(
    response_topic: &str,
    correlation_data: Bytes,
    status: u16,
    payload: Bytes,
) -> Message {
    Message {
        topic: response_topic.into(),
        payload,
        qos: QoS::AtLeastOnce,
        correlation_data: Some(correlation_data),
        response_topic: None,
        message_expiry: None,
        content_type: Some(SharedStr::from_static(CONTENT_TYPE)),
        user_properties: vec![
            (
                SharedStr::from_static(PROP_STATUS),
                status.to_string().into(),
            ),
            (
                SharedStr::from_static(PROP_PROTOCOL_VERSION),
                SharedStr::from_static(PROTOCOL_VERSION),
            ),
        ],
    }
}

/// The service's response to a processed request (for an emulator): the reply as payload,
/// `__stat`, `__protVer` = 1.0 and `__ts` = `version` when given.
pub fn response_message(
    response_topic: &str,
    correlation_data: Bytes,
    status: u16,
    version: Option<&Hlc>,
    reply: &StoreReply,
) -> Message {
    let mut msg = response_base(response_topic, correlation_data, status, reply.to_payload());
    if let Some(v) = version {
        msg.user_properties
            .push((SharedStr::from_static(PROP_TIMESTAMP), v.to_string().into()));
    }
    msg
}

/// The service's response to a request it could not process (for an emulator): empty payload,
/// `__stat` and the present fields of `error`.
pub fn protocol_error_message(
    response_topic: &str,
    correlation_data: Bytes,
    error: &ProtocolError,
) -> Message {
    let mut msg = response_base(response_topic, correlation_data, error.status, Bytes::new());
    for (name, value) in [
        (PROP_STATUS_MESSAGE, &error.message),
        (PROP_PROPERTY_NAME, &error.property_name),
        (PROP_PROPERTY_VALUE, &error.property_value),
        (PROP_APPLICATION_ERROR, &error.application_error),
        (
            PROP_SUPPORTED_MAJOR_VERSIONS,
            &error.supported_major_versions,
        ),
        (
            PROP_REQUEST_PROTOCOL_VERSION,
            &error.request_protocol_version,
        ),
    ] {
        if let Some(v) = value {
            msg.user_properties
                .push((SharedStr::from_static(name), SharedStr::from(&**v)));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cd() -> Bytes {
        Bytes::from_static(b"0123456789abcdef")
    }

    /// `msg` through the wire: encoded, decoded as a raw publish, parsed from its bytes.
    fn parse_via_bytes(msg: &Message) -> Result<Response, ResponseError> {
        use crate::mqtt::codec::{decode, encode_publish, frame, Inbound};
        let mut out = BytesMut::new();
        encode_publish(&mut out, msg, 1, false).unwrap();
        let f = frame(&out, 1 << 20).unwrap().unwrap();
        let topic = msg.topic.clone();
        match decode(out.freeze(), f, &mut SharedStr::default(), Some(&topic)) {
            Ok(Inbound::RawPublish(raw)) => {
                let mut parser = ResponseParser {
                    store_node: SharedStr::from("store"),
                };
                let (correlation, outcome) =
                    parser.parse_parts(raw.properties(), raw.payload(), || {
                        raw.packet.slice(raw.payload.clone())
                    });
                correlation
                    .map(|c| Response {
                        correlation_data: Bytes::copy_from_slice(c),
                        outcome,
                    })
                    .ok_or(ResponseError::MissingCorrelationData)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parsing_the_bytes_gives_what_parsing_the_message_gives() {
        let ts = Hlc::new(1_700_000_000_000, 3, "store");
        let error = ProtocolError {
            status: 422,
            message: Some("bad ts".into()),
            property_name: Some("__ts".into()),
            property_value: Some("x".into()),
            application_error: None,
            ..ProtocolError::default()
        };
        let mut cases = vec![
            response_message("r", cd(), 200, Some(&ts), &StoreReply::Ok),
            response_message("r", cd(), 200, None, &StoreReply::NotFound),
            response_message("r", cd(), 200, Some(&ts), &StoreReply::Integer(-1)),
            response_message("r", cd(), 200, Some(&ts), &StoreReply::Value(cd())),
            response_message(
                "r",
                cd(),
                200,
                None,
                &StoreReply::Error(ServiceError::FencingTokenLowerVersion),
            ),
            protocol_error_message("r", cd(), &error),
            protocol_error_message(
                "r",
                cd(),
                &ProtocolError {
                    status: 505,
                    supported_major_versions: Some("1 2".into()),
                    request_protocol_version: Some("3.0".into()),
                    ..ProtocolError::default()
                },
            ),
        ];
        let base = cases[0].clone();
        let variant = |f: &dyn Fn(&mut Message)| {
            let mut m = base.clone();
            f(&mut m);
            m
        };
        cases.extend([
            variant(&|m| m.correlation_data = None),
            variant(&|m| m.content_type = Some("text/plain".into())),
            variant(&|m| m.content_type = None),
            variant(&|m| m.user_properties.retain(|(k, _)| k != "__stat")),
            variant(&|m| m.user_properties[0].1 = "abc".into()),
            variant(&|m| m.user_properties.insert(0, ("__stat".into(), "500".into()))),
            variant(&|m| m.user_properties.push(("__stat".into(), "500".into()))),
            variant(&|m| m.user_properties[1].1 = "2.0".into()),
            variant(&|m| m.user_properties.push(("__ts".into(), "nope".into()))),
            variant(&|m| m.user_properties.insert(0, ("__ts".into(), "nope".into()))),
            variant(&|m| m.user_properties.push(("other".into(), "x".into()))),
            variant(&|m| m.message_expiry = Some(5)),
            variant(&|m| m.response_topic = Some("x/y".into())),
            variant(&|m| m.payload = Bytes::from_static(b"+OK\r\nextra")),
            variant(&|m| m.payload = Bytes::from_static(b"+QUEUED\r\n")),
        ]);
        for msg in &cases {
            let mut parser = ResponseParser {
                store_node: SharedStr::from("store"),
            };
            let (correlation, outcome) = parser.parse_message(msg);
            let expected = correlation
                .map(|c| Response {
                    correlation_data: Bytes::copy_from_slice(c),
                    outcome,
                })
                .ok_or(ResponseError::MissingCorrelationData);
            assert_eq!(parse_via_bytes(msg), expected, "{msg:?}");
        }
    }

    fn msg(props: &[(&str, &str)], payload: &'static [u8]) -> Message {
        Message {
            topic: "t".into(),
            payload: Bytes::from_static(payload),
            correlation_data: Some(cd()),
            user_properties: props
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..Message::default()
        }
    }

    fn outcome(
        props: &[(&str, &str)],
        payload: &'static [u8],
    ) -> Result<ResponseBody, ResponseError> {
        parse_response(&msg(props, payload)).unwrap().outcome
    }

    #[test]
    fn writer_and_parser_agree() {
        let v = Hlc::new(9, 0, "svc");
        for reply in [
            StoreReply::Ok,
            StoreReply::Integer(-1),
            StoreReply::Integer(0),
            StoreReply::Value(Bytes::new()),
            StoreReply::Value(Bytes::from_static(b"x\r\ny")),
            StoreReply::NotFound,
            StoreReply::Error(ServiceError::SyntaxError),
            StoreReply::Error(ServiceError::Unknown("weird thing".into())),
        ] {
            for version in [None, Some(&v)] {
                let m = response_message("r", cd(), 200, version, &reply);
                assert_eq!(m.topic, "r");
                let r = parse_response(&m).unwrap();
                assert_eq!(r.correlation_data, cd());
                assert_eq!(
                    r.outcome,
                    Ok(ResponseBody {
                        version: version.cloned(),
                        reply: reply.clone()
                    })
                );
            }
        }
    }

    #[test]
    fn missing_correlation_data_is_the_only_err() {
        let mut m = msg(&[], b"");
        m.correlation_data = None;
        assert_eq!(
            parse_response(&m),
            Err(ResponseError::MissingCorrelationData)
        );
    }

    #[test]
    fn status_handling() {
        assert_eq!(outcome(&[], b"+OK\r\n"), Err(ResponseError::MissingStatus));
        for bad in ["", "abc", "-200", "+200", " 200", "70000"] {
            assert_eq!(
                outcome(&[("__stat", bad)], b"+OK\r\n"),
                Err(ResponseError::BadStatus(bad.into()))
            );
        }
        assert_eq!(
            outcome(&[("__stat", "204")], b":1\r\n").map(|b| b.reply),
            Ok(StoreReply::Integer(1))
        );
        assert_eq!(
            outcome(
                &[
                    ("__stat", "400"),
                    ("__stMsg", "bad"),
                    ("__propName", "__ts"),
                    ("__propVal", "x"),
                    ("__apErr", "e")
                ],
                b"garbage"
            ),
            Err(ResponseError::Protocol(ProtocolError {
                status: 400,
                message: Some("bad".into()),
                property_name: Some("__ts".into()),
                property_value: Some("x".into()),
                application_error: Some("e".into()),
                ..ProtocolError::default()
            }))
        );
        let pe = ProtocolError {
            status: 503,
            message: Some("busy".into()),
            ..ProtocolError::default()
        };
        let m = protocol_error_message("r", cd(), &pe);
        assert_eq!(m.user_property("__stMsg"), Some("busy"));
        assert_eq!(
            parse_response(&m).unwrap().outcome,
            Err(ResponseError::Protocol(pe))
        );
    }

    #[test]
    fn unsupported_version_properties_are_read() {
        let error = outcome(
            &[
                ("__stat", "505"),
                ("__stMsg", "unsupported"),
                ("__supProtMajVer", "1 3 x"),
                ("__requestProtVer", "2.0"),
            ],
            b"",
        );
        let Err(ResponseError::Protocol(pe)) = error else {
            panic!("{error:?}");
        };
        assert_eq!(pe.status, 505);
        assert_eq!(pe.supported_major_versions.as_deref(), Some("1 3 x"));
        assert_eq!(pe.supported_major_versions(), [1, 3]);
        assert_eq!(pe.request_protocol_version.as_deref(), Some("2.0"));
        assert_eq!(
            pe.to_string(),
            "status 505: unsupported [request version 2.0] [supported major versions 1 3 x]"
        );
        // The writer puts them on the wire under their names.
        let m = protocol_error_message("r", cd(), &pe);
        assert_eq!(m.user_property("__supProtMajVer"), Some("1 3 x"));
        assert_eq!(m.user_property("__requestProtVer"), Some("2.0"));
        assert_eq!(
            parse_response(&m).unwrap().outcome,
            Err(ResponseError::Protocol(pe))
        );
        assert!(ProtocolError::default()
            .supported_major_versions()
            .is_empty());
    }

    #[test]
    fn version_content_type_timestamp_payload() {
        let ok = |extra: (&str, &str)| outcome(&[("__stat", "200"), extra], b"+OK\r\n");
        for good in ["1.0", "1", "1.7"] {
            assert!(ok(("__protVer", good)).is_ok(), "{good}");
        }
        for bad in ["2.0", "0.9", "", "1.", "1.x", "10.0", "abc"] {
            assert_eq!(
                ok(("__protVer", bad)),
                Err(ResponseError::UnsupportedVersion(bad.into()))
            );
        }
        assert_eq!(
            ok(("__ts", "1:2")),
            Err(ResponseError::BadTimestamp("1:2".into()))
        );
        let mut m = msg(&[("__stat", "200")], b"+OK\r\n");
        m.content_type = Some("text/plain".into());
        assert_eq!(
            parse_response(&m).unwrap().outcome,
            Err(ResponseError::BadContentType("text/plain".into()))
        );
        assert_eq!(
            outcome(&[("__stat", "200")], b"+OK"),
            Err(ResponseError::Payload(DecodeError::Truncated { at: 3 }))
        );
        assert_eq!(
            outcome(&[("__stat", "200")], b"+PONG\r\n"),
            Err(ResponseError::UnexpectedReply("PONG".into()))
        );
        assert_eq!(
            outcome(&[("__stat", "200")], b"-WRONGTYPE x\r\n").map(|b| b.reply),
            Ok(StoreReply::Error(ServiceError::Unknown(
                "WRONGTYPE x".into()
            )))
        );
    }
}
