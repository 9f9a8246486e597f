//! One SDK session carries both the SDK's state-store client and our lock (issue 12, item 4):
//! our lock rides on the session through `leasedlock-aio`. Another process runs the SDK's own
//! lock on the same lock name (`src/bin/sdk_lock_edits.rs`). Both edit one counter under the
//! lock; mutual exclusion holds when the counter ends at exactly the number of writes both
//! report.
//!
//! No sleep decides an outcome: the child is polled for its exit, bounded by
//! [`WAIT`](leasedlock_interop::WAIT) like every other wait.

use leasedlock::bytes::Bytes;
use leasedlock::lock::{EditAction, EditOutcome, Options};
use leasedlock_interop::sdk::state_store::SetOptions;
use leasedlock_interop::{within, Env, SDK_REQUEST_TIMEOUT as T, WAIT};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(10);
const ROUNDS: u32 = 20;
const COUNTER: &str = "counter";

/// The child process, killed if the test ends before it does.
struct Contender(Child);

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn counter(value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_lock_and_the_sdk_store_on_one_session_exclude_the_sdk_lock_of_another_process() {
    let env = Env::start("one-session");
    let app = env.sdk("app").await;
    let ours = app.attach_ours();
    within("our lock to see the session up", ours.client.connected())
        .await
        .unwrap();
    // The SDK's store client of the same session starts the counter.
    let started = app
        .store
        .set(
            COUNTER.into(),
            b"0".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await
        .unwrap();
    assert!(started.response);

    // Ours starts once the contender has written: the SDK's store client on the shared session
    // sees its first write as a notification, so that the two sides' edits overlap.
    let mut observation = app.store.observe(COUNTER.into(), T).await.unwrap().response;
    let mut child = Contender(
        Command::new(env!("CARGO_BIN_EXE_sdk_lock_edits"))
            .args([
                env.port().to_string(),
                env.client_id("child"),
                "L".into(),
                COUNTER.into(),
                ROUNDS.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the SDK's contender process"),
    );

    within(
        "the contender's first write",
        observation.recv_notification(),
    )
    .await
    .expect("a notification of the counter");

    let mut ours_written = 0;
    for _ in 0..ROUNDS {
        let outcome = within(
            "our edit",
            ours.client.edit(
                "L",
                COUNTER,
                LEASE,
                Options::default().with_timeout(WAIT),
                |current| async move {
                    let next = counter(current.as_deref()) + 1;
                    EditAction::Set(Bytes::from(next.to_string()))
                },
            ),
        )
        .await
        .unwrap();
        if outcome == EditOutcome::Written {
            ours_written += 1;
        }
    }

    let status = within("the SDK's contender to finish", async {
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            // Polling the child's exit; the outcome is in its report.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(status.success(), "the contender failed: {status}");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut report).unwrap();
    let theirs_written: u64 = report
        .trim()
        .strip_prefix("written ")
        .unwrap_or_else(|| panic!("the contender's report: {report:?}"))
        .parse()
        .unwrap();

    assert_eq!(
        ours_written,
        u64::from(ROUNDS),
        "every edit of ours written"
    );
    assert_eq!(theirs_written, u64::from(ROUNDS), "every write of theirs");
    let value = app.store.get(COUNTER.into(), T).await.unwrap().response;
    assert_eq!(
        counter(value.as_deref()),
        ours_written + theirs_written,
        "a lost update: the two held the lock at once"
    );
    ours.task.abort();
    app.close().await;
}
