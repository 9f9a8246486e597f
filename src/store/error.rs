//! [`ServiceError`]: the error texts the state store answers with (`-ERR <text>`, docs/PROTOCOL.md §3).

/// A service error reported by the state store, identified by its exact text.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// The request `__ts` is more than the allowed skew ahead of the service clock.
    #[error("the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")]
    TimestampSkew,
    /// The key is protected by a fencing token and the request carries none.
    #[error("a fencing token is required for this request")]
    FencingTokenRequired,
    /// The request `__ft` is more than the allowed skew ahead of the service clock.
    #[error("the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")]
    FencingTokenSkew,
    /// The request `__ft` is older than the token protecting the key.
    #[error("the request fencing token is a lower version than the fencing token protecting the resource")]
    FencingTokenLowerVersion,
    /// A quota of the store is exhausted.
    #[error("the quota has been exceeded")]
    QuotaExceeded,
    /// The request payload or an option is malformed.
    #[error("syntax error")]
    SyntaxError,
    /// The client may not do this.
    #[error("not authorized")]
    NotAuthorized,
    /// The verb is not known.
    #[error("unknown command")]
    UnknownCommand,
    /// The verb got too few or too many arguments.
    #[error("wrong number of arguments")]
    WrongNumberOfArguments,
    /// The request carries no `__ts`.
    #[error("missing timestamp")]
    TimestampMissing,
    /// The request `__ts` (or `__ft`) is not an HLC.
    #[error("malformed timestamp")]
    TimestampMalformed,
    /// The key is empty.
    #[error("the key length is zero")]
    KeyLengthZero,
    /// Any other text, kept as received.
    #[error("{0}")]
    Unknown(String),
}

impl ServiceError {
    /// Every known error, in docs/PROTOCOL.md §3 order.
    pub const KNOWN: [ServiceError; 12] = [
        ServiceError::TimestampSkew,
        ServiceError::FencingTokenRequired,
        ServiceError::FencingTokenSkew,
        ServiceError::FencingTokenLowerVersion,
        ServiceError::QuotaExceeded,
        ServiceError::SyntaxError,
        ServiceError::NotAuthorized,
        ServiceError::UnknownCommand,
        ServiceError::WrongNumberOfArguments,
        ServiceError::TimestampMissing,
        ServiceError::TimestampMalformed,
        ServiceError::KeyLengthZero,
    ];

    /// The exact text the service sends (after `-ERR `).
    pub fn text(&self) -> &str {
        match self {
            ServiceError::TimestampSkew => "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
            ServiceError::FencingTokenRequired => "a fencing token is required for this request",
            ServiceError::FencingTokenSkew => "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized",
            ServiceError::FencingTokenLowerVersion => "the request fencing token is a lower version than the fencing token protecting the resource",
            ServiceError::QuotaExceeded => "the quota has been exceeded",
            ServiceError::SyntaxError => "syntax error",
            ServiceError::NotAuthorized => "not authorized",
            ServiceError::UnknownCommand => "unknown command",
            ServiceError::WrongNumberOfArguments => "wrong number of arguments",
            ServiceError::TimestampMissing => "missing timestamp",
            ServiceError::TimestampMalformed => "malformed timestamp",
            ServiceError::KeyLengthZero => "the key length is zero",
            ServiceError::Unknown(text) => text,
        }
    }

    /// The error with this exact text (case-sensitive); `Unknown(text)` for any other text.
    pub fn from_text(text: &str) -> ServiceError {
        ServiceError::KNOWN
            .into_iter()
            .find(|e| e.text() == text)
            .unwrap_or_else(|| ServiceError::Unknown(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_display() {
        for e in ServiceError::KNOWN {
            assert_eq!(ServiceError::from_text(e.text()), e);
            assert_eq!(e.to_string(), e.text());
        }
        let u = ServiceError::from_text("the request fencing token is a lower version that the fencing token protecting the resource");
        assert!(matches!(u, ServiceError::Unknown(_)));
        assert_eq!(
            ServiceError::from_text("Syntax Error"),
            ServiceError::Unknown("Syntax Error".into())
        );
        assert_eq!(ServiceError::Unknown("x y".into()).to_string(), "x y");
        assert_eq!(ServiceError::Unknown("x y".into()).text(), "x y");
    }
}
