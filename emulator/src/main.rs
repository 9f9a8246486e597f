//! `statestore-emulator --broker host:port [--log] [--client-id ID]`: answers state-store requests
//! on an MQTT v5 broker until killed.
#![forbid(unsafe_code)]

use statestore_emulator::{run, Control, Options};
use std::process::ExitCode;

const USAGE: &str = "usage: statestore-emulator --broker host:port [--log] [--client-id ID]\n\
\n\
Connects to the MQTT v5 broker as the Azure IoT Operations state store and answers the\n\
requests published on statestore/v1/…/command/invoke until killed.\n\
  --broker host:port   the broker (default 127.0.0.1:1883)\n\
  --log                print every request, response and notification on one line each\n\
  --client-id ID       the emulator's MQTT client id";

fn main() -> ExitCode {
    let mut options = Options::new("127.0.0.1:1883");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" => match args.next() {
                Some(b) => options.broker = b,
                None => return usage("--broker needs host:port"),
            },
            "--client-id" => match args.next() {
                Some(id) if !id.is_empty() => options.client_id = id,
                _ => return usage("--client-id needs a value"),
            },
            "--log" => options.log = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    run(&options, &Control::new());
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("statestore-emulator: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}
