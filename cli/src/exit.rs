//! The exit statuses of `leasedlock`, defined once: `--help` and the README list the same.
//!
//! `run` and `elect` otherwise exit with their command's status (128 + the signal's number when
//! it died of a signal), so their own statuses are kept away from the common small ones.

/// Success: the lock is held (`holder`), was won (`acquire`, `try-acquire`), was released by us
/// (`release`); the key exists (`get`), was written (`set`) or deleted (`del`).
pub const OK: u8 = 0;
/// The answer is no: nobody holds the lock (`holder`), the release found it not held by us
/// (`release`), the key is absent (`get`, `del`).
pub const NO: u8 = 1;
/// A bad command line or setting: unknown option, bad duration, missing broker or client id,
/// unreadable TLS or password file.
pub const USAGE: u8 = 2;
/// The broker cannot be reached or refused the connection (or gave no answer within
/// `--connect-timeout`).
pub const UNAVAILABLE: u8 = 69;
/// An operation failed after connecting: the state store refused or did not answer.
pub const FAILED: u8 = 70;
/// The lock is held by someone else: `try-acquire`, `run --no-wait`, or `acquire`/`run` whose
/// `--timeout` ran out.
pub const BUSY: u8 = 75;
/// `run`: the lease was lost while the command ran; the command was stopped.
pub const LOST: u8 = 76;
/// `set`, `del`: the store refused the `--fence` token, older than the key's: a later holder of
/// the lock has written it.
pub const FENCED: u8 = 77;
/// `run`, `elect`: the command could not be executed (permission denied, not a program).
pub const CANNOT_EXECUTE: u8 = 126;
/// `run`, `elect`: the command was not found.
pub const NOT_FOUND: u8 = 127;

/// The reader of stdout went away (a closed pipe): the status of a process that SIGPIPE killed.
pub const CLOSED_STDOUT: u8 = 128 + 13;

/// The status of a process that died of signal `signal`, as shells report it.
pub fn signalled(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

/// The table of statuses, for `--help` (the README has the same).
pub const TABLE: &str = "\
Exit status:
    0    success: held, acquired, released by us; get: found; set: written; del: deleted
    1    no: holder: the lock is free; release: not held by us; get/del: no such key
    2    bad command line or setting (unknown option, bad duration, missing broker...)
    69   the broker cannot be reached, refused the connection or did not answer
    70   an operation failed (the state store refused or did not answer)
    75   busy: held by another (try-acquire, run --no-wait, --timeout ran out)
    76   run: the lease was lost while the command ran; the command was stopped
    77   set/del: the --fence token is older than the key's (a later holder wrote it)
    126  run/elect: the command cannot be executed
    127  run/elect: the command was not found
    141  stdout was closed (as a process killed by SIGPIPE): watch ... | head -1
    run and elect otherwise exit with the command's status (128+N if it died of signal N)
";
