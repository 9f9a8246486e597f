//! `statestore-emulator`: answers state-store requests on an MQTT v5 broker until SIGTERM or
//! SIGINT (see `--help`).
#![forbid(unsafe_code)]

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use statestore_emulator::{run, Control, Options, BROKER_LOG_TOPICS, MAX_PACKET_SIZE};
use std::process::ExitCode;
use std::sync::Arc;

fn usage() -> String {
    format!(
        "\
usage: statestore-emulator [--broker HOST:PORT] [--client-id ID] [--log] [--quiet]
                           [--max-keys N] [--max-bytes N]

Connects to an MQTT v5 broker as the Azure IoT Operations state store and answers the requests
published on statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke (SET, GET, DEL,
VDEL, KEYNOTIFY) until it gets SIGTERM or SIGINT, then disconnects and exits with status 0. It
reconnects by itself when the broker goes away; the store's contents live in memory and survive
reconnects, not restarts of the emulator.

Once connected and subscribed it prints one line on stdout:
  statestore-emulator ready on HOST:PORT
(connection changes and problems go to stderr).

Options:
  --broker HOST:PORT  the broker (default 127.0.0.1:1883; plain TCP, anonymous)
  --client-id ID      the emulator's MQTT client id (default statestore-emulator-<pid>)
  --log               print every request, response and notification on stdout, one line each
  --quiet             print nothing on stderr about connections
  --max-keys N        hold at most N keys: a SET of a new key beyond that answers
                      -ERR the quota has been exceeded (existing keys can still be updated,
                      read and deleted); default no bound
  --max-bytes N       hold at most N bytes of keys and values together, with the same error;
                      default no bound
  -h, --help          this text

Broker settings it needs (mosquitto.conf):
  log_dest topic       the broker publishes its log on $SYS/broker/log/<level>; the emulator
                       reads {log_n} and {log_e} to learn that a client disconnected or that
                       its session was taken over (then that client's KEYNOTIFY registrations
                       are dropped, as the real service does), and which clients the broker
                       dropped too large packets for. Keep log_type notice and error on (the
                       default). Without it registrations of departed clients stay (harmless
                       for clients that re-register after reconnecting).
  set_tcp_nodelay true without it every request/response round trip costs ~40 ms (Nagle).
  max_packet_size      optional. The emulator accepts packets of any size MQTT allows
                       ({max_packet} bytes), so the broker never drops a request on its way
                       to it; the broker's own max_packet_size (from its CONNACK) bounds what
                       the emulator publishes: a request whose response or notifications would
                       be larger gets __stat 413 with a __stMsg saying so, and is not applied.
                       Clients must advertise a Maximum Packet Size large enough for the values
                       they read: the emulator cannot see it, the broker drops what does not fit
                       (mosquitto logs it; the emulator then answers that client with 413).

Example:
  printf 'listener 1883 127.0.0.1\\nallow_anonymous true\\nset_tcp_nodelay true\\nlog_dest topic\\nlog_dest stderr\\n' > m.conf
  mosquitto -c m.conf &
  statestore-emulator --broker 127.0.0.1:1883",
        log_n = BROKER_LOG_TOPICS[0],
        log_e = BROKER_LOG_TOPICS[1],
        max_packet = MAX_PACKET_SIZE,
    )
}

/// What the command line asks for.
enum Parsed {
    Run(Options),
    Help,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut options = Options::new("127.0.0.1:1883");
    options.ready_line = true;
    let mut args = args.into_iter();
    let count = |flag: &str, value: Option<String>| -> Result<usize, String> {
        value
            .as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a whole number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" => match args.next() {
                Some(b) if !b.is_empty() => options.broker = b,
                _ => return Err("--broker needs host:port".into()),
            },
            "--client-id" => match args.next() {
                Some(id) if !id.is_empty() => options.client_id = id,
                _ => return Err("--client-id needs a value".into()),
            },
            "--log" => options.log = true,
            "--quiet" => options.verbose = false,
            "--max-keys" => options.store.max_keys = Some(count("--max-keys", args.next())?),
            "--max-bytes" => options.store.max_bytes = Some(count("--max-bytes", args.next())?),
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Parsed::Run(options))
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("statestore-emulator: {problem}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("statestore-emulator: cannot handle SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals_handle = signals.handle();
    let control = Arc::new(Control::new());
    let on_signal = {
        let control = control.clone();
        let verbose = options.verbose;
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                if verbose {
                    eprintln!("statestore-emulator: signal {signal}: disconnecting");
                }
                control.stop();
            }
        })
    };
    run(&options, &control);
    signals_handle.close();
    let _ = on_signal.join();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Parsed, String> {
        parse(a.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags() {
        let Ok(Parsed::Run(o)) = args(&[
            "--broker",
            "h:1",
            "--client-id",
            "e",
            "--log",
            "--quiet",
            "--max-keys",
            "10",
            "--max-bytes",
            "4096",
        ]) else {
            panic!("parsed");
        };
        assert_eq!((o.broker.as_str(), o.client_id.as_str()), ("h:1", "e"));
        assert!(o.log && !o.verbose && o.ready_line && o.learn_disconnects);
        assert_eq!(
            (o.store.max_keys, o.store.max_bytes),
            (Some(10), Some(4096))
        );
        let Ok(Parsed::Run(o)) = args(&[]) else {
            panic!("parsed");
        };
        assert_eq!(o.broker, "127.0.0.1:1883");
        assert_eq!((o.store.max_keys, o.store.max_bytes), (None, None));
        assert!(matches!(args(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(args(&["-h"]), Ok(Parsed::Help)));
    }

    #[test]
    fn bad_flags() {
        for (a, problem) in [
            (&["--max-keys"][..], "--max-keys needs a whole number"),
            (&["--max-keys", "-1"], "--max-keys needs a whole number"),
            (&["--max-bytes", "x"], "--max-bytes needs a whole number"),
            (&["--broker"], "--broker needs host:port"),
            (&["--client-id", ""], "--client-id needs a value"),
            (&["--nope"], "unknown argument \"--nope\""),
        ] {
            assert_eq!(args(a).err().as_deref(), Some(problem), "{a:?}");
        }
    }

    #[test]
    fn help_names_the_broker_settings() {
        let text = usage();
        for needed in [
            "log_dest topic",
            "set_tcp_nodelay true",
            "max_packet_size",
            "$SYS/broker/log/N",
            "$SYS/broker/log/E",
            "statestore-emulator ready on HOST:PORT",
            "SIGTERM",
            "--max-keys",
            "--max-bytes",
            "the quota has been exceeded",
        ] {
            assert!(text.contains(needed), "--help lacks {needed:?}");
        }
    }
}
