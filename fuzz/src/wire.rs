//! Harnesses for the RESP3 and state-store decoders (being written).
