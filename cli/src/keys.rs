//! The subcommands on keys of the state store: `get`, `set`, `del`, the writes optionally
//! fenced with a lock's token.

use crate::commands::op_failure;
use crate::connection::Connection;
use crate::exit;
use crate::output::{say, say_bytes, Json};
use crate::Failure;
use leasedlock_tokio::leasedlock::lock::OpError;
use leasedlock_tokio::leasedlock::store::ServiceError;
use leasedlock_tokio::leasedlock::FencingToken;
use leasedlock_tokio::Error;

/// The failure of a write, [`exit::FENCED`] when the store found its token stale.
fn write_failure(err: Error) -> Failure {
    match err {
        Error::Op(OpError::Service(ServiceError::FencingTokenLowerVersion)) => Failure::new(
            exit::FENCED,
            "the store refused the fencing token: the key was written with a newer one",
        ),
        err => op_failure(err),
    }
}

/// `get KEY`: the value (and a newline), exit 1 when absent.
pub async fn get(conn: &Connection, json: bool, key: &str) -> Result<u8, Failure> {
    let value = conn
        .client
        .get(key, conn.options.clone())
        .await
        .map_err(op_failure)?;
    if json {
        let found = Json::new("key", key).bool("found", value.is_some());
        match &value {
            Some(value) => found
                .str("value", &String::from_utf8_lossy(value))
                .print()?,
            None => found.print()?,
        }
    } else if let Some(value) = &value {
        say_bytes(value)?;
    }
    Ok(if value.is_some() { exit::OK } else { exit::NO })
}

/// `set KEY VALUE [--fence TOKEN]`.
pub async fn set(
    conn: &Connection,
    json: bool,
    key: &str,
    value: &str,
    fence: Option<&FencingToken>,
) -> Result<u8, Failure> {
    conn.client
        .set(key, value.to_owned(), fence.cloned(), conn.options.clone())
        .await
        .map_err(write_failure)?;
    if json {
        Json::new("key", key).bool("written", true).print()?;
    }
    Ok(exit::OK)
}

/// `del KEY [--fence TOKEN]`: exit 1 when the key was absent.
pub async fn del(
    conn: &Connection,
    json: bool,
    key: &str,
    fence: Option<&FencingToken>,
) -> Result<u8, Failure> {
    let existed = conn
        .client
        .delete(key, fence.cloned(), conn.options.clone())
        .await
        .map_err(write_failure)?;
    if json {
        Json::new("key", key).bool("deleted", existed).print()?;
    } else {
        say(if existed { "deleted" } else { "no such key" })?;
    }
    Ok(if existed { exit::OK } else { exit::NO })
}
