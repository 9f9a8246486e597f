//! `run` and `elect`: a command that runs only while the lock is held.
//!
//! The lease is watched two ways: the hold's events (a loss, the hold's end) and a timer at the
//! current lease's `valid_until`, so that the command is stopped when the validity ends even if
//! no event says so.

use crate::args::{Supervised, Wait};
use crate::child::{status_code, Child, Interrupts};
use crate::commands::op_failure;
use crate::connection::Connection;
use crate::exit;
use crate::output::Json;
use crate::Failure;
use leasedlock_tokio::leasedlock::lock::{LossReason, OpError};
use leasedlock_tokio::leasedlock::FencingToken;
use leasedlock_tokio::{Error, Hold, HoldEvent};
use rustix::process::Signal;
use std::process::ExitStatus;

/// How a command under the lock came to an end.
enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// The lease was lost (why).
    Lost(&'static str),
    /// `leasedlock` was sent this signal.
    Interrupted(Signal),
}

/// The lifecycle of `run` and `elect` on stderr (their stdout is the command's): JSON lines
/// with `--json`, else only what a person must know.
#[derive(Clone, Copy)]
pub struct Report<'a> {
    /// `--json`.
    pub json: bool,
    /// The lock.
    pub name: &'a str,
}

impl Report<'_> {
    fn event(self, event: &str) -> Json {
        Json::new("lock", self.name).str("event", event)
    }

    fn acquired(self, token: &FencingToken) {
        if self.json {
            self.event("acquired")
                .str("token", &token.to_string())
                .eprint();
        }
    }

    fn busy(self) {
        if self.json {
            self.event("busy").eprint();
        } else {
            eprintln!("leasedlock: {} is held by another", self.name);
        }
    }

    fn lost(self, why: &str) {
        if self.json {
            self.event("lost").str("reason", why).eprint();
        } else {
            eprintln!(
                "leasedlock: the lease of {} was lost ({why}): stopping the command",
                self.name
            );
        }
    }

    fn exited(self, status: u8) {
        if self.json {
            self.event("exited").num("status", status.into()).eprint();
        }
    }

    /// Ends the hold and reports whether the release found the lock still ours.
    async fn release(self, hold: Hold) {
        match hold.close().await {
            Ok(was_held) if self.json => self.event("released").bool("was_held", was_held).eprint(),
            Ok(_) => {}
            Err(e) => eprintln!("leasedlock: releasing {}: {e}", self.name),
        }
    }
}

/// What a loss's reason means.
fn loss(reason: &LossReason) -> &'static str {
    match reason {
        LossReason::RenewalRefused => "a renewal found the lock held by another",
        LossReason::ExpiredLocally => "no renewal succeeded in time",
        LossReason::Disconnected => "the connection was down for too long",
        LossReason::TakenAway => "the store reported the lock deleted or taken",
        _ => "the lease was lost",
    }
}

/// Waits until the command exits, the lease is lost or `leasedlock` is interrupted.
async fn supervise(
    hold: &mut Hold,
    child: &mut Child,
    interrupts: &mut Interrupts,
) -> Result<Ended, Failure> {
    loop {
        let Some(lease) = hold.lease() else {
            return Ok(Ended::Lost("the lease's validity ended without a renewal"));
        };
        tokio::select! {
            status = child.wait() => return Ok(Ended::Exited(status?)),
            event = hold.next_event() => match event {
                Some(HoldEvent::Lost(reason)) => return Ok(Ended::Lost(loss(&reason))),
                None => return Ok(Ended::Lost("the hold ended")),
                // Renewals, and an acquisition after a loss already reported.
                Some(_) => {}
            },
            // The loop's next turn asks the hold whether a renewal came in time.
            () = tokio::time::sleep_until(lease.valid_until.into()) => {}
            signal = interrupts.next() => return Ok(Ended::Interrupted(signal)),
        }
    }
}

/// Starts the command with the lock's name and token in its environment; when it cannot be
/// started, releases the lock.
async fn start(
    what: &Supervised,
    report: Report<'_>,
    hold: Hold,
    token: &FencingToken,
) -> Result<(Hold, Child), Failure> {
    report.acquired(token);
    let env = [
        ("LEASEDLOCK_TOKEN", token.to_string()),
        ("LEASEDLOCK_NAME", what.name.clone()),
    ];
    match Child::spawn(&what.cmd, &env) {
        Ok(child) => Ok((hold, child)),
        Err(e) => {
            report.release(hold).await;
            Err(e)
        }
    }
}

/// The hold `run` starts with; `None` when the lock is busy (`--no-wait`) or `--timeout` ran out.
async fn first_hold(
    conn: &Connection,
    what: &Supervised,
    wait: Wait,
) -> Result<Option<Hold>, Error> {
    let interval = what.lease / 3;
    let (client, options) = (&conn.client, conn.options.clone());
    let hold = |options| client.hold(&what.name, what.lease, interval, options);
    match wait {
        Wait::Forever => hold(options).await.map(Some),
        Wait::Timeout(timeout) => match hold(options.with_timeout(timeout)).await {
            Err(Error::Op(OpError::Timeout)) => Ok(None),
            other => other.map(Some),
        },
        // Exactly one attempt: try_hold answers busy at the store's first refusal, where a hold
        // with a short timeout would wait out its timeout (and might win meanwhile), and could
        // take a slow store for a busy lock. Its hold ends at the first loss, as run does.
        Wait::Once => {
            client
                .try_hold(&what.name, what.lease, interval, options)
                .await
        }
    }
}

/// `run NAME -- CMD`: see `leasedlock run --help`.
pub async fn run(
    conn: &Connection,
    what: &Supervised,
    wait: Wait,
    report: Report<'_>,
) -> Result<u8, Failure> {
    let mut interrupts = Interrupts::catch()?;
    let hold = tokio::select! {
        hold = first_hold(conn, what, wait) => hold.map_err(op_failure)?,
        signal = interrupts.next() => return Ok(exit::signalled(signal.as_raw())),
    };
    let Some(hold) = hold else {
        report.busy();
        return Ok(exit::BUSY);
    };
    let Some(token) = hold.token() else {
        report.lost("the lease's validity ended before the command could start");
        return Ok(exit::LOST);
    };
    let (mut hold, mut child) = start(what, report, hold, &token).await?;
    let status = match supervise(&mut hold, &mut child, &mut interrupts).await? {
        Ended::Exited(status) => {
            report.release(hold).await;
            status_code(status)
        }
        Ended::Lost(why) => {
            // No re-acquisition while the command stops: dropping the hold releases the lock.
            drop(hold);
            report.lost(why);
            child.stop(Signal::TERM, what.grace).await?;
            exit::LOST
        }
        Ended::Interrupted(signal) => {
            let status = child.stop(signal, what.grace).await?;
            report.release(hold).await;
            status_code(status)
        }
    };
    report.exited(status);
    Ok(status)
}

/// `elect NAME -- CMD`: see `leasedlock elect --help`.
pub async fn elect(
    conn: &Connection,
    what: &Supervised,
    report: Report<'_>,
) -> Result<u8, Failure> {
    let mut interrupts = Interrupts::catch()?;
    let interval = what.lease / 3;
    loop {
        let campaign = conn
            .client
            .hold(&what.name, what.lease, interval, conn.options.clone());
        let mut hold = tokio::select! {
            hold = campaign => hold.map_err(op_failure)?,
            _ = interrupts.next() => return Ok(exit::OK),
        };
        // Leader while the hold has a lease; after a loss the hold campaigns by itself.
        loop {
            let Some(token) = hold.token() else {
                tokio::select! {
                    event = hold.next_event() => match event {
                        Some(_) => continue,
                        None => break,
                    },
                    _ = interrupts.next() => return Ok(exit::OK),
                }
            };
            let (started, mut child) = start(what, report, hold, &token).await?;
            hold = started;
            match supervise(&mut hold, &mut child, &mut interrupts).await? {
                Ended::Exited(status) => {
                    report.release(hold).await;
                    let status = status_code(status);
                    report.exited(status);
                    return Ok(status);
                }
                Ended::Interrupted(signal) => {
                    child.stop(signal, what.grace).await?;
                    report.release(hold).await;
                    return Ok(exit::OK);
                }
                Ended::Lost(why) => {
                    report.lost(why);
                    child.stop(Signal::TERM, what.grace).await?;
                }
            }
        }
    }
}
