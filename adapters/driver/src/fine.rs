//! Wake-ups finer than a runtime's timers.
//!
//! tokio's timers have a resolution of one millisecond, and round every deadline up to the next
//! tick: a deadline 200 µs away fires after 1–2 ms. The engine's short delays (the retry jitter
//! after a DELETE, the release hold-back) are meant in microseconds, and a lock handoff is a few
//! hundred microseconds on a LAN. For deadlines less than [`FINE_WINDOW`] away the driver asks
//! this module instead: one background thread for the whole process sleeps until the earliest
//! registered instant (the kernel's timers, tens of microseconds late at most) and wakes the task
//! that registered it. The thread is started on first use and idles on a condition variable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Deadlines closer than this go to the fine timer thread; later ones to the runtime's timer.
pub(crate) const FINE_WINDOW: Duration = Duration::from_millis(2);

/// A registered wake-up.
struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

fn shared() -> &'static Arc<Shared> {
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        // If the thread cannot be started, registered tasks are still woken by the runtime's
        // timer, which the driver keeps armed (later, at the runtime's resolution).
        let _ = std::thread::Builder::new()
            .name("leasedlock-fine-timer".into())
            .spawn(move || run(&worker));
        shared
    })
}

/// Wakes `waker` at `at` (or a little later).
pub(crate) fn wake_at(at: Instant, waker: &Waker) {
    let shared = shared();
    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    queue.seq += 1;
    let seq = queue.seq;
    let earliest = queue.heap.peek().is_none_or(|Reverse(e)| at < e.at);
    queue.heap.push(Reverse(Entry {
        at,
        seq,
        waker: waker.clone(),
    }));
    drop(queue);
    if earliest {
        shared.changed.notify_one();
    }
}

fn run(shared: &Shared) {
    let mut due = Vec::new();
    loop {
        let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            #[allow(clippy::disallowed_methods)] // an adapter: the clock is read here
            let now = Instant::now();
            while queue.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = queue.heap.pop() {
                    due.push(e.waker);
                }
            }
            if !due.is_empty() {
                break;
            }
            queue = match queue.heap.peek().map(|Reverse(e)| e.at - now) {
                Some(wait) => {
                    shared
                        .changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => shared
                    .changed
                    .wait(queue)
                    .unwrap_or_else(|p| p.into_inner()),
            };
        }
        drop(queue);
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::task::Wake;

    struct Signal(AtomicUsize, Mutex<mpsc::Sender<()>>);

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            let _ = self.1.lock().unwrap().send(());
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test reads the clock
    fn wakes_each_registered_task_once_at_or_after_its_instant() {
        let (tx, rx) = mpsc::channel();
        let signal = Arc::new(Signal(AtomicUsize::new(0), Mutex::new(tx)));
        let waker = Waker::from(Arc::clone(&signal));
        let start = Instant::now();
        let instants: Vec<Instant> = [300u64, 100, 200]
            .iter()
            .map(|us| start + Duration::from_micros(*us))
            .collect();
        for at in &instants {
            wake_at(*at, &waker);
        }
        for _ in &instants {
            rx.recv().unwrap();
        }
        // Never early: every wake-up came after the latest instant had passed, or in order.
        assert!(Instant::now() >= *instants.iter().max().unwrap());
        assert_eq!(signal.0.load(Ordering::SeqCst), 3);
    }
}
