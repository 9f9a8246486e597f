//! The trace: what happened, line by line, as a failure shows it, and a hash of all of it.

use std::collections::VecDeque;
use std::time::Instant;

use leasedlock::lock::Event;
use leasedlock::store::{self, Command, SetCondition};
use leasedlock::Message;

use super::world::{ns, World};

/// How many trace lines a failure shows.
const TRACE_LINES: usize = 150;

/// The last lines of the trace and a hash of every line.
pub(crate) struct Trace {
    lines: VecDeque<String>,
    pub hash: u64,
}

impl Trace {
    pub(crate) fn new() -> Trace {
        Trace {
            lines: VecDeque::new(),
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    pub(crate) fn push(&mut self, t_ns: u64, line: &str) {
        let line = format!("[{:>10.3} ms] {line}", t_ns as f64 / 1e6);
        for b in line.as_bytes() {
            self.hash = (self.hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        if self.lines.len() == TRACE_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

impl World<'_> {
    pub(super) fn log(&mut self, line: String) {
        self.trace.push(self.t_ns, &line);
    }

    pub(super) fn describe_event(&self, c: usize, e: &Event) -> String {
        let client = &self.clients[c];
        let rel = |at: &Instant| {
            let local = ns(at.saturating_duration_since(self.base)) as i128;
            format!(
                "{:+.3} ms",
                (local - i128::from(client.local_ns)) as f64 / 1e6
            )
        };
        match e {
            Event::Acquired {
                op,
                lock,
                token,
                valid_until,
                ..
            } => format!(
                "Acquired {op:?} {lock:?} {token} valid {}",
                rel(valid_until)
            ),
            Event::Renewed {
                op,
                lock,
                token,
                valid_until,
            } => format!("Renewed {op:?} {lock:?} {token} valid {}", rel(valid_until)),
            other => format!("{other:?}"),
        }
    }
}

/// A short, deterministic description of a message for the trace.
pub(super) fn describe(msg: &Message) -> String {
    let corr = msg
        .correlation_data
        .as_ref()
        .map(|c| {
            c.iter()
                .rev()
                .take(2)
                .rev()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    if msg.topic == store::REQUEST_TOPIC {
        let parsed = store::parse_request(&msg.clone());
        let cmd = match &parsed.command {
            Ok(c) => command_text(c),
            Err(e) => format!("bad: {e}"),
        };
        let ft = match &parsed.fencing_token {
            Ok(Some(ft)) => format!(" ft={ft}"),
            _ => String::new(),
        };
        return format!("#{corr} {cmd}{ft}");
    }
    if let Ok(n) = store::parse_notification(msg) {
        let v = n.version.map(|v| v.to_string()).unwrap_or_default();
        return format!("NOTIFY {} {:?} v={v}", lossy(&n.key), n.op);
    }
    let ts = msg.user_property("__ts").unwrap_or("-");
    format!(
        "#{corr} reply {} v={ts}",
        lossy(&msg.payload).trim_end().escape_debug()
    )
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Set {
            key,
            value,
            options,
        } => {
            let cond = match options.condition {
                SetCondition::Always => "",
                SetCondition::NotExists => " NX",
                SetCondition::NotExistsOrEqual => " NEX",
            };
            let px = options
                .expiry
                .map(|ms| format!(" PX {ms}"))
                .unwrap_or_default();
            format!("SET {} {}{cond}{px}", lossy(key), lossy(value))
        }
        Command::Get { key } => format!("GET {}", lossy(key)),
        Command::Del { key } => format!("DEL {}", lossy(key)),
        Command::VDel { key, value } => format!("VDEL {} {}", lossy(key), lossy(value)),
        Command::KeyNotify { key } => format!("KEYNOTIFY {}", lossy(key)),
        Command::KeyNotifyStop { key } => format!("KEYNOTIFY {} STOP", lossy(key)),
    }
}
