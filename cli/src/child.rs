//! The command of `run` and `elect`: started in a process group of its own, stopped with a
//! signal, then SIGKILL after a grace period; and the signals that interrupt `leasedlock`.

use crate::exit;
use crate::Failure;
use rustix::process::{kill_process_group, Pid, Signal};
use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// A running command; its process group has its pid as id.
pub struct Child {
    child: tokio::process::Child,
    group: Pid,
}

impl Child {
    /// Starts `cmd` with `env` added to the environment, in a new process group.
    pub fn spawn(cmd: &[OsString], env: &[(&str, String)]) -> Result<Child, Failure> {
        let (program, args) = cmd.split_first().expect("the parser requires a command");
        let shown = program.to_string_lossy();
        let mut command = tokio::process::Command::new(program);
        command.args(args).process_group(0);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().map_err(|e| {
            let status = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
            Failure::new(status, format!("cannot run {shown}: {e}"))
        })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .filter(|pid| *pid != Pid::INIT)
            .ok_or_else(|| Failure::new(exit::FAILED, format!("{shown}: no process id")))?;
        Ok(Child { child, group })
    }

    /// Waits for the command to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, Failure> {
        self.child
            .wait()
            .await
            .map_err(|e| Failure::new(exit::FAILED, format!("waiting for the command: {e}")))
    }

    /// Sends `signal` to the command's process group, then SIGKILL if it has not exited after
    /// `grace`; returns its exit status.
    pub async fn stop(&mut self, signal: Signal, grace: Duration) -> Result<ExitStatus, Failure> {
        self.signal(signal);
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        self.signal(Signal::KILL);
        self.wait().await
    }

    fn signal(&self, signal: Signal) {
        // ESRCH: the group has emptied meanwhile; nothing else can fail for our own child.
        let _ = kill_process_group(self.group, signal);
    }
}

/// The exit status of `leasedlock` for a command's status: its code, or 128 + its signal.
pub fn status_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => exit::signalled(signal),
        (None, None) => exit::FAILED,
    }
}

/// SIGINT and SIGTERM to `leasedlock`, caught from the start so that neither kills it.
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Catches SIGINT and SIGTERM.
    pub fn catch() -> Result<Interrupts, Failure> {
        let catch = |kind| {
            signal(kind).map_err(|e| Failure::new(exit::FAILED, format!("catching signals: {e}")))
        };
        Ok(Interrupts {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
        })
    }

    /// The next of them to arrive.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::INT,
            _ = self.term.recv() => Signal::TERM,
        }
    }
}
