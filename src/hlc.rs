//! (being written)
/// A fencing token.
pub struct FencingToken;
