//! [`Message`]: an MQTT v5 application message, independent of any MQTT library.
//!
//! The lock engine speaks `Message`, never the types of an MQTT codec, so it can be bound to any MQTT
//! client (the built-in [`crate::mqtt`] session, rumqttc, the AIO SDK session, …) in a few lines.

use bytes::Bytes;

/// Quality of service of a PUBLISH. The state store is used with QoS 1 only; QoS 0 exists for
/// completeness of inbound traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once (QoS 0).
    AtMostOnce,
    /// At least once (QoS 1).
    #[default]
    AtLeastOnce,
}

/// An MQTT v5 application message with the properties the state-store protocol uses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Bytes,
    /// Quality of service.
    pub qos: QoS,
    /// Correlation Data property: matches a response to its request.
    pub correlation_data: Option<Bytes>,
    /// Response Topic property: where the response to a request goes.
    pub response_topic: Option<String>,
    /// Message Expiry Interval property, in whole seconds.
    pub message_expiry: Option<u32>,
    /// Content Type property.
    pub content_type: Option<String>,
    /// User properties, in wire order (names may repeat).
    pub user_properties: Vec<(String, String)>,
}

impl Message {
    /// The value of the first user property called `name`, if any.
    ///
    /// ```
    /// use leasedlock::Message;
    /// let m = Message {
    ///     user_properties: vec![("__stat".into(), "200".into())],
    ///     ..Message::default()
    /// };
    /// assert_eq!(m.user_property("__stat"), Some("200"));
    /// assert_eq!(m.user_property("__ts"), None);
    /// ```
    pub fn user_property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
