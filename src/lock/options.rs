//! What an intent is given beside its lock: [`Options`] and, for an edit, the user's [`EditAction`].

use bytes::Bytes;
use std::time::Duration;

/// Per-operation options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Deadline of the whole operation, from the intent. Sent on the wire as each request's message
    /// expiry, rounded up to whole seconds; the exact deadline is kept locally. `None`: a single
    /// request uses the client's request timeout, and `acquire` waits without limit.
    pub timeout: Option<Duration>,
    /// Session id: the holder value becomes `clientId:sessionId`, used alike by acquire, renewals,
    /// release and edit.
    pub session_id: Option<String>,
}

impl Options {
    /// Options with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Options with a session id.
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
}

/// What the user decides once an edit has read the current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditAction {
    /// Write this value (may be empty).
    Set(Bytes),
    /// Delete the key (deleting an absent key succeeds).
    Delete,
    /// Leave the key as it is.
    Abort,
}
