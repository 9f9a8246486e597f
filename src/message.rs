//! [`Message`]: an MQTT v5 application message, independent of any MQTT library.
//!
//! The lock engine speaks `Message`, never the types of an MQTT codec, so it can be bound to any MQTT
//! client (the built-in [`crate::mqtt`] session, rumqttc, the AIO SDK session, …) in a few lines.

use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string that is cheap to clone: a static string (no allocation at all) or a shared
/// one (cloning is a reference-count increment). Message fields use it so that the fixed names and
/// values of the protocol cost nothing and a client's ids are built once.
///
/// ```
/// use leasedlock::SharedStr;
/// let a = SharedStr::from_static("__ts");
/// let b: SharedStr = String::from("__ts").into();
/// assert_eq!(a, b);
/// assert_eq!(a, "__ts");
/// assert!(a.starts_with("__")); // derefs to str
/// ```
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl SharedStr {
    /// A string that borrows static memory (no allocation).
    pub const fn from_static(s: &'static str) -> Self {
        SharedStr(Repr::Static(s))
    }

    /// A copy of `bytes` if they are UTF-8.
    pub fn from_utf8(bytes: &[u8]) -> Result<Self, std::str::Utf8Error> {
        Ok(std::str::from_utf8(bytes)?.into())
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr::from_static("")
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr(Repr::Shared(s.into()))
    }
}

impl From<&str> for SharedStr {
    /// Copies the string (use [`SharedStr::from_static`] for literals to avoid the copy).
    fn from(s: &str) -> Self {
        SharedStr(Repr::Shared(s.into()))
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

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
    pub topic: SharedStr,
    /// Payload bytes.
    pub payload: Bytes,
    /// Quality of service.
    pub qos: QoS,
    /// Correlation Data property: matches a response to its request.
    pub correlation_data: Option<Bytes>,
    /// Response Topic property: where the response to a request goes.
    pub response_topic: Option<SharedStr>,
    /// Message Expiry Interval property, in whole seconds.
    pub message_expiry: Option<u32>,
    /// Content Type property.
    pub content_type: Option<SharedStr>,
    /// User properties, in wire order (names may repeat).
    pub user_properties: Vec<(SharedStr, SharedStr)>,
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
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.as_str())
    }
}
