//! The subcommands that inspect and change a lock: `holder`, `watch`, `acquire`, `try-acquire`,
//! `release`.

use crate::child::Interrupts;
use crate::connection::Connection;
use crate::exit;
use crate::output::{say, shown, Json};
use crate::Failure;
use leasedlock_tokio::leasedlock::lock::{Holder, OpError};
use leasedlock_tokio::{Change, Error, Lease};
use std::time::Duration;

/// The failure of an operation, with the status its kind calls for.
pub fn op_failure(err: Error) -> Failure {
    let status = match &err {
        Error::Intent(_) => exit::USAGE,
        Error::Refused(_) | Error::NotAccepted(_) | Error::Transport { .. } => exit::UNAVAILABLE,
        _ => exit::FAILED,
    };
    let message = match &err {
        Error::Op(OpError::Timeout) => {
            "the state store did not answer in time (is it running on this broker?)".to_owned()
        }
        _ => err.to_string(),
    };
    Failure::new(status, message)
}

/// Prints a holder: plain, `CLIENT_ID (session SESSION)` or `free_line` when free (nothing
/// when `None`); with `--json`, an object with `held` and the parsed holder.
fn print_holder(
    json: bool,
    name: &str,
    holder: Option<&Holder>,
    free_line: Option<&str>,
) -> Result<(), Failure> {
    if json {
        Json::new("lock", name).holder(holder).print()
    } else if let Some(holder) = holder {
        say(&shown(holder))
    } else if let Some(line) = free_line {
        say(line)
    } else {
        Ok(())
    }
}

/// `holder NAME`: exit 0 when held, 1 when free.
pub async fn holder(conn: &Connection, json: bool, name: &str) -> Result<u8, Failure> {
    let holder = conn
        .client
        .holder(name, conn.options.clone())
        .await
        .map_err(op_failure)?;
    print_holder(json, name, holder.as_ref(), None)?;
    Ok(if holder.is_some() { exit::OK } else { exit::NO })
}

/// `watch NAME`: the current holder, then each change, until SIGINT or SIGTERM.
pub async fn watch(conn: &Connection, json: bool, name: &str) -> Result<u8, Failure> {
    let mut interrupts = Interrupts::catch()?;
    // Observe first, read second: no change falls between the two.
    let mut observer = conn.client.observe(name).await.map_err(op_failure)?;
    let mut last = conn
        .client
        .holder(name, conn.options.clone())
        .await
        .map_err(op_failure)?;
    print_holder(json, name, last.as_ref(), Some("free"))?;
    loop {
        tokio::select! {
            change = observer.next() => match change {
                Some(Ok(change)) => {
                    let holder = match change {
                        Change::Held(holder) => Some(holder),
                        _ => None,
                    };
                    if holder != last {
                        print_holder(json, name, holder.as_ref(), Some("free"))?;
                        last = holder;
                    }
                }
                Some(Err(e)) => return Err(op_failure(Error::Op(e))),
                None => return Err(op_failure(Error::Closed)),
            },
            _ = interrupts.next() => return Ok(exit::OK),
        }
    }
}

/// Prints a lease won: its token (plain), or an object with `acquired`, `token`, `lease_ms`.
fn print_lease(json: bool, name: &str, lease: Duration, won: &Lease) -> Result<(), Failure> {
    if json {
        Json::new("lock", name)
            .bool("acquired", true)
            .str("token", &won.token.to_string())
            .num("lease_ms", lease.as_millis())
            .print()
    } else {
        say(&won.token.to_string())
    }
}

/// Says that the lock is busy, and returns the status for it.
fn busy(json: bool, name: &str, why: &str) -> Result<u8, Failure> {
    if json {
        Json::new("lock", name).bool("acquired", false).print()?;
    } else {
        eprintln!("leasedlock: {name} {why}");
    }
    Ok(exit::BUSY)
}

/// `acquire NAME`: waits (at most `timeout`), prints the token.
pub async fn acquire(
    conn: &Connection,
    json: bool,
    name: &str,
    lease: Duration,
    timeout: Option<Duration>,
) -> Result<u8, Failure> {
    let mut options = conn.options.clone();
    if let Some(timeout) = timeout {
        options = options.with_timeout(timeout);
    }
    match conn.client.acquire(name, lease, options).await {
        Ok(won) => {
            print_lease(json, name, lease, &won)?;
            Ok(exit::OK)
        }
        Err(Error::Op(OpError::Timeout)) => {
            busy(json, name, "is still held by another (--timeout)")
        }
        Err(e) => Err(op_failure(e)),
    }
}

/// `try-acquire NAME`: one attempt; prints the token, or exits busy.
pub async fn try_acquire(
    conn: &Connection,
    json: bool,
    name: &str,
    lease: Duration,
) -> Result<u8, Failure> {
    match conn
        .client
        .try_acquire(name, lease, conn.options.clone())
        .await
        .map_err(op_failure)?
    {
        Some(won) => {
            print_lease(json, name, lease, &won)?;
            Ok(exit::OK)
        }
        None => busy(json, name, "is held by another"),
    }
}

/// `release NAME`: exit 0 when the lock was ours, 1 when not.
pub async fn release(conn: &Connection, json: bool, name: &str) -> Result<u8, Failure> {
    let was_ours = conn
        .client
        .release(name, conn.options.clone())
        .await
        .map_err(op_failure)?;
    if json {
        Json::new("lock", name).bool("released", was_ours).print()?;
    } else {
        say(if was_ours {
            "released"
        } else {
            "not held by us"
        })?;
    }
    Ok(if was_ours { exit::OK } else { exit::NO })
}
