//! End-to-end benchmark: `leasedlock` (tokio adapter) side by side with the official AIO Rust SDK,
//! both over one mosquitto (`set_tcp_nodelay true`) and the state-store emulator on loopback.
//!
//! ```text
//! cargo bench --manifest-path interop/Cargo.toml --bench e2e
//! ```
//!
//! Progress goes to stderr; the result table (markdown) to stdout. Knobs (environment):
//! `E2E_ONLY` (comma list of `floor,uncontended,handoff,contended,scale,rumqttc,herd,latency`),
//! `E2E_GETS` (2000), `E2E_UNCONTENDED_SECS` (6), `E2E_ROUNDS` (200), `E2E_WORKERS` (8),
//! `E2E_SECONDS` (10), `E2E_LOCKS` (10000), `E2E_SCALE_WINDOW_SECS` (30), `E2E_SCALE_IN_FLIGHT`
//! (100: first acquisitions in flight at once in the scale test), `E2E_SCALE_BURST` (1: also run
//! ours with every first acquisition at once; 0 skips it), `E2E_CONTENDED_JITTER_US` (3000: the
//! tuned retry jitter bound of the contended test), `E2E_HERDS` (`8,64,256`: contenders per herd
//! run), `E2E_HERD_SECS` (10), `E2E_DELAYS_MS` (`1,5,20`: one-way delays of the latency section),
//! `E2E_DELAY_GETS` (100), `E2E_DELAY_SECS` (4: uncontended cycles and contended edits per
//! delay), `E2E_DELAY_ROUNDS` (30: handoff rounds per delay), `E2E_SCALE_ACQUIRE_SECS` (120: a
//! scale child that has not held every lock by then reports how far it got and gives up).
//!
//! Section 7 (herds) runs the contended edit of section 4 with 8, 64 and 256 clients, one MQTT
//! connection each, all in this process, ours then the SDK's per size; the broker's CPU time is
//! read from `/proc/<pid>/stat` of the mosquitto child, the store's from the emulator thread's
//! `/proc/self/task/<tid>/stat`. Section 8 (latency) puts a [`DelayProxy`] between every client
//! and the broker (the store stays on loopback) and reports in units of the GET round trip
//! measured through it. The 100 000-lock row of the issue is section 5 with
//! `E2E_ONLY=scale E2E_LOCKS=100000` (opt-in: minutes of runtime and about 1 GB for the SDK).
//!
//! The scale measurement runs each client in a child process (this binary with `--scale-child`)
//! so that its CPU time and resident memory are the client's alone: the broker is another
//! process and the emulator a thread of this one.
//!
//! For profiling one client alone (heaptrack, perf, strace): `e2e --serve` starts a broker and
//! the emulator and prints `PORT <port>` (it runs until its stdin closes), and
//! `e2e --cycles-child <ours|sdk> <port> <cycles> [current]` runs that many uncontended acquire +
//! release cycles against it (on a current-thread runtime with `current`).

use leasedlock::bytes::Bytes;
use leasedlock::lock::{EditAction, EditOutcome, Options};
use leasedlock_interop::delay::DelayProxy;
use leasedlock_interop::leasedlock_tokio::{self, Client, Hold, Settings};
use leasedlock_interop::sdk::state_store::SetOptions;
use leasedlock_interop::{within, Env, Sdk, SDK_REQUEST_TIMEOUT as T, WAIT};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(10);
const SCALE_LEASE: Duration = Duration::from_secs(30);
const SCALE_INTERVAL: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scale-child") {
        scale_child(&args[i + 1..]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--cycles-child") {
        cycles_child(&args[i + 1..]);
        return;
    }
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    let knobs = Knobs::from_env();
    let env = Env::start("e2e");
    let runtime = runtime();
    let table = runtime.block_on(run(&env, &knobs));
    println!("{table}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

struct Knobs {
    only: Option<Vec<String>>,
    gets: usize,
    uncontended: Duration,
    rounds: usize,
    workers: usize,
    seconds: Duration,
    locks: usize,
    window: Duration,
    contended_jitter: Duration,
    in_flight: usize,
    herd_sizes: Vec<usize>,
    herd_seconds: Duration,
    delays: Vec<Duration>,
    delay_gets: usize,
    delay_seconds: Duration,
    delay_rounds: usize,
    scale_burst: bool,
    acquire_limit: Duration,
}

impl Knobs {
    fn from_env() -> Knobs {
        let num = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
                })
                .unwrap_or(default)
        };
        let list = |name: &str, default: &str| -> Vec<usize> {
            std::env::var(name)
                .unwrap_or_else(|_| default.to_owned())
                .split(',')
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name}: {v} is not a number"))
                })
                .collect()
        };
        Knobs {
            only: std::env::var("E2E_ONLY")
                .ok()
                .map(|v| v.split(',').map(str::to_owned).collect()),
            gets: num("E2E_GETS", 2000) as usize,
            uncontended: Duration::from_secs(num("E2E_UNCONTENDED_SECS", 6)),
            rounds: num("E2E_ROUNDS", 200) as usize,
            workers: num("E2E_WORKERS", 8) as usize,
            seconds: Duration::from_secs(num("E2E_SECONDS", 10)),
            locks: num("E2E_LOCKS", 10_000) as usize,
            window: Duration::from_secs(num("E2E_SCALE_WINDOW_SECS", 30)),
            contended_jitter: Duration::from_micros(num("E2E_CONTENDED_JITTER_US", 3000)),
            in_flight: num("E2E_SCALE_IN_FLIGHT", 100) as usize,
            herd_sizes: list("E2E_HERDS", "8,64,256"),
            herd_seconds: Duration::from_secs(num("E2E_HERD_SECS", 10)),
            delays: list("E2E_DELAYS_MS", "1,5,20")
                .into_iter()
                .map(|ms| Duration::from_millis(ms as u64))
                .collect(),
            delay_gets: num("E2E_DELAY_GETS", 100) as usize,
            delay_seconds: Duration::from_secs(num("E2E_DELAY_SECS", 4)),
            delay_rounds: num("E2E_DELAY_ROUNDS", 30) as usize,
            scale_burst: num("E2E_SCALE_BURST", 1) == 1,
            acquire_limit: Duration::from_secs(num("E2E_SCALE_ACQUIRE_SECS", 120)),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == section))
    }
}

/// The settings of our client with the retry jitter after a DELETE set to `0..=max`.
fn tuned(env: &Env, name: &str, jitter_max: Duration) -> Settings {
    let mut s = env.settings(name);
    s.lock.retry_jitter_min = Duration::ZERO;
    s.lock.retry_jitter_max = jitter_max;
    s
}

fn wait() -> Options {
    Options::default().with_timeout(WAIT)
}

async fn run(env: &Env, k: &Knobs) -> String {
    let mut out = String::new();
    let default_jitter = leasedlock::lock::Config::new("x").retry_jitter_max;
    let _ = writeln!(
        out,
        "| # | measure | leasedlock | SDK | leasedlock / SDK |\n|---|---|---|---|---|"
    );
    let ours = env.ours("floor-ours");
    let sdk = env.sdk("floor-sdk").await;

    // (1) The floor: one GET round trip.
    let mut rt = Duration::from_micros(600);
    if k.wants("floor") {
        eprintln!("floor: {} GETs each", k.gets);
        let (o, s) = floor(&ours.client, &sdk, k.gets).await;
        rt = o.p50.min(s.p50);
        row(
            &mut out,
            "1",
            "GET round trip p50 / p99 (**RT** = the smaller p50)",
            &format!("{} / {}", ms(o.p50), ms(o.p99)),
            &format!("{} / {}", ms(s.p50), ms(s.p99)),
            &ratio(s.p50.as_secs_f64(), o.p50.as_secs_f64()),
        );
    }
    let in_rt = |d: Duration| format!("{:.1} RT", d.as_secs_f64() / rt.as_secs_f64());

    // (2) Uncontended cycles: try_acquire + release vs the SDK lease acquire + release.
    if k.wants("uncontended") {
        eprintln!("uncontended: {:?} each, interleaved", k.uncontended);
        let (o, s) = uncontended(env, &ours.client, &sdk, k.uncontended).await;
        row(
            &mut out,
            "2",
            "uncontended acquire + release: cycles/s",
            &format!("{:.0}", o.per_sec()),
            &format!("{:.0}", s.per_sec()),
            &format!("**{:.2}×**", o.per_sec() / s.per_sec()),
        );
        let (oa, or) = (latencies(o.acquire.clone()), latencies(o.release.clone()));
        let (sa, sr) = (latencies(s.acquire.clone()), latencies(s.release.clone()));
        row(
            &mut out,
            "2",
            "… acquire (one SET) p50 / release (one VDEL) p50",
            &format!("{} / {}", in_rt(oa.p50), in_rt(or.p50)),
            &format!("{} / {}", in_rt(sa.p50), in_rt(sr.p50)),
            "",
        );
        row(
            &mut out,
            "2",
            "… one cycle (mean) / requests per cycle",
            &format!("{} / {:.2}", in_rt(o.mean()), o.requests_per_cycle()),
            &format!("{} / {:.2}", in_rt(s.mean()), s.requests_per_cycle()),
            "",
        );
    }

    // (3) Handoff: the holder releases, a waiter holds.
    if k.wants("handoff") {
        eprintln!("handoff: {} rounds each", k.rounds);
        let limit = rt * 3;
        let mut lines = Vec::new();
        for (label, jitter) in [
            (format!("default jitter 0..{}", ms(default_jitter)), None),
            ("tuned: jitter 0".to_owned(), Some(Duration::ZERO)),
        ] {
            let holder = env.ours("handoff-holder");
            let settings = match jitter {
                Some(j) => tuned(env, "handoff-waiter", j),
                None => env.settings("handoff-waiter"),
            };
            let waiter = env.ours_with(&settings);
            let lock = format!("handoff-{}", lines.len());
            let st = handoff_ours(env, &holder.client, &waiter.client, &lock, k.rounds).await;
            lines.push((label, st));
        }
        let s = handoff_sdk(env, k.rounds).await;
        let timer = timer_floor(k.rounds).await;
        for (label, o) in &lines {
            row(
                &mut out,
                "3",
                &format!(
                    "handoff p50 / p99, ours with {label} (limit 3 RT = {})",
                    ms(limit)
                ),
                &format!(
                    "{} / {} ({} / {})",
                    ms(o.p50),
                    ms(o.p99),
                    in_rt(o.p50),
                    in_rt(o.p99)
                ),
                &format!(
                    "{} / {} ({} / {})",
                    ms(s.p50),
                    ms(s.p99),
                    in_rt(s.p50),
                    in_rt(s.p99)
                ),
                &format!(
                    "{} (p50 = {:.2}× the limit)",
                    ratio(s.p50.as_secs_f64(), o.p50.as_secs_f64()),
                    o.p50.as_secs_f64() / limit.as_secs_f64()
                ),
            );
        }
        row(
            &mut out,
            "3",
            "… diagnostic: a tokio timer set to fire at once (`sleep_until(now)`) p50 / p99",
            &format!("{} / {}", ms(timer.p50), ms(timer.p99)),
            "",
            "",
        );
    }

    // (4) Contended read-modify-write of one counter.
    if k.wants("contended") {
        eprintln!("contended: {} workers for {:?} each", k.workers, k.seconds);
        let s = contended_sdk(env, &sdk, "sdk", k.workers, k.seconds).await;
        for (label, jitter, fence) in [
            (
                format!("default jitter 0..{}", ms(default_jitter)),
                None,
                true,
            ),
            (
                format!("tuned: jitter 0..{}", ms(k.contended_jitter)),
                Some(k.contended_jitter),
                true,
            ),
            (
                "default jitter, without the edit fence (one round trip less per edit)".into(),
                None,
                false,
            ),
        ] {
            let tag = format!(
                "ours-{}-{fence}",
                jitter.map_or(-1, |j| j.as_micros() as i64)
            );
            let o = contended_ours(env, &sdk, &tag, k.workers, k.seconds, jitter, fence).await;
            row(
                &mut out,
                "4",
                &format!(
                    "{} workers × {:?} of edit(counter + 1), ours with {label}: edits/s",
                    k.workers, k.seconds
                ),
                &format!("{:.0}", o.per_sec()),
                &format!("{:.0}", s.per_sec()),
                &format!("**{:.2}×**", o.per_sec() / s.per_sec()),
            );
            row(
                &mut out,
                "4",
                "… final counter (= edits counted) / failed edits / requests per edit",
                &o.exactness(),
                &s.exactness(),
                "",
            );
            row(
                &mut out,
                "4",
                "… fairness: most / fewest edits of one worker (per-worker counts)",
                &o.fairness(),
                &s.fairness(),
                "",
            );
        }
    }

    // (5) Scale: one client holding and renewing many locks.
    if k.wants("scale") {
        eprintln!(
            "scale: {} locks, lease {:?}, renewed every {:?}, window {:?}",
            k.locks, SCALE_LEASE, SCALE_INTERVAL, k.window
        );
        // Past 10 000 locks the store needs the leases of one child to expire (and their
        // notifications to go out) before the next child's requests are answered in time.
        let settle = || {
            if k.locks > 10_000 {
                eprintln!("  waiting {SCALE_LEASE:?} for the previous child's leases to expire");
                std::thread::sleep(SCALE_LEASE + Duration::from_secs(5));
            }
        };
        let o = scale(env, "ours", k.in_flight, k);
        settle();
        let s = scale(env, "sdk", k.in_flight, k);
        let burst = k.scale_burst.then(|| {
            settle();
            scale(env, "ours", 0, k)
        });
        // A side that gave up has no figures but how far it got.
        let cell = |side: &Scale, text: String| match &side.gave_up {
            None if side.failed => "**failed** (see the benchmark's stderr)".to_owned(),
            Some(g) => format!(
                "**gave up** after {:.0} s: {} of {} held, VmRSS {}",
                g.secs,
                g.held,
                k.locks,
                mib(g.rss_kib)
            ),
            None => text,
        };
        let both = |f: &dyn Fn(&Scale) -> String| (cell(&o, f(&o)), cell(&s, f(&s)));
        let ratio = |sdk: f64, ours: f64| {
            if o.gave_up.is_some() || s.gave_up.is_some() || o.failed || s.failed {
                String::new()
            } else {
                ratio(sdk, ours)
            }
        };
        let lines: [(String, (String, String), String); 6] = [
            (
                format!(
                    "{} locks held (lease {:?}, renewed every {:?}; first acquisitions {} at a \
                     time): resident memory VmRSS (peak VmHWM)",
                    k.locks, SCALE_LEASE, SCALE_INTERVAL, k.in_flight
                ),
                both(&|x| format!("{} ({})", mib(x.rss_kib), mib(x.hwm_kib))),
                ratio(s.rss_kib as f64, o.rss_kib as f64),
            ),
            (
                "… resident memory of the same process connected, before any lock".into(),
                both(&|x| mib(x.base_kib)),
                String::new(),
            ),
            (
                "… resident memory per held lock, (VmRSS − connected) / locks".into(),
                both(&|x| format!("{:.0} B", x.bytes_per_lock(k.locks))),
                ratio(s.bytes_per_lock(k.locks), o.bytes_per_lock(k.locks)),
            ),
            (
                format!(
                    "… client CPU while renewing (share of one core over {:?})",
                    k.window
                ),
                both(&|x| format!("{:.1} %", x.cpu_share * 100.0)),
                ratio(s.cpu_share, o.cpu_share),
            ),
            (
                "… CPU per renewal / renewals per second seen by the store".into(),
                both(&|x| {
                    format!(
                        "{:.0} µs / {:.0}",
                        x.cpu_per_renewal_us(),
                        x.renewals_per_sec
                    )
                }),
                ratio(s.cpu_per_renewal_us(), o.cpu_per_renewal_us()),
            ),
            (
                "… time to acquire all of them".into(),
                both(&|x| format!("{:.2} s", x.acquire_secs)),
                ratio(s.acquire_secs, o.acquire_secs),
            ),
        ];
        for (what, (ours, sdk), r) in lines {
            row(&mut out, "5", &what, &ours, &sdk, &r);
        }
        if let Some(burst) = burst {
            row(
                &mut out,
                "5",
                "… ours with all first acquisitions at once: VmRSS (peak) / CPU share / time to acquire",
                &format!(
                    "{} ({}) / {:.1} % / {:.2} s",
                    mib(burst.rss_kib),
                    mib(burst.hwm_kib),
                    burst.cpu_share * 100.0,
                    burst.acquire_secs
                ),
                "(times out: see BENCHMARKS.md)",
                "",
            );
        }
    }
    // (6) The same lock over the application's rumqttc connection (leasedlock-rumqttc) beside
    // its own connection, measured alternately.
    if k.wants("rumqttc") {
        eprintln!(
            "rumqttc: {} GETs, {:?} of cycles, {} handoff rounds each",
            k.gets, k.uncontended, k.rounds
        );
        let own = env.ours("rumqttc-own");
        let (over, _tasks) = over_rumqttc(&env.settings("rumqttc-over"));
        let (o, r) = alternate(
            k.gets,
            || async {
                own.client
                    .holder("floor", Options::default())
                    .await
                    .unwrap();
            },
            || async {
                over.holder("floor", Options::default()).await.unwrap();
            },
        )
        .await;
        pair_row(&mut out, "GET round trip p50 / p99", &o, &r);
        let (mut oc, mut rc) = (Cycles::default(), Cycles::default());
        for _ in 0..4 {
            cycles_ours(env, &own.client, "cycles-own", k.uncontended / 4, &mut oc).await;
            cycles_ours(env, &over, "cycles-rumqttc", k.uncontended / 4, &mut rc).await;
        }
        row(
            &mut out,
            "6",
            "uncontended acquire + release, cycles/s: own connection; over rumqttc",
            &format!("{:.0}; {:.0}", oc.per_sec(), rc.per_sec()),
            "",
            &format!("rumqttc / own: {:.2}×", rc.per_sec() / oc.per_sec()),
        );
        let holder = env.ours("rumqttc-own-holder");
        let waiter = env.ours_with(&tuned(env, "rumqttc-own-waiter", Duration::ZERO));
        let o = handoff_ours(env, &holder.client, &waiter.client, "handoff-own", k.rounds).await;
        let (r_holder, _h) = over_rumqttc(&env.settings("rumqttc-holder"));
        let (r_waiter, _w) = over_rumqttc(&tuned(env, "rumqttc-waiter", Duration::ZERO));
        let r = handoff_ours(env, &r_holder, &r_waiter, "handoff-rumqttc", k.rounds).await;
        pair_row(&mut out, "handoff p50 / p99 (jitter 0)", &o, &r);
    }
    // (7) Herds: many contenders on one lock.
    if k.wants("herd") {
        herds(&mut out, env, &sdk, k).await;
    }
    // (8) Latency: the clients reach the broker through a delaying proxy.
    if k.wants("latency") {
        for &delay in &k.delays {
            latency(&mut out, env, delay, k).await;
        }
    }
    sdk.close().await;
    let _ = writeln!(out, "\nRT = {} (one GET round trip).", ms(rt));
    out
}

fn row(out: &mut String, n: &str, what: &str, ours: &str, sdk: &str, ratio: &str) {
    let _ = writeln!(out, "| {n} | {what} | {ours} | {sdk} | {ratio} |");
    eprintln!("  {what}: ours {ours}; sdk {sdk}; {ratio}");
}

/// A row of section 6: latencies over the own connection and over rumqttc.
fn pair_row(out: &mut String, what: &str, own: &Latencies, over: &Latencies) {
    row(
        out,
        "6",
        &format!("{what}: own connection; over rumqttc"),
        &format!(
            "{} / {}; {} / {}",
            ms(own.p50),
            ms(own.p99),
            ms(over.p50),
            ms(over.p99)
        ),
        "",
        &format!(
            "rumqttc / own: {:.2}×",
            over.p50.as_secs_f64() / own.p50.as_secs_f64()
        ),
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// How many times better ours is when smaller is better.
fn ratio(sdk: f64, ours: f64) -> String {
    format!("{:.2}× better", sdk / ours)
}

/// The lock of `settings` over a rumqttc connection of the same client id and broker (TCP_NODELAY
/// on, as ours): its handle and tasks.
fn over_rumqttc(settings: &Settings) -> (Client, [tokio::task::JoinHandle<()>; 2]) {
    let id = settings.lock.client_id.clone();
    let mut options = rumqttc::v5::MqttOptions::new(id, settings.host.clone(), settings.port);
    options.set_keep_alive(Duration::from_secs(10));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, _mqtt, tasks) = leasedlock_rumqttc::spawn(options, settings.lock.clone()).unwrap();
    (client, tasks)
}

// ----- statistics ---------------------------------------------------------------------------

struct Latencies {
    p50: Duration,
    p99: Duration,
}

fn latencies(mut v: Vec<Duration>) -> Latencies {
    assert!(!v.is_empty());
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Latencies {
        p50: at(0.50),
        p99: at(0.99),
    }
}

// ----- (1) floor ------------------------------------------------------------------------------

async fn floor(ours: &Client, sdk: &Sdk, n: usize) -> (Latencies, Latencies) {
    alternate(
        n,
        || async {
            ours.holder("floor", Options::default()).await.unwrap();
        },
        || async {
            sdk.store.get(b"floor".to_vec(), T).await.unwrap();
        },
    )
    .await
}

/// The latencies of `a` and of `b`, each run `n` times, alternately (after 100 of each to warm
/// both paths up), so that both see the same machine.
async fn alternate<A: Future<Output = ()>, B: Future<Output = ()>>(
    n: usize,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Latencies, Latencies) {
    for _ in 0..100 {
        a().await;
        b().await;
    }
    let (mut la, mut lb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        a().await;
        la.push(t.elapsed());
        let t = Instant::now();
        b().await;
        lb.push(t.elapsed());
    }
    (latencies(la), latencies(lb))
}

// ----- (2) uncontended ------------------------------------------------------------------------

#[derive(Default)]
struct Cycles {
    cycles: u64,
    elapsed: Duration,
    requests: u64,
    acquire: Vec<Duration>,
    release: Vec<Duration>,
}

impl Cycles {
    fn per_sec(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64()
    }
    fn mean(&self) -> Duration {
        self.elapsed / self.cycles.max(1) as u32
    }
    fn requests_per_cycle(&self) -> f64 {
        self.requests as f64 / self.cycles.max(1) as f64
    }
}

async fn uncontended(env: &Env, ours: &Client, sdk: &Sdk, total: Duration) -> (Cycles, Cycles) {
    let (mut o, mut s) = (Cycles::default(), Cycles::default());
    let lease = sdk.lease("uncontended-sdk");
    let slice = total / 4;
    for _ in 0..4 {
        cycles_ours(env, ours, "uncontended-ours", slice, &mut o).await;
        let (r0, t0) = (env.requests(), Instant::now());
        while t0.elapsed() < slice {
            let t = Instant::now();
            lease.acquire(LEASE, T, None).await.unwrap();
            let between = Instant::now();
            lease.release(T).await.unwrap();
            s.acquire.push(between - t);
            s.release.push(between.elapsed());
            s.cycles += 1;
        }
        s.elapsed += t0.elapsed();
        s.requests += env.requests() - r0;
    }
    (o, s)
}

/// try_acquire + release cycles of `lock` by `ours` for `slice`, counted into `c`.
async fn cycles_ours(env: &Env, ours: &Client, lock: &str, slice: Duration, c: &mut Cycles) {
    let (r0, t0) = (env.requests(), Instant::now());
    while t0.elapsed() < slice {
        let t = Instant::now();
        let won = ours.try_acquire(lock, LEASE, Options::default());
        assert!(won.await.unwrap().is_some());
        let between = Instant::now();
        let released = ours.release(lock, Options::default());
        assert!(released.await.unwrap());
        c.acquire.push(between - t);
        c.release.push(between.elapsed());
        c.cycles += 1;
    }
    c.elapsed += t0.elapsed();
    c.requests += env.requests() - r0;
}

// ----- (3) handoff ----------------------------------------------------------------------------

/// Rounds of: `holder` takes the lock, `waiter` starts waiting for it (its KEYNOTIFY and its
/// refused SET have reached the store), then the clock starts and `holder` releases; the clock
/// stops when the waiter's `acquire` returns.
async fn handoff_ours(
    env: &Env,
    holder: &Client,
    waiter: &Client,
    lock: &str,
    rounds: usize,
) -> Latencies {
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let won = holder.try_acquire(lock, LEASE, Options::default()).await;
        assert!(won.unwrap().is_some());
        let before = env.requests();
        let task = tokio::spawn({
            let (waiter, lock) = (waiter.clone(), lock.to_owned());
            async move {
                let lease = waiter.acquire(lock, LEASE, wait()).await;
                (lease, Instant::now())
            }
        });
        env.wait_requests(before + 2).await;
        let t0 = Instant::now();
        assert!(holder.release(lock, Options::default()).await.unwrap());
        let (lease, t1) = within("our waiter", task).await.unwrap();
        lease.unwrap();
        v.push(t1 - t0);
        assert!(waiter.release(lock, Options::default()).await.unwrap());
    }
    latencies(v)
}

/// The same rounds with SDK clients: the holder takes the lock with the lease client's single
/// try, the waiter waits in the lock client's `lock()`.
async fn handoff_sdk(env: &Env, rounds: usize) -> Latencies {
    let holder = env.sdk("handoff-sdk-holder").await;
    let waiter = env.sdk("handoff-sdk-waiter").await;
    let lease = holder.lease("handoff-sdk");
    let mut v = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        lease.acquire(LEASE, T, None).await.unwrap();
        let before = env.requests();
        let task = tokio::spawn({
            let lock = waiter.lock("handoff-sdk");
            async move {
                let token = lock.lock(LEASE, T, None).await;
                (token, Instant::now(), lock)
            }
        });
        env.wait_requests(before + 2).await;
        let t0 = Instant::now();
        lease.release(T).await.unwrap();
        let (token, t1, lock) = within("the SDK waiter", task).await.unwrap();
        token.unwrap();
        v.push(t1 - t0);
        lock.unlock(T).await.unwrap();
    }
    holder.close().await;
    waiter.close().await;
    latencies(v)
}

/// How late a tokio timer set to fire at once fires: the engine's retry after a DELETE is such
/// a timer when the jitter is zero.
async fn timer_floor(n: usize) -> Latencies {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        tokio::time::sleep_until(t.into()).await;
        v.push(t.elapsed());
    }
    latencies(v)
}

// ----- (4) contended --------------------------------------------------------------------------

struct Contended {
    per_worker: Vec<u64>,
    failed: u64,
    elapsed: Duration,
    counter: u64,
    requests: u64,
    /// Every written edit's critical section, from `t0`: from the moment its worker has the
    /// counter's value (ours: the edit closure is called; the SDK: its GET returned) to the
    /// moment its call returned, the lock released.
    spans: Vec<(Duration, Duration)>,
    /// CPU seconds of the broker and of the store over the run.
    cpu: Cpu,
}

/// What one contending worker did: edits written, edits failed, and the span of each written
/// edit's critical section (entered, left) from the start of the run.
type WorkerEdits = (u64, u64, Vec<(Duration, Duration)>);

impl Contended {
    /// The edits of the workers' `tasks` (`what` they are, for a timeout), once each has ended:
    /// they run until `deadline`, and [`within`] bounds what they take after it.
    async fn gather(
        what: &str,
        deadline: Instant,
        tasks: Vec<tokio::task::JoinHandle<WorkerEdits>>,
    ) -> Contended {
        tokio::time::sleep_until(deadline.into()).await;
        let mut result = Contended {
            per_worker: Vec::new(),
            failed: 0,
            elapsed: Duration::ZERO,
            counter: 0,
            requests: 0,
            spans: Vec::new(),
            cpu: Cpu::default(),
        };
        for task in tasks {
            let (written, failed, spans) = within(what, task).await.unwrap();
            result.per_worker.push(written);
            result.failed += failed;
            result.spans.extend(spans);
        }
        result
    }

    /// The handoffs: from the end of one critical section to the start of the next one.
    fn handoffs(&self) -> Option<Latencies> {
        let mut spans = self.spans.clone();
        spans.sort();
        let gaps: Vec<Duration> = spans
            .windows(2)
            .map(|w| w[1].0.saturating_sub(w[0].1))
            .collect();
        (!gaps.is_empty()).then(|| latencies(gaps))
    }

    fn requests_per_edit(&self) -> f64 {
        self.requests as f64 / self.total().max(1) as f64
    }

    /// Most / fewest edits of one worker.
    fn spread(&self) -> f64 {
        let max = self.per_worker.iter().max().copied().unwrap_or(0);
        let min = self.per_worker.iter().min().copied().unwrap_or(0);
        if min == 0 {
            f64::INFINITY
        } else {
            max as f64 / min as f64
        }
    }

    fn total(&self) -> u64 {
        self.per_worker.iter().sum()
    }
    fn per_sec(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64()
    }
    fn exactness(&self) -> String {
        let mark = if self.counter == self.total() {
            "exact"
        } else {
            "**MISMATCH**"
        };
        format!(
            "{} ({mark}) / {} / {:.2}",
            self.counter,
            self.failed,
            self.requests_per_edit()
        )
    }
    fn fairness(&self) -> String {
        format!("{} ({:?})", times(self.spread()), self.per_worker)
    }

    /// Most and fewest edits of one worker, without the per-worker list.
    fn extremes(&self) -> String {
        let max = self.per_worker.iter().max().copied().unwrap_or(0);
        let min = self.per_worker.iter().min().copied().unwrap_or(0);
        format!("{} ({max} / {min})", times(self.spread()))
    }
}

fn parse(value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| {
        std::str::from_utf8(v)
            .expect("a decimal counter")
            .parse()
            .expect("a decimal counter")
    })
}

async fn read_counter(sdk: &Sdk, key: &str) -> u64 {
    let value = sdk.store.get(key.as_bytes().to_vec(), T).await.unwrap();
    parse(value.response.as_deref())
}

/// `workers` clients of ours edit one counter for `seconds`; `tag` names the lock and the counter
/// (one tag per run: the counter must start absent).
async fn contended_ours(
    env: &Env,
    reader: &Sdk,
    tag: &str,
    workers: usize,
    seconds: Duration,
    jitter: Option<Duration>,
    fence: bool,
) -> Contended {
    let (lock, key) = (format!("contended-{tag}"), format!("counter-{tag}"));
    let clients: Vec<_> = (0..workers)
        .map(|i| {
            let name = format!("worker{i}");
            let mut settings = match jitter {
                Some(j) => tuned(env, &name, j),
                None => env.settings(&name),
            };
            settings.lock.raise_edit_fence = fence;
            env.ours_with(&settings)
        })
        .collect();
    // Every client is connected and subscribed before the clock starts.
    for c in &clients {
        c.client.holder(&lock, wait()).await.unwrap();
    }
    let meter = CpuMeter::new();
    let (r0, c0, t0) = (env.requests(), meter.read(), Instant::now());
    let deadline = t0 + seconds;
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let (client, lock, key) = (c.client.clone(), lock.clone(), key.clone());
            tokio::spawn(async move {
                let (mut written, mut failed, mut spans) = (0, 0, Vec::new());
                while Instant::now() < deadline {
                    let mut entered = None;
                    let edit = client.edit(&lock, &key, LEASE, wait(), |current| {
                        entered = Some(Instant::now());
                        async move {
                            let next = parse(current.as_deref()) + 1;
                            EditAction::Set(Bytes::from(next.to_string()))
                        }
                    });
                    match edit.await {
                        Ok(EditOutcome::Written) => {
                            written += 1;
                            let entered = entered.expect("a written edit called its closure");
                            spans.push((entered - t0, t0.elapsed()));
                        }
                        other => {
                            eprintln!("  edit failed: {other:?}");
                            failed += 1;
                        }
                    }
                }
                (written, failed, spans)
            })
        })
        .collect();
    let mut result = Contended::gather("a contending worker", deadline, tasks).await;
    result.elapsed = t0.elapsed();
    result.cpu = meter.read() - c0;
    result.requests = env.requests() - r0;
    result.counter = read_counter(reader, &key).await;
    result
}

/// The same with SDK clients: `lock()` → `get` → `set` with the token → `unlock()`.
async fn contended_sdk(
    env: &Env,
    reader: &Sdk,
    tag: &str,
    workers: usize,
    seconds: Duration,
) -> Contended {
    let (lock, key) = (format!("contended-{tag}"), format!("counter-{tag}"));
    let mut clients = Vec::new();
    for i in 0..workers {
        clients.push(env.sdk(&format!("sdk-worker{i}")).await);
    }
    let meter = CpuMeter::new();
    let (r0, c0, t0) = (env.requests(), meter.read(), Instant::now());
    let deadline = t0 + seconds;
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let (lock, store, key) = (c.lock(&lock), c.store.clone(), key.clone());
            tokio::spawn(async move {
                let (mut written, mut failed, mut spans) = (0, 0, Vec::new());
                while Instant::now() < deadline {
                    let token = lock.lock(LEASE, T, None).await.unwrap();
                    let current = store.get(key.clone().into(), T).await.unwrap().response;
                    let entered = t0.elapsed();
                    let next = parse(current.as_deref()) + 1;
                    let set = store
                        .set(
                            key.clone().into(),
                            next.to_string().into_bytes(),
                            T,
                            Some(token),
                            SetOptions::default(),
                        )
                        .await;
                    lock.unlock(T).await.unwrap();
                    match set {
                        Ok(r) if r.response => {
                            written += 1;
                            spans.push((entered, t0.elapsed()));
                        }
                        other => {
                            eprintln!("  sdk edit failed: {other:?}");
                            failed += 1;
                        }
                    }
                }
                (written, failed, spans)
            })
        })
        .collect();
    let mut result = Contended::gather("a contending SDK worker", deadline, tasks).await;
    result.elapsed = t0.elapsed();
    result.cpu = meter.read() - c0;
    result.requests = env.requests() - r0;
    result.counter = read_counter(reader, &key).await;
    for c in clients {
        c.close().await;
    }
    result
}

// ----- (7) herds ------------------------------------------------------------------------------

/// Section 7: `k.herd_sizes` contenders on one counter, ours (default configuration) and the
/// SDK's, one after the other per size; the goals are relative to our smallest herd.
async fn herds(out: &mut String, env: &Env, sdk: &Sdk, k: &Knobs) {
    let mut first: Option<(usize, Contended)> = None;
    for &n in &k.herd_sizes {
        eprintln!("herd: {n} contenders for {:?} each", k.herd_seconds);
        let tag = format!("herd-ours-{n}");
        let o = contended_ours(env, sdk, &tag, n, k.herd_seconds, None, true).await;
        let s = contended_sdk(env, sdk, &format!("herd-sdk-{n}"), n, k.herd_seconds).await;
        let what = |m: &str| format!("{n} contenders × {:?}: {m}", k.herd_seconds);
        row(
            out,
            "7",
            &what("edits/s"),
            &format!("{:.0}", o.per_sec()),
            &format!("{:.0}", s.per_sec()),
            &format!("**{:.2}×**", o.per_sec() / s.per_sec()),
        );
        let handoff = |c: &Contended| {
            c.handoffs()
                .map_or("-".to_owned(), |h| format!("{} / {}", ms(h.p50), ms(h.p99)))
        };
        row(
            out,
            "7",
            "… handoff p50 / p99 (one edit's release returned → the next edit has the value)",
            &handoff(&o),
            &handoff(&s),
            "",
        );
        row(
            out,
            "7",
            "… final counter (= edits counted) / failed edits / requests per edit (at the store)",
            &o.exactness(),
            &s.exactness(),
            "",
        );
        row(
            out,
            "7",
            "… fairness: most / fewest edits of one worker",
            &o.extremes(),
            &s.extremes(),
            "",
        );
        row(
            out,
            "7",
            "… CPU (share of one core): broker / store / the clients' process (without the store)",
            &o.cpu.shares(o.elapsed),
            &s.cpu.shares(s.elapsed),
            "",
        );
        if let Some((n0, o0)) = &first {
            row(
                out,
                "7",
                &format!("… goals against our {n0}-contender run: edits/s ≥ 0.7×, requests per edit ≤ 2×"),
                &format!(
                    "{:.2}× / {:.2}×",
                    o.per_sec() / o0.per_sec(),
                    o.requests_per_edit() / o0.requests_per_edit()
                ),
                "",
                "",
            );
        } else {
            first = Some((n, o));
        }
    }
}

// ----- (8) latency ----------------------------------------------------------------------------

/// Section 8: the floor, uncontended cycles, handoff and the contended edits again, with every
/// client connected through a proxy that delays each direction by `delay`; figures in RT, the
/// GET round trip measured through the proxy.
async fn latency(out: &mut String, env: &Env, delay: Duration, k: &Knobs) {
    let proxy = DelayProxy::start(env.broker.addr(), delay)
        .await
        .expect("start the delaying proxy");
    env.route_clients(Some(proxy.addr().port()));
    let label = format!("{} one-way", ms(delay));
    eprintln!("latency: {label}");
    let ours = env.ours("latency-ours");
    let sdk = env.sdk("latency-sdk").await;
    let (o, s) = floor(&ours.client, &sdk, k.delay_gets).await;
    let rt = o.p50.min(s.p50);
    let in_rt = |d: Duration| format!("{:.2} RT", d.as_secs_f64() / rt.as_secs_f64());
    row(
        out,
        "8",
        &format!("{label}: GET round trip p50 (**RT** = the smaller)"),
        &ms(o.p50),
        &ms(s.p50),
        &ratio(s.p50.as_secs_f64(), o.p50.as_secs_f64()),
    );
    let (oc, sc) = uncontended(env, &ours.client, &sdk, k.delay_seconds).await;
    row(
        out,
        "8",
        &format!("{label}: uncontended acquire + release, one cycle (goal ≤ 2.2 RT)"),
        &in_rt(oc.mean()),
        &in_rt(sc.mean()),
        &ratio(sc.mean().as_secs_f64(), oc.mean().as_secs_f64()),
    );
    let holder = env.ours("latency-holder");
    let waiter = env.ours("latency-waiter");
    let lock = format!("latency-handoff-{}", delay.as_micros());
    let oh = handoff_ours(env, &holder.client, &waiter.client, &lock, k.delay_rounds).await;
    let sh = handoff_sdk(env, k.delay_rounds).await;
    row(
        out,
        "8",
        &format!("{label}: handoff p50 / p99, default configuration (goal p50 ≤ 3.3 RT)"),
        &format!("{} / {}", in_rt(oh.p50), in_rt(oh.p99)),
        &format!("{} / {}", in_rt(sh.p50), in_rt(sh.p99)),
        &ratio(sh.p50.as_secs_f64(), oh.p50.as_secs_f64()),
    );
    let tag = format!("latency-{}", delay.as_micros());
    let ours_tag = format!("{tag}-ours");
    let oe = contended_ours(env, &sdk, &ours_tag, 8, k.delay_seconds, None, true).await;
    let se = contended_sdk(env, &sdk, &format!("{tag}-sdk"), 8, k.delay_seconds).await;
    let bound = 1.0 / (4.0 * rt.as_secs_f64());
    let against = |c: &Contended| {
        format!(
            "{:.1} = {:.2} [{:.2}; {}]",
            c.per_sec(),
            c.per_sec() / bound,
            c.requests_per_edit(),
            times(c.spread())
        )
    };
    row(
        out,
        "8",
        &format!(
            "{label}: 8 workers, edits/s as a share of 1/(4 RT) = {bound:.1}/s (goal ≥ 0.8) \
             [requests per edit; fairness]"
        ),
        &against(&oe),
        &against(&se),
        &format!("**{:.2}×**", oe.per_sec() / se.per_sec()),
    );
    sdk.close().await;
    env.route_clients(None);
}

// ----- CPU of the broker and the store --------------------------------------------------------

/// CPU seconds (user + system) of the broker, the store and the clients over a stretch of time.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    broker: Option<f64>,
    store: Option<f64>,
    clients: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, before: Cpu) -> Cpu {
        let minus = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        Cpu {
            broker: minus(self.broker, before.broker),
            store: minus(self.store, before.store),
            clients: self.clients - before.clients,
        }
    }
}

impl Cpu {
    /// Each as a share of one core over `elapsed`.
    fn shares(&self, elapsed: Duration) -> String {
        let share = |cpu: Option<f64>| {
            cpu.map_or("?".to_owned(), |c| {
                format!("{:.0} %", c * 100.0 / elapsed.as_secs_f64())
            })
        };
        format!(
            "{} / {} / {}",
            share(self.broker),
            share(self.store),
            share(Some(self.clients))
        )
    }
}

/// Where to read the CPU time of the broker (a child process of this one, when it is mosquitto)
/// and of the store (the emulator's thread in this process).
struct CpuMeter {
    hz: f64,
    broker: Option<String>,
    store: Option<String>,
}

impl CpuMeter {
    fn new() -> CpuMeter {
        let me = std::process::id().to_string();
        let broker = std::fs::read_dir("/proc").ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let path = format!("{}/stat", e.path().display());
                let stat = std::fs::read_to_string(&path).ok()?;
                let (name, rest) = stat.rsplit_once(") ")?;
                let ppid = rest.split(' ').nth(1)?;
                (name.ends_with("(mosquitto") && ppid == me).then_some(path)
            })
        });
        let store = std::fs::read_dir("/proc/self/task").ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
                comm.starts_with("statestore-emu")
                    .then(|| format!("{}/stat", e.path().display()))
            })
        });
        CpuMeter {
            hz: clock_ticks_per_sec(),
            broker,
            store,
        }
    }

    fn read(&self) -> Cpu {
        let of = |path: &Option<String>| path.as_deref().and_then(|p| stat_cpu_secs(p, self.hz));
        let store = of(&self.store);
        let process = stat_cpu_secs("/proc/self/stat", self.hz).unwrap_or(0.0);
        Cpu {
            broker: of(&self.broker),
            store,
            clients: process - store.unwrap_or(0.0),
        }
    }
}

fn times(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}×")
    } else {
        "∞".to_owned()
    }
}

// ----- (5) scale ------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Scale {
    base_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    acquire_secs: f64,
    cpu_secs: f64,
    window_secs: f64,
    cpu_share: f64,
    renewals_per_sec: f64,
    /// Set when the first acquisitions did not all succeed within the limit.
    gave_up: Option<GaveUp>,
    /// The child failed (its stderr says why).
    failed: bool,
}

/// How far a scale child got before its acquisition limit.
#[derive(Debug, Default)]
struct GaveUp {
    held: u64,
    secs: f64,
    rss_kib: u64,
}

impl Scale {
    fn bytes_per_lock(&self, locks: usize) -> f64 {
        self.rss_kib.saturating_sub(self.base_kib) as f64 * 1024.0 / locks.max(1) as f64
    }

    fn cpu_per_renewal_us(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.renewals_per_sec * self.window_secs).max(1.0)
    }
}

/// Runs the client of `kind` in a child process; the store's request count over the child's
/// measurement window gives the renewal rate.
fn scale(env: &Env, kind: &str, in_flight: usize, k: &Knobs) -> Scale {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut child = Command::new(exe)
        .args([
            "--scale-child",
            kind,
            &env.port().to_string(),
            &k.locks.to_string(),
            &in_flight.to_string(),
            &k.window.as_millis().to_string(),
            &k.acquire_limit.as_secs().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the scale child");
    let stdout = BufReader::new(child.stdout.take().expect("the child's stdout"));
    let mut result = Scale::default();
    let mut window_start = None;
    for line in stdout.lines() {
        let line = line.expect("read the child's stdout");
        if let Some(fields) = line.strip_prefix("GAVEUP ") {
            let mut gave_up = GaveUp::default();
            for field in fields.split(' ') {
                let (name, value) = field.split_once('=').expect("name=value");
                let value: f64 = value.parse().expect("a number");
                match name {
                    "held" => gave_up.held = value as u64,
                    "secs" => gave_up.secs = value,
                    "rss_kib" => gave_up.rss_kib = value as u64,
                    _ => panic!("unknown field {name}"),
                }
            }
            result.gave_up = Some(gave_up);
        } else if line == "WINDOW" {
            window_start = Some((env.requests(), Instant::now()));
        } else if let Some(fields) = line.strip_prefix("RESULT ") {
            let (r0, t0) = window_start.expect("the window started before the result");
            let renewals = env.requests() - r0;
            result.renewals_per_sec = renewals as f64 / t0.elapsed().as_secs_f64();
            for field in fields.split(' ') {
                let (name, value) = field.split_once('=').expect("name=value");
                let value: f64 = value.parse().expect("a number");
                match name {
                    "base_kib" => result.base_kib = value as u64,
                    "rss_kib" => result.rss_kib = value as u64,
                    "hwm_kib" => result.hwm_kib = value as u64,
                    "acquire_secs" => result.acquire_secs = value,
                    "cpu_secs" => result.cpu_secs = value,
                    "window_secs" => result.window_secs = value,
                    _ => panic!("unknown field {name}"),
                }
            }
        }
    }
    let status = child.wait().expect("wait for the scale child");
    if !status.success() {
        eprintln!("  the {kind} scale child failed: {status}");
        result.failed = true;
    }
    result.cpu_share = result.cpu_secs / result.window_secs.max(1e-9);
    result
}

/// The child: `--scale-child <ours|sdk> <port> <locks> <in_flight> <window_ms>`; `in_flight`
/// bounds the first acquisitions in flight at once (0: no bound).
///
/// Ours: `in_flight` worker tasks (one per lock without a bound) acquire the locks one after the
/// other and put their [`Hold`]s in one `Vec` reserved for all; the holds sit there, with no
/// task each and nobody reading their events (a hold keeps its latest lease and coalesces its
/// renewals, so an unread one stays bounded). At the end of the window
/// every hold must still have a valid token — its first lease has run out by then, so that
/// proves it was renewed — and no hold may have more than one event waiting (more means it was
/// lost and re-acquired); the child fails loudly otherwise. The SDK: one `lease::Client` each,
/// with its auto-renewal task.
///
/// Both run on the multi-thread tokio runtime of the rest of the benchmark (two workers here), as
/// before. A current-thread runtime (`E2E_SCALE_CURRENT_THREAD=1`) is not clearly better for
/// memory: with our 10 000 holds it saved under 1 MiB of about 25 MiB resident (measured over
/// 10 s windows, run to run spread about as large), and it is not the usual setup of either
/// client.
fn scale_child(args: &[String]) {
    let [kind, port, locks, in_flight, window_ms, acquire_limit_s] = args else {
        panic!(
            "usage: --scale-child <ours|sdk> <port> <locks> <in_flight> <window_ms> \
             <acquire_limit_s>"
        );
    };
    let acquire_limit = Duration::from_secs(acquire_limit_s.parse().expect("seconds"));
    let port: u16 = port.parse().expect("a port");
    let locks: usize = locks.parse().expect("a lock count");
    let in_flight: usize = in_flight.parse().expect("a bound");
    // Ours: this many workers acquire the locks one after the other.
    let workers = match in_flight {
        0 => locks,
        n => n.min(locks),
    };
    let in_flight = Arc::new(tokio::sync::Semaphore::new(match in_flight {
        0 => tokio::sync::Semaphore::MAX_PERMITS,
        n => n,
    }));
    let window = Duration::from_millis(window_ms.parse().expect("a window in ms"));
    let runtime = if std::env::var("E2E_SCALE_CURRENT_THREAD").is_ok_and(|v| v == "1") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    } else {
        runtime()
    };
    runtime.block_on(async move {
        let id = format!("scale-{kind}-{}", std::process::id());
        let ready = Arc::new(AtomicU64::new(0));
        // Gives up (and says so) when the first acquisitions take longer than `acquire_limit`.
        let watchdog = tokio::spawn({
            let ready = ready.clone();
            async move {
                let t0 = Instant::now();
                tokio::time::sleep(acquire_limit).await;
                let rss_kib = proc_status("VmRSS:");
                let held = ready.load(Ordering::Relaxed);
                println!(
                    "GAVEUP held={held} secs={:.1} rss_kib={rss_kib}",
                    t0.elapsed().as_secs_f64()
                );
                std::process::exit(0);
            }
        });
        let t0;
        // Our holds, checked at the end of the window.
        let holds: Vec<Hold>;
        // Each kind keeps its other handles alive in `_keep` until the process exits.
        let base_kib;
        let _keep: Box<dyn std::any::Any> = match kind.as_str() {
            "ours" => {
                let (client, task) =
                    leasedlock_tokio::connect(&Settings::new("127.0.0.1", port, id.clone()))
                        .expect("valid settings");
                client.holder("connected", wait()).await.unwrap();
                base_kib = proc_status("VmRSS:");
                t0 = Instant::now();
                // `workers` tasks take the next lock number, hold that lock and put the Hold in
                // `holds`, reserved for every lock up front (a vector per worker that doubles as
                // it fills would leave its old buffers behind as heap the allocator keeps).
                let next = Arc::new(AtomicU64::new(0));
                let shared = Arc::new(std::sync::Mutex::new(Vec::with_capacity(locks)));
                let acquiring: Vec<_> = (0..workers)
                    .map(|_| {
                        let (client, ready, next) = (client.clone(), ready.clone(), next.clone());
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let options = Options::default().with_timeout(WAIT * 2);
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= locks as u64 {
                                    return;
                                }
                                let name = format!("scale-ours-{i}");
                                let hold =
                                    client.hold(name, SCALE_LEASE, SCALE_INTERVAL, options.clone());
                                let hold = hold.await.unwrap();
                                shared.lock().unwrap().push(hold);
                                ready.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                for worker in acquiring {
                    worker.await.expect("a worker");
                }
                holds = std::mem::take(&mut *shared.lock().unwrap());
                Box::new((client, task))
            }
            "sdk" => {
                let sdk = Sdk::connect(port, id.clone()).await;
                holds = Vec::new();
                base_kib = proc_status("VmRSS:");
                t0 = Instant::now();
                // With all 10 000 first acquisitions in flight at once, most of them time out in
                // the SDK (its invoker does not get them out within the 10 s request timeout).
                let leases: Vec<_> = (0..locks)
                    .map(|i| {
                        let lease = sdk.lease(&format!("scale-sdk-{i}"));
                        let (ready, in_flight) = (ready.clone(), in_flight.clone());
                        tokio::spawn(async move {
                            let permit = in_flight.acquire().await.unwrap();
                            lease
                                .acquire(SCALE_LEASE, T, Some(SCALE_INTERVAL))
                                .await
                                .unwrap();
                            drop(permit);
                            ready.fetch_add(1, Ordering::Relaxed);
                            lease
                        })
                    })
                    .collect();
                Box::new((sdk, leases))
            }
            other => panic!("unknown kind {other}"),
        };
        while ready.load(Ordering::Relaxed) < locks as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let acquire_secs = t0.elapsed().as_secs_f64();
        watchdog.abort();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "WINDOW").unwrap();
        stdout.flush().unwrap();
        let hz = clock_ticks_per_sec();
        let (cpu0, w0) = (cpu_secs(hz), Instant::now());
        tokio::time::sleep(window).await;
        let (cpu1, window_secs) = (cpu_secs(hz), w0.elapsed().as_secs_f64());
        let (rss_kib, hwm_kib) = (proc_status("VmRSS:"), proc_status("VmHWM:"));
        let expired = holds.iter().filter(|h| h.token().is_none()).count();
        let troubled = holds.iter().filter(|h| h.queued_events() > 1).count();
        if expired > 0 || troubled > 0 {
            eprintln!(
                "FAILED: of {} holds, {expired} have no valid token and {troubled} were lost \
                 and re-acquired",
                holds.len()
            );
            std::process::exit(1);
        }
        writeln!(
            stdout,
            "RESULT base_kib={base_kib} rss_kib={rss_kib} hwm_kib={hwm_kib} \
             acquire_secs={acquire_secs:.3} cpu_secs={:.3} window_secs={window_secs:.3}",
            cpu1 - cpu0,
        )
        .unwrap();
        stdout.flush().unwrap();
        // Exit without releasing: the leases expire at the store.
        std::process::exit(0);
    });
}

/// A `kB` field of `/proc/self/status`.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// User + system CPU time of this process (all threads), from `/proc/self/stat`.
fn cpu_secs(ticks_per_sec: f64) -> f64 {
    stat_cpu_secs("/proc/self/stat", ticks_per_sec).expect("/proc/self/stat")
}

/// User + system CPU time from a `stat` file of `/proc` (a process's or a thread's).
fn stat_cpu_secs(path: &str, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / ticks_per_sec)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ----- profiling helpers ----------------------------------------------------------------------

/// `--serve`: a broker and the emulator until stdin closes; prints `PORT <port>`.
fn serve() {
    let env = Env::start("serve");
    println!("PORT {}", env.port());
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
}

/// `--cycles-child <ours|sdk> <port> <cycles> [current]`: uncontended acquire + release cycles by
/// one client in this process (on a current-thread runtime with `current`).
fn cycles_child(args: &[String]) {
    let (kind, port, cycles, current) = match args {
        [kind, port, cycles] => (kind, port, cycles, false),
        [kind, port, cycles, flavor] if flavor == "current" => (kind, port, cycles, true),
        _ => panic!("usage: --cycles-child <ours|sdk> <port> <cycles> [current]"),
    };
    let port: u16 = port.parse().expect("a port");
    let cycles: u64 = cycles.parse().expect("a cycle count");
    let runtime = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    } else {
        runtime()
    };
    runtime.block_on(async move {
        let id = format!("cycles-{kind}-{}", std::process::id());
        let t0;
        match kind.as_str() {
            "ours" => {
                let (client, _task) =
                    leasedlock_tokio::connect(&Settings::new("127.0.0.1", port, id))
                        .expect("valid settings");
                client.holder("connected", wait()).await.unwrap();
                t0 = Instant::now();
                for _ in 0..cycles {
                    let won = client.try_acquire("cycles", LEASE, Options::default());
                    assert!(won.await.unwrap().is_some());
                    assert!(client.release("cycles", Options::default()).await.unwrap());
                }
            }
            "sdk" => {
                let sdk = Sdk::connect(port, id).await;
                let lease = sdk.lease("cycles");
                t0 = Instant::now();
                for _ in 0..cycles {
                    lease.acquire(LEASE, T, None).await.unwrap();
                    lease.release(T).await.unwrap();
                }
            }
            other => panic!("unknown kind {other}"),
        }
        let elapsed = t0.elapsed();
        println!(
            "{cycles} cycles in {elapsed:?}: {:.0}/s",
            cycles as f64 / elapsed.as_secs_f64()
        );
        std::process::exit(0);
    });
}
