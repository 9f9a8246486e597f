//! The `leasedlock` binary end to end, against mosquitto and the state-store emulator of the
//! test kit. Every wait is for a condition (a file's lines, a process's exit) with a generous
//! bound; no assertion depends on how long something took.
#![allow(clippy::disallowed_methods)] // the test is a driver: it reads the clock for its bounds

use leasedlock_testkit::{Broker, Proxy, StoreEmulator};
use leasedlock_tokio::leasedlock::FencingToken;
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The bound on every wait: far above what any step needs.
const BOUND: Duration = Duration::from_secs(30);

/// The statuses of `leasedlock` (its `--help` and README list them).
const NO: i32 = 1;
const USAGE: i32 = 2;
const UNAVAILABLE: i32 = 69;
const BUSY: i32 = 75;
const LOST: i32 = 76;
const FENCED: i32 = 77;

/// A broker with the state store on it, and a directory for the commands' files.
struct Setup {
    broker: Broker,
    _store: StoreEmulator,
    dir: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let broker = Broker::start();
        let store = StoreEmulator::start(broker.addr());
        let dir = std::env::temp_dir().join(format!(
            "leasedlock-cli-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Setup {
            broker,
            _store: store,
            dir,
        }
    }

    /// `leasedlock` connected to the broker directly.
    fn cli(&self) -> Command {
        cli(self.broker.addr())
    }

    /// A file of the test's directory.
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `leasedlock --broker ADDR`, with none of the AIO variables of the test's environment.
fn cli(broker: SocketAddr) -> Command {
    let mut command = bare_cli();
    command.args(["--broker", &broker.to_string()]);
    command
}

fn bare_cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leasedlock"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    command
}

/// Runs to the end (within the bound) and returns the output.
fn output(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    rx.recv_timeout(BOUND)
        .expect("leasedlock did not exit within the bound")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `leasedlock` started in the background: killed if the test ends before it exited. Its
/// stdout and stderr go nowhere, so that no process the test leaves behind holds the test's.
struct Running(Child);

impl Running {
    fn start(command: &mut Command) -> Running {
        Running(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Waits (within the bound) for it to exit.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "leasedlock did not exit within the bound"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.0.id()).unwrap()).unwrap();
        kill_process(pid, signal).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls the file until `done` says its lines are complete.
fn wait_for_lines(path: &Path, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + BOUND;
    loop {
        let lines = lines(path);
        if done(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn token(text: &str) -> FencingToken {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a fencing token"))
}

/// A shell command (its `$1` is `id`) as the CMD of `run` or `elect`.
fn sh(script: &str, id: &str) -> [String; 5] {
    ["sh", "-c", script, "sh", id].map(String::from)
}

#[test]
fn runs_on_one_lock_never_overlap() {
    let setup = Setup::start();
    let log = setup.file("log");
    let script = format!(
        "echo \"start $1 $LEASEDLOCK_NAME $LEASEDLOCK_TOKEN\" >> {log}; sleep 0.2; \
         echo \"end $1\" >> {log}",
        log = log.display()
    );
    let mut runs: Vec<Running> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            Running::start(
                setup
                    .cli()
                    .args(["run", "L", "--lease", "2s", "--"])
                    .args(sh(&script, id)),
            )
        })
        .collect();
    for run in &mut runs {
        assert!(run.exit().success());
    }
    let lines = lines(&log);
    assert_eq!(lines.len(), 6, "{lines:?}");
    let mut tokens = Vec::new();
    for pair in lines.chunks(2) {
        let start: Vec<&str> = pair[0].split(' ').collect();
        assert_eq!(&start[..3], ["start", start[1], "L"], "{lines:?}");
        assert_eq!(pair[1], format!("end {}", start[1]), "{lines:?}");
        tokens.push(token(start[3]));
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "each holder's token is greater than the one before: {lines:?}"
    );

    // With --json, run reports its lifecycle on stderr.
    let out = output(setup.cli().args(["--json", "run", "L", "--", "true"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events[0].starts_with(r#"{"lock":"L","event":"acquired","token":""#),
        "{events:?}"
    );
    assert_eq!(
        events[1..],
        [
            r#"{"lock":"L","event":"released","was_held":true}"#,
            r#"{"lock":"L","event":"exited","status":0}"#
        ]
    );

    // The command's status is run's.
    let out = output(setup.cli().args(["run", "L", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = output(
        setup
            .cli()
            .args(["run", "L", "--", "sh", "-c", "kill -TERM $$"]),
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
    let out = output(setup.cli().args(["run", "L", "--", "/nonexistent/cmd"]));
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn a_lost_lease_stops_the_command_before_the_next_holder_starts() {
    let setup = Setup::start();
    let proxy = Proxy::start(setup.broker.addr());
    let log = setup.file("log");
    let first = format!(
        "trap 'echo \"term $1\" >> {log}; exit 0' TERM; echo \"start $1\" >> {log}; \
         while :; do sleep 1; done",
        log = log.display()
    );
    let events = setup.file("events");
    let mut a = Running(
        cli(proxy.addr())
            .args([
                "--json", "run", "L", "--lease", "2s", "--grace", "10s", "--",
            ])
            .args(sh(&first, "a"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&events).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_lines(&log, "a's start", |l| !l.is_empty());
    let second = format!("echo \"start $1\" >> {}", log.display());
    let mut b = Running::start(
        setup
            .cli()
            .args(["run", "L", "--lease", "2s", "--"])
            .args(sh(&second, "b")),
    );
    // a's renewals no longer reach the broker.
    proxy.hold();
    assert_eq!(a.exit().code(), Some(LOST));
    assert!(b.exit().success());
    assert_eq!(lines(&log), ["start a", "term a", "start b"]);
    // The command's stderr is there too (the shell reports its `sleep` killed).
    let events: Vec<String> = lines(&events)
        .into_iter()
        .filter(|l| l.starts_with('{'))
        .collect();
    assert_eq!(events.len(), 3, "acquired, lost, exited: {events:?}");
    assert!(
        events[1].starts_with(r#"{"lock":"L","event":"lost","reason":""#),
        "{events:?}"
    );
    assert_eq!(events[2], r#"{"lock":"L","event":"exited","status":76}"#);
}

#[test]
fn a_signal_to_run_goes_to_the_command_and_the_lock_is_released() {
    let setup = Setup::start();
    let log = setup.file("log");
    let script = format!(
        "trap 'echo \"$1 got TERM\" >> {log}; exit 3' TERM; echo start >> {log}; \
         while :; do sleep 1; done",
        log = log.display()
    );
    let mut run = Running::start(
        setup
            .cli()
            .args(["run", "L", "--"])
            .args(sh(&script, "cmd")),
    );
    wait_for_lines(&log, "the command's start", |l| !l.is_empty());
    run.signal(Signal::TERM);
    assert_eq!(run.exit().code(), Some(3), "the command's status");
    assert_eq!(lines(&log), ["start", "cmd got TERM"]);
    let out = output(setup.cli().args(["holder", "L"]));
    assert_eq!(out.status.code(), Some(NO), "released: {}", stdout(&out));
}

#[test]
fn elect_hands_over_when_the_leader_is_killed() {
    let setup = Setup::start();
    let log = setup.file("log");
    // `exec`: the command's pid is its process group, which outlives a killed leasedlock.
    let script = format!(
        "echo \"leader $1 $$ $LEASEDLOCK_TOKEN\" >> {}; exec sleep 60 >/dev/null 2>&1",
        log.display()
    );
    let mut electors: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| {
            Running::start(
                setup
                    .cli()
                    .args(["elect", "L", "--lease", "2s", "--grace", "10s", "--"])
                    .args(sh(&script, id)),
            )
        })
        .collect();
    let first = wait_for_lines(&log, "a leader", |l| !l.is_empty());
    let first: Vec<&str> = first[0].split(' ').collect();
    let leader = usize::from(first[1] == "b");
    electors[leader].signal(Signal::KILL);
    electors[leader].exit();
    let both = wait_for_lines(&log, "the next leader", |l| l.len() >= 2);
    let second: Vec<&str> = both[1].split(' ').collect();
    assert_ne!(first[1], second[1], "{both:?}");
    assert!(token(first[3]) < token(second[3]), "{both:?}");

    // The killed leader's command is an orphan now: the test stops it.
    let orphan = Pid::from_raw(first[2].parse().unwrap()).unwrap();
    let _ = kill_process_group(orphan, Signal::KILL);
    // The new leader stops its command and releases when told to stop.
    let survivor = &mut electors[1 - leader];
    survivor.signal(Signal::TERM);
    assert!(survivor.exit().success());
    let out = output(setup.cli().args(["holder", "L"]));
    assert_eq!(out.status.code(), Some(NO), "released: {}", stdout(&out));
}

#[test]
fn elect_stops_the_command_on_a_loss_and_campaigns_again() {
    let setup = Setup::start();
    let proxy = Proxy::start(setup.broker.addr());
    let log = setup.file("log");
    let script = format!(
        "trap 'echo \"stop $1\" >> {log}; exit 0' TERM; echo \"leader $1\" >> {log}; \
         while :; do sleep 1; done",
        log = log.display()
    );
    let elect = |broker: SocketAddr, id: &str| {
        Running::start(
            cli(broker)
                .args(["elect", "L", "--lease", "2s", "--"])
                .args(sh(&script, id)),
        )
    };
    let mut a = elect(proxy.addr(), "a");
    wait_for_lines(&log, "a leading", |l| !l.is_empty());
    let mut b = elect(setup.broker.addr(), "b");
    // a's renewals stop reaching the broker: a stops its command, b takes over.
    proxy.hold();
    wait_for_lines(&log, "b leading", |l| l.len() >= 3);
    // a's connection flows again: a campaigns, and leads again once b steps down.
    proxy.release();
    b.signal(Signal::TERM);
    assert!(b.exit().success());
    let terms = wait_for_lines(&log, "a leading again", |l| l.len() >= 5);
    assert_eq!(
        terms,
        ["leader a", "stop a", "leader b", "stop b", "leader a"]
    );
    // Told to stop, elect passes the signal on to its command.
    a.signal(Signal::TERM);
    assert!(a.exit().success());
    assert_eq!(lines(&log).last().map(String::as_str), Some("stop a"));
}

#[test]
fn no_wait_on_a_busy_lock_exits_busy() {
    let setup = Setup::start();
    let ran = setup.file("ran");
    let touch = [
        "sh".to_owned(),
        "-c".into(),
        format!("echo ran >> {}", ran.display()),
    ];
    let out = output(
        setup
            .cli()
            .args(["--client-id", "owner", "acquire", "L", "--lease", "1m"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let run = |how: &[&str]| {
        output(
            setup
                .cli()
                .arg("run")
                .arg("L")
                .args(how)
                .arg("--")
                .args(&touch),
        )
    };
    let out = run(&["--no-wait"]);
    assert_eq!(out.status.code(), Some(BUSY), "{}", stderr(&out));
    assert!(stderr(&out).contains("held by another"), "{}", stderr(&out));
    let out = run(&["--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(BUSY), "{}", stderr(&out));
    let out = output(
        setup
            .cli()
            .args(["--json", "--client-id", "other", "try-acquire", "L"]),
    );
    assert_eq!(out.status.code(), Some(BUSY));
    assert_eq!(stdout(&out).trim(), r#"{"lock":"L","acquired":false}"#);
    assert!(!ran.exists(), "no command ran while the lock was busy");

    let out = output(setup.cli().args(["--client-id", "owner", "release", "L"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--no-wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&ran), ["ran"]);
}

#[test]
fn holder_acquire_release_and_json() {
    let setup = Setup::start();
    let out = output(setup.cli().args(["holder", "L"]));
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(NO), ""));
    let out = output(setup.cli().args(["holder", "L", "--json"]));
    assert_eq!(out.status.code(), Some(NO));
    assert_eq!(stdout(&out).trim(), r#"{"lock":"L","held":false}"#);

    // watch prints the holder, then every change.
    let mut watch = Running(
        setup
            .cli()
            .args(["watch", "L", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, seen) = mpsc::channel();
    let watched = BufReader::new(watch.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in watched.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let next = || seen.recv_timeout(BOUND).expect("a line from watch");
    assert_eq!(next(), r#"{"lock":"L","held":false}"#);

    let me = ["--client-id", "me", "--session", "s1"];
    let out = output(setup.cli().args(me).args(["acquire", "L", "--lease", "1m"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let first = token(&stdout(&out));
    assert_eq!(
        next(),
        r#"{"lock":"L","held":true,"holder":"me:s1","client_id":"me","session":"s1"}"#
    );
    let out = output(setup.cli().args(["holder", "L"]));
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(0), "me (session s1)")
    );

    // Acquiring again as the same holder renews; the JSON has the token and the lease.
    let out = output(
        setup
            .cli()
            .args(me)
            .args(["--json", "try-acquire", "L", "--lease", "1m"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(
        json.starts_with(r#"{"lock":"L","acquired":true,"token":""#),
        "{json}"
    );
    assert!(json.trim_end().ends_with(r#","lease_ms":60000}"#), "{json}");
    let second = token(json.split('"').nth(9).unwrap());
    assert!(first < second, "{json}");

    // Another session of the same client id is another holder.
    let out = output(setup.cli().args(["--client-id", "me", "release", "L"]));
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(NO), "not held by us")
    );
    let out = output(setup.cli().args(me).args(["release", "L", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"lock":"L","released":true}"#);
    assert_eq!(next(), r#"{"lock":"L","held":false}"#);

    watch.signal(Signal::INT);
    assert!(watch.exit().success());

    // A reader that goes away ends watch quietly, with the status of SIGPIPE.
    let quiet = setup.file("watch-stderr");
    let mut watch = Running(
        setup
            .cli()
            .args(["watch", "L"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&quiet).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(watch.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "free\n");
    let out = output(setup.cli().args(me).args(["acquire", "L"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(watch.exit().code(), Some(128 + 13));
    assert_eq!(std::fs::read_to_string(&quiet).unwrap(), "");
    assert!(output(setup.cli().args(me).args(["release", "L"]))
        .status
        .success());

    // acquire, try-acquire and release need the holder's client id.
    let out = output(setup.cli().args(["release", "L"]));
    assert_eq!(out.status.code(), Some(USAGE));
    assert!(stderr(&out).contains("--client-id"), "{}", stderr(&out));
}

#[test]
fn errors_are_clear_and_do_not_hang() {
    let setup = Setup::start();
    let out = output(
        setup
            .cli()
            .args(["--client-id", "c", "acquire", "L", "--lease", "10x"]),
    );
    assert_eq!(out.status.code(), Some(USAGE));
    assert!(
        stderr(&out).contains(r#"bad duration "10x""#),
        "{}",
        stderr(&out)
    );

    let out = output(bare_cli().args(["holder", "L"]));
    assert_eq!(out.status.code(), Some(USAGE));
    let message = stderr(&out);
    assert!(
        message.contains("--broker") && message.contains("AIO_BROKER_HOSTNAME"),
        "{message}"
    );

    // A closed port: the connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = output(cli(closed).args(["holder", "L"]));
    assert_eq!(out.status.code(), Some(UNAVAILABLE));
    let message = stderr(&out);
    assert!(
        message.contains(&closed.to_string()) && message.contains("refused"),
        "{message}"
    );

    // A port that accepts TCP but never answers MQTT: the connect timeout bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = output(cli(silent.local_addr().unwrap()).args([
        "--connect-timeout",
        "300ms",
        "holder",
        "L",
    ]));
    assert_eq!(out.status.code(), Some(UNAVAILABLE), "{}", stderr(&out));

    // The broker refuses a wrong password (mosquitto only: the embedded broker has no users).
    if !setup.broker.is_mosquitto() {
        return;
    }
    let secured = Broker::builder().user("alice", "right").start();
    let password = setup.file("password");
    std::fs::write(&password, "wrong").unwrap();
    let out = output(cli(secured.secure_addr().unwrap()).args([
        "--username",
        "alice",
        "--password-file",
        password.to_str().unwrap(),
        "holder",
        "L",
    ]));
    assert_eq!(out.status.code(), Some(UNAVAILABLE), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the connection"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_are_read_written_and_fenced() {
    let setup = Setup::start();
    let run = |args: &[&str]| output(setup.cli().args(args));
    let out = run(&["get", "k"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(NO), ""));
    assert!(run(&["set", "k", "v1"]).status.success());
    let out = run(&["get", "k"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "v1\n")
    );
    let out = run(&["--json", "get", "k"]);
    assert_eq!(
        stdout(&out).trim(),
        r#"{"key":"k","found":true,"value":"v1"}"#
    );

    // Two holders of the lock in turn: the first one's token no longer writes.
    let holder = |id: &str| {
        let out = run(&["--client-id", id, "acquire", "L", "--lease", "1m"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(run(&["--client-id", id, "release", "L"]).status.success());
        stdout(&out).trim().to_owned()
    };
    let (old, new) = (holder("first"), holder("second"));
    let out = run(&["set", "k", "v2", "--fence", &old]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--json", "set", "k", "v3", "--fence", &new]);
    assert_eq!(stdout(&out).trim(), r#"{"key":"k","written":true}"#);
    let out = run(&["set", "k", "v4", "--fence", &old]);
    assert_eq!(out.status.code(), Some(FENCED), "{}", stderr(&out));
    assert!(stderr(&out).contains("fencing token"), "{}", stderr(&out));
    let out = run(&["del", "k", "--fence", &old]);
    assert_eq!(out.status.code(), Some(FENCED), "{}", stderr(&out));
    assert_eq!(stdout(&run(&["get", "k"])), "v3\n");

    let out = run(&["del", "k", "--fence", &new]);
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(0), "deleted")
    );
    let out = run(&["--json", "del", "k"]);
    assert_eq!(out.status.code(), Some(NO));
    assert_eq!(stdout(&out).trim(), r#"{"key":"k","deleted":false}"#);
    assert_eq!(
        run(&["set", "k", "v", "--fence", "nonsense"]).status.code(),
        Some(USAGE)
    );
}
