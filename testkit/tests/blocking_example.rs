//! Smoke test: the root crate's `examples/blocking.rs` against a broker and the emulator.
//!
//! The example is built by a nested `cargo build --example blocking -p leasedlock` (a no-op when
//! `cargo test --workspace` already built it) and its binary run with `--broker`.
#![allow(clippy::disallowed_methods)] // the test is the driver

use leasedlock_testkit::{Broker, StoreEmulator};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the example itself needs about 3 s.
const TIMEOUT: Duration = Duration::from_secs(60);

fn example_binary() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "blocking", "-p", "leasedlock"])
        .current_dir(&workspace)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the blocking example failed");
    // target/debug/deps/<test> → target/debug/examples/blocking
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(format!("blocking{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn blocking_example_succeeds() {
    let binary = example_binary();
    let broker = Broker::start();
    let _store = StoreEmulator::start(broker.addr());
    let mut child = Command::new(&binary)
        .args(["--broker", &broker.addr().to_string()])
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
            panic!("the blocking example did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("renewed (2)"), "{stdout}");
    assert!(stdout.contains("counter written"), "{stdout}");
}
