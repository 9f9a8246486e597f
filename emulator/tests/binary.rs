//! The `statestore-emulator` binary end to end: readiness line, serving, clean exit on SIGTERM
//! and SIGINT, `--help`.
#![allow(clippy::disallowed_methods)] // the test is the driver

mod support;

use leasedlock::store::StoreReply;
use leasedlock_testkit::Broker;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{get, set, Client, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_statestore-emulator");

/// The binary against `broker`, with its stdout lines on a channel.
fn spawn(broker: &Broker, client_id: &str, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args([
            "--broker",
            &broker.addr().to_string(),
            "--client-id",
            client_id,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn statestore-emulator");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (at most `TIMEOUT`) for the process to exit.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("statestore-emulator did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls the broker's log (at most `TIMEOUT`) for `line`; mosquitto only.
fn wait_log(broker: &Broker, line: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !broker.log().contains(line) {
        assert!(
            Instant::now() < deadline,
            "no {line:?} in the broker log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ready_serve_and_stop(signal: &str) {
    let broker = Broker::start();
    let id = format!("emulator-bin-{signal}-{}", std::process::id());
    let (mut child, lines) = spawn(&broker, &id, &["--max-keys", "1"]);
    let first = lines
        .recv_timeout(TIMEOUT)
        .expect("a readiness line on stdout");
    assert_eq!(
        first,
        format!("statestore-emulator ready on {}", broker.addr())
    );
    // Ready means serving, with the flags given.
    let mut c = Client::connect(broker.addr(), &format!("bin-client-{signal}"), 1 << 20);
    assert_eq!(c.request(set(b"a", "1")).unwrap().reply, StoreReply::Ok);
    assert_eq!(
        c.request(set(b"b", "2")).unwrap().reply.to_payload(),
        "-ERR the quota has been exceeded\r\n"
    );
    assert_eq!(
        c.request(get(b"a")).unwrap().reply,
        StoreReply::Value("1".into())
    );

    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status after SIG{signal}: {status}");
    if broker.is_mosquitto() {
        // "disconnected" is what mosquitto logs for a DISCONNECT packet ("closed its connection"
        // for a socket closed without one).
        wait_log(&broker, &format!("Client {id} disconnected."));
        assert!(!broker
            .log()
            .contains(&format!("Client {id} closed its connection")));
    }
    assert!(
        lines.recv_timeout(TIMEOUT).is_err(),
        "nothing more on stdout"
    );
}

#[test]
fn sigterm_disconnects_and_exits_0() {
    ready_serve_and_stop("TERM");
}

#[test]
fn sigint_disconnects_and_exits_0() {
    ready_serve_and_stop("INT");
}

#[test]
fn help_and_bad_arguments() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("usage: statestore-emulator"), "{text}");
    assert!(text.contains("log_dest topic") && text.contains("set_tcp_nodelay true"));
    let out = Command::new(BIN)
        .args(["--max-keys", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("statestore-emulator: --max-keys needs a whole number"),
        "{err}"
    );
}
