//! [`Holder`]: who holds a lock, as the store keeps it (`clientId` or `clientId:sessionId`).

use bytes::Bytes;
use std::fmt;

/// The holder of a lock: the value the store keeps under the lock's key, which a client writes
/// as its MQTT client id, followed by `:` and the session id when the operation gave one
/// ([`Options::session_id`](super::Options::session_id)).
///
/// The value is read at its first `:`: the client id is what comes before it. A client id that
/// itself contains `:` is therefore read up to there (the format cannot tell it apart from a
/// session id); [`Holder::is`] compares the whole value and has no such ambiguity.
///
/// ```
/// use leasedlock::lock::Holder;
///
/// let h = Holder::from_value("worker-1:job-7");
/// assert_eq!(h.client_id(), b"worker-1");
/// assert_eq!(h.session_id(), Some(&b"job-7"[..]));
/// assert!(h.is("worker-1", Some("job-7")));
/// assert_eq!(h.to_string(), "worker-1:job-7");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder(Bytes);

impl Holder {
    /// The holder whose value (as the store keeps it) is `value`.
    pub fn from_value(value: impl Into<Bytes>) -> Holder {
        Holder(value.into())
    }

    /// The holder value, as the store keeps it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The holder value, as the store keeps it.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    fn split(&self) -> (&[u8], Option<&[u8]>) {
        match self.0.iter().position(|&b| b == b':') {
            Some(at) => (&self.0[..at], Some(&self.0[at + 1..])),
            None => (&self.0, None),
        }
    }

    /// The client id: the value up to its first `:`.
    pub fn client_id(&self) -> &[u8] {
        self.split().0
    }

    /// The session id: the value after its first `:`, if it has one.
    pub fn session_id(&self) -> Option<&[u8]> {
        self.split().1
    }

    /// Whether this is the holder value that `client_id` writes under `session_id`.
    pub fn is(&self, client_id: &str, session_id: Option<&str>) -> bool {
        let value = self.as_bytes();
        match session_id {
            None => value == client_id.as_bytes(),
            Some(s) => {
                value.len() == client_id.len() + 1 + s.len()
                    && value.starts_with(client_id.as_bytes())
                    && value[client_id.len()] == b':'
                    && value.ends_with(s.as_bytes())
            }
        }
    }
}

/// The holder value, with bytes that are not UTF-8 replaced.
impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Holder")
            .field("client_id", &text(self.client_id()))
            .field("session_id", &self.session_id().map(text))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_value_at_its_first_colon() {
        let plain = Holder::from_value("c1");
        assert_eq!((plain.client_id(), plain.session_id()), (&b"c1"[..], None));
        assert!(plain.is("c1", None));
        assert!(!plain.is("c1", Some("")));
        let two = Holder::from_value("c1:s:x");
        assert_eq!(two.client_id(), b"c1");
        assert_eq!(two.session_id(), Some(&b"s:x"[..]));
        assert!(two.is("c1", Some("s:x")));
        assert!(two.is("c1:s", Some("x")), "the whole value decides");
        assert!(!two.is("c1", Some("s")));
        let empty = Holder::from_value("c1:");
        assert_eq!(empty.session_id(), Some(&b""[..]));
        assert_eq!(
            format!("{two:?}"),
            r#"Holder { client_id: "c1", session_id: Some("s:x") }"#
        );
    }
}

/// A holder value as operations and leases keep it: 8 bytes, where a `Bytes` takes 32 (every
/// hold has two). `None` stands for the client's own value, its client id without a session id,
/// which the client keeps once; a value with a session id is boxed. The two never compare equal:
/// a client id has no `:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct HolderValue(Option<Box<Bytes>>);

impl HolderValue {
    /// A value with a session id (`clientId:sessionId`).
    pub(super) fn with_session(value: Bytes) -> HolderValue {
        HolderValue(Some(Box::new(value)))
    }

    /// The bytes of the value, given the client's own (`own`).
    pub(super) fn bytes<'a>(&'a self, own: &'a Bytes) -> &'a Bytes {
        self.0.as_deref().unwrap_or(own)
    }
}
