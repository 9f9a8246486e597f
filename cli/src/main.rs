//! `leasedlock`: leased locks on the Azure IoT Operations MQTT state store from the shell —
//! inspect and watch a lock, take and release it, run a command under it or only while leader.
//! See `leasedlock --help` and the README.
#![forbid(unsafe_code)]

mod args;
mod child;
mod commands;
mod connection;
mod duration;
mod exit;
mod keys;
mod output;
mod supervise;

use args::{Command, Global, Parsed};
use connection::Connection;
use std::process::ExitCode;
use supervise::Report;

/// Why `leasedlock` stops before its command is done: the exit status and a message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// The exit status (see [`exit`]).
    pub status: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A failure with this status and message.
    pub fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// An end with this status that needs no message.
    pub fn quiet(status: u8) -> Failure {
        Failure::new(status, "")
    }
}

fn main() -> ExitCode {
    let (global, command) = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Invocation(global, command)) => (global, command),
        Err(message) => return fail(Failure::new(exit::USAGE, message)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure::new(exit::FAILED, format!("starting: {e}"))),
    };
    match runtime.block_on(execute(&global, &command)) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    if !failure.message.is_empty() {
        eprintln!("leasedlock: {}", failure.message);
    }
    ExitCode::from(failure.status)
}

/// Connects, runs the command, disconnects.
async fn execute(global: &Global, command: &Command) -> Result<u8, Failure> {
    // These act for the holder the user names: a made-up client id would be nobody's.
    let identity = matches!(
        command,
        Command::Acquire { .. } | Command::TryAcquire { .. } | Command::Release { .. }
    );
    let settings = connection::settings(global, identity, |var| std::env::var(var).ok())?;
    let conn = Connection::open(global, &settings).await?;
    let json = global.json;
    let result = match command {
        Command::Holder { name } => commands::holder(&conn, json, name).await,
        Command::Watch { name } => commands::watch(&conn, json, name).await,
        Command::Acquire {
            name,
            lease,
            timeout,
        } => commands::acquire(&conn, json, name, *lease, *timeout).await,
        Command::TryAcquire { name, lease } => {
            commands::try_acquire(&conn, json, name, *lease).await
        }
        Command::Release { name } => commands::release(&conn, json, name).await,
        Command::Run { what, wait } => {
            let report = Report {
                json,
                name: &what.name,
            };
            supervise::run(&conn, what, *wait, report).await
        }
        Command::Elect { what } => {
            let report = Report {
                json,
                name: &what.name,
            };
            supervise::elect(&conn, what, report).await
        }
        Command::Get { key } => keys::get(&conn, json, key).await,
        Command::Set { key, value, fence } => {
            keys::set(&conn, json, key, value, fence.as_ref()).await
        }
        Command::Del { key, fence } => keys::del(&conn, json, key, fence.as_ref()).await,
    };
    conn.close().await;
    result
}
