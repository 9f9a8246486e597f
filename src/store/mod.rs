//! The state-store protocol, typed: commands, requests, replies, service errors and notifications
//! ⇄ [`Message`](crate::Message) (docs/PROTOCOL.md §1–§6).
//!
//! Client side: build a [`Request`] and send [`Request::to_message`] (with the client's
//! [`RequestSender`]); feed responses to
//! [`parse_response`] and notifications to [`parse_notification`]. Server side (an emulator):
//! [`parse_request`], [`response_message`], [`protocol_error_message`], [`notification_message`].
//!
//! ```
//! use bytes::Bytes;
//! use leasedlock::hlc::Hlc;
//! use leasedlock::store::{Command, Request, RequestSender, SetCondition, SetOptions};
//! use std::{num::NonZeroU64, time::Duration};
//!
//! let request = Request {
//!     command: Command::Set {
//!         key: Bytes::from_static(b"feas-lock"),
//!         value: Bytes::from_static(b"feas-client"),
//!         options: SetOptions {
//!             condition: SetCondition::NotExistsOrEqual,
//!             expiry: NonZeroU64::new(10_000),
//!         },
//!     },
//!     timestamp: Hlc::new(1_700_000_000_000, 0, "feas-client"),
//!     fencing_token: None,
//! };
//! let sender = RequestSender::new("feas-client").unwrap(); // once per client
//! let msg = request
//!     .to_message(&sender, Bytes::from_static(&[7; 16]), Duration::from_millis(1500))
//!     .unwrap();
//! assert_eq!(msg.message_expiry, Some(2));
//! assert_eq!(
//!     &msg.payload[..],
//!     b"*6\r\n$3\r\nSET\r\n$9\r\nfeas-lock\r\n$11\r\nfeas-client\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n"
//! );
//! ```

mod command;
mod error;
mod notification;
mod request;
mod response;
pub mod topic;

pub use command::{Command, SetCondition, SetOptions};
pub use error::ServiceError;
pub use notification::{
    notification_message, parse_notification, Notification, NotificationError, NotificationOp,
};
pub use request::{
    expiry_seconds, parse_request, ParsedRequest, Request, RequestError, RequestSender,
    CONTENT_TYPE, PROP_FENCING_TOKEN, PROP_HIGH_PRIORITY, PROP_PARTITION, PROP_PROTOCOL_VERSION,
    PROP_SOURCE_ID, PROP_TIMESTAMP, PROTOCOL_VERSION,
};
pub use response::{
    parse_response, protocol_error_message, response_message, ProtocolError, Response,
    ResponseBody, ResponseError, ResponseParser, StoreReply, PROP_APPLICATION_ERROR,
    PROP_PROPERTY_NAME, PROP_PROPERTY_VALUE, PROP_REQUEST_PROTOCOL_VERSION, PROP_STATUS,
    PROP_STATUS_MESSAGE, PROP_SUPPORTED_MAJOR_VERSIONS,
};
pub use topic::{
    hex_upper, is_valid_response_topic, notification_filter, notification_topic,
    parse_notification_topic, response_topic, NOTIFICATION_PREFIX, REQUEST_TOPIC,
};
