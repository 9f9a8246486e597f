//! The command line, parsed with `lexopt` into a [`Global`] part (connection, identity, output)
//! and a [`Command`]. Options may come before or after the subcommand; for `run` and `elect`
//! everything after the lock name's first following argument (or after `--`) is the command.

use crate::duration;
use crate::exit;
use leasedlock_tokio::leasedlock::FencingToken;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::time::Duration;

/// The lease when `--lease` is not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// How long `run` and `elect` give their command between SIGTERM and SIGKILL by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The bound on the first connection when `--connect-timeout` is not given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The options every subcommand takes.
#[derive(Debug)]
pub struct Global {
    /// `--broker HOST[:PORT]`.
    pub broker: Option<(String, Option<u16>)>,
    /// `--tls` (`Some(true)`) or `--no-tls` (`Some(false)`).
    pub tls: Option<bool>,
    /// `--ca-file`.
    pub ca_file: Option<String>,
    /// `--cert`.
    pub cert: Option<String>,
    /// `--key`.
    pub key: Option<String>,
    /// `--username`.
    pub username: Option<String>,
    /// `--password-file`.
    pub password_file: Option<String>,
    /// `--sat-file`.
    pub sat_file: Option<String>,
    /// `--client-id`.
    pub client_id: Option<String>,
    /// `--session`.
    pub session: Option<String>,
    /// `--connect-timeout`.
    pub connect_timeout: Duration,
    /// `--json`.
    pub json: bool,
}

/// How long `run` waits for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// As long as it takes.
    Forever,
    /// At most this long (`--timeout`).
    Timeout(Duration),
    /// One attempt (`--no-wait`).
    Once,
}

/// A command to run under the lock (`run`, `elect`).
#[derive(Debug)]
pub struct Supervised {
    /// The lock.
    pub name: String,
    /// The lease.
    pub lease: Duration,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The program and its arguments.
    pub cmd: Vec<OsString>,
}

/// A subcommand and its arguments.
#[derive(Debug)]
pub enum Command {
    /// `holder NAME`.
    Holder { name: String },
    /// `watch NAME`.
    Watch { name: String },
    /// `acquire NAME`.
    Acquire {
        name: String,
        lease: Duration,
        timeout: Option<Duration>,
    },
    /// `try-acquire NAME`.
    TryAcquire { name: String, lease: Duration },
    /// `release NAME`.
    Release { name: String },
    /// `run NAME -- CMD…`.
    Run { what: Supervised, wait: Wait },
    /// `elect NAME -- CMD…`.
    Elect { what: Supervised },
    /// `get KEY`.
    Get { key: String },
    /// `set KEY VALUE [--fence TOKEN]`.
    Set {
        key: String,
        value: String,
        fence: Option<FencingToken>,
    },
    /// `del KEY [--fence TOKEN]`.
    Del {
        key: String,
        fence: Option<FencingToken>,
    },
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Print this help text and exit 0.
    Help(String),
    /// Do this.
    Invocation(Box<Global>, Command),
}

/// One subcommand: its name, positional arguments, own options and help.
struct Sub {
    name: &'static str,
    args: &'static [&'static str],
    options: &'static [&'static str],
    summary: &'static str,
    help: &'static str,
}

impl Sub {
    /// Whether the subcommand runs a command (everything after its lock name).
    fn takes_cmd(&self) -> bool {
        self.name == "run" || self.name == "elect"
    }
}

const SUBS: &[Sub] = &[
    Sub {
        name: "holder",
        args: &["NAME"],
        options: &[],
        summary: "print who holds the lock (exit 0), or nothing when it is free (exit 1)",
        help: "Prints the holder of the lock: its client id and, when it gave one, its session id.
Prints nothing and exits 1 when the lock is free.",
    },
    Sub {
        name: "watch",
        args: &["NAME"],
        options: &[],
        summary: "print one line per holder change, until interrupted",
        help: "Prints the current holder, then one line each time the holder changes (\"free\" when
the lock is released or expires), until interrupted (SIGINT, SIGTERM: exit 0).",
    },
    Sub {
        name: "acquire",
        args: &["NAME"],
        options: &["lease", "timeout"],
        summary: "take the lock, waiting for it; print the fencing token",
        help:
            "Takes the lock, waiting as long as it is held by another (or until --timeout: exit 75),
and prints the fencing token. The lock stays held by this client id (and --session) until the
lease runs out or `leasedlock release` is run with the same --client-id and --session: nothing
renews it once this command has exited.",
    },
    Sub {
        name: "try-acquire",
        args: &["NAME"],
        options: &["lease"],
        summary: "one attempt to take the lock; print the token, or exit 75 when busy",
        help:
            "One attempt to take the lock: prints the fencing token, or exits 75 when another holds
it. As with acquire, the lock stays held until the lease runs out or it is released with the
same --client-id and --session.",
    },
    Sub {
        name: "release",
        args: &["NAME"],
        options: &[],
        summary: "release the lock if this client id (and --session) holds it",
        help: "Releases the lock when this client id (and --session) holds it: prints \"released\"
(exit 0), or \"not held by us\" (exit 1) when it is free or held by another. Use the same
--client-id and --session as the acquire.",
    },
    Sub {
        name: "run",
        args: &["NAME", "CMD [ARGS...]"],
        options: &["lease", "timeout", "no-wait", "grace"],
        summary: "run CMD under the lock, renewing it; release when CMD exits",
        help: "Waits for the lock, runs CMD with LEASEDLOCK_TOKEN (the fencing token) and
LEASEDLOCK_NAME (the lock) in its environment, renews the lease every third of it while CMD
runs, and releases the lock when CMD exits, exiting with CMD's status (128+N when it died of
signal N).

LEASEDLOCK_TOKEN is the token of the first acquisition. Renewals give newer tokens, but the
first stays a valid fence as long as the lock is ours: the store orders tokens, and the token of
any later holder is greater.

If the lease is lost while CMD runs (a renewal refused, the connection down too long, the
lease's validity over), CMD's process group gets SIGTERM, then SIGKILL after --grace, and run
exits 76. CMD runs in its own process group so that all of it is stopped; it does not get the
terminal's job control. SIGINT and SIGTERM to run are passed on to CMD's process group (SIGKILL
after --grace); the lock is released once CMD has exited.

A lease is trusted until its validity minus a safety margin (100 ms plus 1% of the lease) on
this machine's clock; a CMD that ignores SIGTERM may still run after that, until SIGKILL. Pass
LEASEDLOCK_TOKEN as a fence to the writes where that matters (leasedlock set --fence).",
    },
    Sub {
        name: "elect",
        args: &["NAME", "CMD [ARGS...]"],
        options: &["lease", "grace"],
        summary: "run CMD only while leader; stop it when leadership is lost, campaign again",
        help: "Campaigns for the lock and runs CMD while it is held (LEASEDLOCK_TOKEN and
LEASEDLOCK_NAME as with run). When leadership is lost CMD's process group gets SIGTERM, then
SIGKILL after --grace, and elect campaigns again, starting CMD anew with the next token.

If CMD exits by itself elect releases the lock and exits with CMD's status. SIGINT or SIGTERM to
elect stops CMD (passing the signal on), releases the lock and exits 0.",
    },
    Sub {
        name: "get",
        args: &["KEY"],
        options: &[],
        summary: "print the value of a key of the state store (exit 1 when absent)",
        help: "Prints the value of the key, or nothing and exits 1 when the key is absent.",
    },
    Sub {
        name: "set",
        args: &["KEY", "VALUE"],
        options: &["fence"],
        summary: "write a key, optionally fenced with a lock's token",
        help: "Writes VALUE to the key. With --fence TOKEN (the LEASEDLOCK_TOKEN of run or elect, or the
token printed by acquire) the store refuses the write, exit 77, when the key was written with a
newer token: a later holder of the lock has taken over.",
    },
    Sub {
        name: "del",
        args: &["KEY"],
        options: &["fence"],
        summary: "delete a key, optionally fenced with a lock's token",
        help: "Deletes the key: prints \"deleted\" (exit 0), or \"no such key\" (exit 1). --fence TOKEN
as with set (exit 77 when the token is older than the key's).",
    },
];

/// The text of an option of a subcommand, for the help.
fn option_help(option: &str) -> &'static str {
    match option {
        "lease" => "    --lease DURATION       the lease (default 10s)\n",
        "timeout" => {
            "    --timeout DURATION     stop waiting for the lock after this long (exit 75)\n"
        }
        "no-wait" => {
            "    --no-wait              one attempt: exit 75 at once when the lock is busy\n"
        }
        "grace" => "    --grace DURATION       between SIGTERM and SIGKILL to CMD (default 5s)\n",
        "fence" => "    --fence TOKEN          a fencing token: refused when older than the key's (exit 77)\n",
        _ => "",
    }
}

const GLOBAL_HELP: &str = "\
Connection (default: the AIO SDK environment variables, see below):
    --broker HOST[:PORT]   the MQTT broker; replaces the environment's broker and TLS settings,
                           with TLS off unless --tls, --ca-file or --cert are given
                           (default port 1883, 18883 with TLS)
    --tls, --no-tls        TLS on or off
    --ca-file FILE         PEM CA certificates of the broker (else the system's store)
    --cert FILE, --key FILE
                           a client certificate and its unencrypted key (PEM)
    --username NAME        user name; with --password-file FILE, the password in FILE
    --sat-file FILE        a Kubernetes service account token (K8S-SAT)
    --connect-timeout DURATION
                           bound on connecting to the broker (default 10s)
Identity:
    --client-id ID         the MQTT client id, which is the holder's name; required by
                           acquire, try-acquire and release, else leasedlock-<pid>-<random>
    --session ID           a session id: the holder becomes CLIENT_ID:SESSION
Output:
    --json                 one JSON object per line (run, elect: their events, on stderr)
    -h, --help             help (also after a subcommand)

Durations: a whole number and a unit: 500ms, 10s, 2m, 1h.

Environment: AIO_BROKER_HOSTNAME, AIO_BROKER_TCP_PORT, AIO_MQTT_USE_TLS (default true),
AIO_TLS_CA_FILE, AIO_TLS_CERT_FILE, AIO_TLS_KEY_FILE, AIO_MQTT_USERNAME, AIO_MQTT_PASSWORD_FILE,
AIO_SAT_FILE, AIO_MQTT_CLIENT_ID, AIO_MQTT_KEEP_ALIVE, AIO_MQTT_SESSION_EXPIRY (default 0 here),
AIO_MQTT_CLEAN_START (default true here). A flag wins over its variable.
";

/// The help of the whole program.
fn main_help() -> String {
    let mut text = String::from(
        "leasedlock: leased locks on the Azure IoT Operations MQTT state store\n\n\
         Usage: leasedlock SUBCOMMAND [OPTIONS] NAME ...\n\nSubcommands:\n",
    );
    for sub in SUBS {
        text.push_str(&format!("    {:<13}{}\n", sub.name, sub.summary));
    }
    text.push_str("\nRun `leasedlock SUBCOMMAND --help` for one subcommand.\n\n");
    text.push_str(GLOBAL_HELP);
    text.push('\n');
    text.push_str(exit::TABLE);
    text
}

/// The help of one subcommand.
fn sub_help(sub: &Sub) -> String {
    let mut text = format!("Usage: leasedlock {} [OPTIONS]", sub.name);
    for arg in sub.args {
        text.push(' ');
        text.push_str(arg);
    }
    text.push_str("\n\n");
    text.push_str(sub.help);
    text.push_str("\n\n");
    if !sub.options.is_empty() {
        text.push_str("Options:\n");
        for option in sub.options {
            text.push_str(option_help(option));
        }
        text.push('\n');
    }
    text.push_str(GLOBAL_HELP);
    text.push('\n');
    text.push_str(exit::TABLE);
    text
}

/// The options of a subcommand, as given.
#[derive(Default)]
struct Own {
    lease: Option<Duration>,
    timeout: Option<Duration>,
    no_wait: bool,
    grace: Option<Duration>,
    fence: Option<FencingToken>,
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut global = Global {
        broker: None,
        tls: None,
        ca_file: None,
        cert: None,
        key: None,
        username: None,
        password_file: None,
        sat_file: None,
        client_id: None,
        session: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        json: false,
    };
    let mut sub: Option<&Sub> = None;
    let mut own = Own::default();
    let mut positional: Vec<String> = Vec::new();
    let mut cmd: Vec<OsString> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let own_option = |name: &str| -> Result<(), String> {
            match sub {
                Some(s) if s.options.contains(&name) => Ok(()),
                Some(s) => Err(format!("--{name} is not an option of {}", s.name)),
                None => Err(format!("--{name} comes after the subcommand")),
            }
        };
        match arg {
            Short('h') | Long("help") => {
                return Ok(Parsed::Help(sub.map_or_else(main_help, sub_help)))
            }
            Long("broker") => global.broker = Some(broker(&string(&mut parser)?)?),
            Long("tls") => global.tls = Some(true),
            Long("no-tls") => global.tls = Some(false),
            Long("ca-file") => global.ca_file = Some(string(&mut parser)?),
            Long("cert") => global.cert = Some(string(&mut parser)?),
            Long("key") => global.key = Some(string(&mut parser)?),
            Long("username") => global.username = Some(string(&mut parser)?),
            Long("password-file") => global.password_file = Some(string(&mut parser)?),
            Long("sat-file") => global.sat_file = Some(string(&mut parser)?),
            Long("client-id") => global.client_id = Some(string(&mut parser)?),
            Long("session") => global.session = Some(string(&mut parser)?),
            Long("connect-timeout") => global.connect_timeout = positive(&mut parser)?,
            Long("json") => global.json = true,
            Long("lease") => {
                own_option("lease")?;
                own.lease = Some(positive(&mut parser)?);
            }
            Long("timeout") => {
                own_option("timeout")?;
                own.timeout = Some(positive(&mut parser)?);
            }
            Long("no-wait") => {
                own_option("no-wait")?;
                own.no_wait = true;
            }
            Long("grace") => {
                own_option("grace")?;
                own.grace = Some(duration::parse(&string_of(parser.value())?)?);
            }
            Long("fence") => {
                own_option("fence")?;
                let text = string(&mut parser)?;
                own.fence = Some(
                    text.parse()
                        .map_err(|_| format!("bad --fence {text:?}: not a fencing token"))?,
                );
            }
            Value(value) if sub.is_none() => {
                let value = string_of(Ok(value))?;
                sub = Some(
                    SUBS.iter()
                        .find(|s| s.name == value)
                        .ok_or_else(|| format!("unknown subcommand {value:?}"))?,
                );
            }
            Value(value) => {
                if sub.is_some_and(Sub::takes_cmd) && positional.len() == 1 {
                    cmd.push(value);
                    cmd.extend(parser.raw_args().map_err(|e| e.to_string())?);
                } else {
                    positional.push(string_of(Ok(value))?);
                }
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let sub = sub.ok_or("no subcommand (see leasedlock --help)")?;
    let command = build(sub, positional, cmd, own)?;
    Ok(Parsed::Invocation(Box::new(global), command))
}

/// The command from its subcommand and arguments.
fn build(
    sub: &Sub,
    positional: Vec<String>,
    cmd: Vec<OsString>,
    own: Own,
) -> Result<Command, String> {
    let takes_cmd = sub.takes_cmd();
    let wanted = if takes_cmd { 1 } else { sub.args.len() };
    if positional.len() < wanted {
        return Err(format!(
            "{}: missing {} (see leasedlock {} --help)",
            sub.name,
            sub.args[positional.len()],
            sub.name
        ));
    }
    if positional.len() > wanted {
        return Err(format!(
            "{}: unexpected argument {:?}",
            sub.name, positional[wanted]
        ));
    }
    if takes_cmd && cmd.is_empty() {
        return Err(format!(
            "{}: missing CMD (leasedlock {} NAME -- CMD ARGS...)",
            sub.name, sub.name
        ));
    }
    let mut positional = positional.into_iter();
    let name = positional.next().unwrap_or_default();
    let fence = own.fence;
    let lease = own.lease.unwrap_or(DEFAULT_LEASE);
    let supervised = |cmd| Supervised {
        name: name.clone(),
        lease,
        grace: own.grace.unwrap_or(DEFAULT_GRACE),
        cmd,
    };
    Ok(match sub.name {
        "holder" => Command::Holder { name },
        "watch" => Command::Watch { name },
        "acquire" => Command::Acquire {
            name,
            lease,
            timeout: own.timeout,
        },
        "try-acquire" => Command::TryAcquire { name, lease },
        "release" => Command::Release { name },
        "run" => {
            let wait = match (own.timeout, own.no_wait) {
                (Some(_), true) => {
                    return Err("run: --timeout and --no-wait exclude each other".into())
                }
                (Some(t), false) => Wait::Timeout(t),
                (None, true) => Wait::Once,
                (None, false) => Wait::Forever,
            };
            Command::Run {
                what: supervised(cmd),
                wait,
            }
        }
        "elect" => Command::Elect {
            what: supervised(cmd),
        },
        "get" => Command::Get { key: name },
        "set" => Command::Set {
            key: name,
            value: positional.next().unwrap_or_default(),
            fence,
        },
        _ => Command::Del { key: name, fence },
    })
}

fn string(parser: &mut lexopt::Parser) -> Result<String, String> {
    string_of(parser.value())
}

fn string_of(value: Result<OsString, lexopt::Error>) -> Result<String, String> {
    value
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v| format!("{v:?} is not UTF-8"))
}

/// A duration that must not be zero (a lease, a timeout).
fn positive(parser: &mut lexopt::Parser) -> Result<Duration, String> {
    let text = string(parser)?;
    match duration::parse(&text)? {
        d if d.is_zero() => Err(format!("bad duration {text:?}: must not be zero")),
        d => Ok(d),
    }
}

/// `HOST[:PORT]`, with `[v6]:PORT` for IPv6 addresses.
fn broker(text: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("bad --broker {text:?}: expected HOST or HOST:PORT");
    let port = |p: &str| match p.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("bad --broker {text:?}: port {p:?} is not 1-65535")),
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after {
            "" => Ok((host.to_owned(), None)),
            _ => Ok((
                host.to_owned(),
                Some(port(after.strip_prefix(':').ok_or_else(bad)?)?),
            )),
        };
    }
    match text.split_once(':') {
        _ if text.is_empty() => Err(bad()),
        None => Ok((text.to_owned(), None)),
        Some((host, p)) if !host.is_empty() && !p.contains(':') => {
            Ok((host.to_owned(), Some(port(p)?)))
        }
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from))
    }

    fn command(args: &[&str]) -> (Global, Command) {
        match parse_str(args) {
            Ok(Parsed::Invocation(g, c)) => (*g, c),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn run_takes_the_rest_as_the_command() {
        let (global, cmd) = command(&[
            "--json",
            "run",
            "L",
            "--lease",
            "2s",
            "--no-wait",
            "sh",
            "-c",
            "echo --lease",
        ]);
        assert!(global.json);
        let Command::Run { what, wait } = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(what.name, "L");
        assert_eq!(what.lease, Duration::from_secs(2));
        assert_eq!(what.grace, DEFAULT_GRACE);
        assert_eq!(wait, Wait::Once);
        assert_eq!(what.cmd, ["sh", "-c", "echo --lease"]);

        let (_, cmd) = command(&["elect", "L", "--grace", "0s", "--", "--weird", "x"]);
        let Command::Elect { what } = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!((what.grace, what.cmd.len()), (Duration::ZERO, 2));
    }

    #[test]
    fn options_go_anywhere_but_only_where_they_belong() {
        let (global, cmd) = command(&["acquire", "L", "--client-id", "me", "--timeout", "1m"]);
        assert_eq!(global.client_id.as_deref(), Some("me"));
        assert!(matches!(
            cmd,
            Command::Acquire { timeout: Some(t), lease, .. }
                if t == Duration::from_secs(60) && lease == DEFAULT_LEASE
        ));
        for (args, error) in [
            (
                &["holder", "L", "--lease", "1s"][..],
                "not an option of holder",
            ),
            (
                &["--lease", "1s", "acquire", "L"],
                "comes after the subcommand",
            ),
            (&["acquire", "L", "--lease", "10x"], "bad duration \"10x\""),
            (&["acquire", "L", "--lease", "0s"], "must not be zero"),
            (&["acquire"], "missing NAME"),
            (&["acquire", "L", "M"], "unexpected argument \"M\""),
            (&["run", "L"], "missing CMD"),
            (
                &["run", "L", "--timeout", "1s", "--no-wait", "true"],
                "exclude each other",
            ),
            (&["frobnicate"], "unknown subcommand"),
            (&[], "no subcommand"),
            (&["holder", "L", "--bogus"], "--bogus"),
            (&["set", "k"], "missing VALUE"),
            (&["set", "k", "v", "--fence", "x"], "bad --fence \"x\""),
            (&["get", "k", "--fence", "x"], "not an option of get"),
        ] {
            let err = parse_str(args).unwrap_err();
            assert!(err.contains(error), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_everywhere() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["run", "--help"],
            &["holder", "L", "-h"],
        ] {
            assert!(
                matches!(parse_str(args), Ok(Parsed::Help(text)) if text.contains("Exit status"))
            );
        }
        let Ok(Parsed::Help(text)) = parse_str(&["run", "--help"]) else {
            unreachable!()
        };
        assert!(
            text.contains("--no-wait") && text.contains("LEASEDLOCK_TOKEN"),
            "{text}"
        );
    }

    #[test]
    fn broker_addresses() {
        assert_eq!(broker("h"), Ok(("h".into(), None)));
        assert_eq!(broker("h:1883"), Ok(("h".into(), Some(1883))));
        assert_eq!(broker("[::1]:8883"), Ok(("::1".into(), Some(8883))));
        assert_eq!(broker("[::1]"), Ok(("::1".into(), None)));
        for bad in ["", ":1", "h:0", "h:x", "h:1:2", "[::1", "[::1]x"] {
            assert!(broker(bad).is_err(), "{bad:?}");
        }
    }
}
