//! Smoke tests of the runnable examples: `examples/blocking.rs` (root crate) and
//! `adapters/rumqttc/examples/rumqttc.rs` against a broker and the emulator (`--broker`), and
//! `examples/demo.rs` in its zero-setup form (embedded broker and emulator in-process).
//!
//! Each example is built by a nested `cargo build --example NAME -p PACKAGE` (a no-op when
//! `cargo test --workspace` already built it) and its binary run with `--broker`.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_testkit::{Broker, StoreEmulator};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the examples need about 3 s.
const TIMEOUT: Duration = Duration::from_secs(60);

fn example_binary(package: &str, name: &str) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", name, "-p", package])
        .current_dir(&workspace)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the example {name} failed");
    // target/debug/deps/<test> → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs the example against a fresh broker and emulator; returns its stdout once it exited 0.
fn run_example(package: &str, name: &str) -> String {
    let broker = Broker::start();
    let _store = StoreEmulator::start(broker.addr());
    run_binary(package, name, &["--broker", &broker.addr().to_string()])
}

/// Builds and runs the example with `args`; returns its stdout once it exited 0.
fn run_binary(package: &str, name: &str, args: &[&str]) -> String {
    let binary = example_binary(package, name);
    let mut child = Command::new(&binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example {name} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "{name}: exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn blocking_example_succeeds() {
    let stdout = run_example("leasedlock", "blocking");
    assert!(stdout.contains("renewed (2)"), "{stdout}");
    assert!(stdout.contains("counter written"), "{stdout}");
}

#[test]
fn rumqttc_example_succeeds() {
    let stdout = run_example("leasedlock-rumqttc", "rumqttc");
    assert!(stdout.contains("acquired, fencing token"), "{stdout}");
    assert!(stdout.contains("counter written"), "{stdout}");
}

#[test]
fn demo_runs_with_zero_setup() {
    let stdout = run_binary("leasedlock", "demo", &["--workers", "3", "--seconds", "1"]);
    assert!(stdout.contains("final counter = "), "{stdout}");
    assert!(stdout.contains("ok: "), "{stdout}");
}
