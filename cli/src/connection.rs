//! The connection: [`Settings`] from the AIO SDK variables with the flags over them, a bounded
//! first connect, and a clean end (DISCONNECT sent) when the command is done.

use crate::args::Global;
use crate::exit;
use crate::Failure;
use leasedlock_tokio::leasedlock::lock::Options;
use leasedlock_tokio::{connect, Client, EnvError, Settings};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the end of the program waits for the driver to send DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The flag that sets each AIO variable, for error messages.
const FLAGS: [(&str, &str); 10] = [
    ("AIO_BROKER_HOSTNAME", "--broker"),
    ("AIO_BROKER_TCP_PORT", "--broker"),
    ("AIO_MQTT_USE_TLS", "--tls"),
    ("AIO_TLS_CA_FILE", "--ca-file"),
    ("AIO_TLS_CERT_FILE", "--cert"),
    ("AIO_TLS_KEY_FILE", "--key"),
    ("AIO_MQTT_USERNAME", "--username"),
    ("AIO_MQTT_PASSWORD_FILE", "--password-file"),
    ("AIO_SAT_FILE", "--sat-file"),
    ("AIO_MQTT_CLIENT_ID", "--client-id"),
];

/// The settings of `global` over those of the environment, read through `env`.
///
/// `--broker` replaces the environment's broker and TLS settings (TLS off unless `--tls`,
/// `--ca-file`, `--cert` or `--key`); any TLS flag replaces the environment's TLS settings, and
/// any of `--username`, `--password-file`, `--sat-file` its credentials. Without a client id
/// one is made up unless `identity` says the command acts for a holder named by the user.
pub fn settings(
    global: &Global,
    identity: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, Failure> {
    let env = |var: &str| env(var).filter(|v| !v.is_empty());
    let tls_files = global.ca_file.is_some() || global.cert.is_some() || global.key.is_some();
    let tls_from_flags = global.broker.is_some() || global.tls.is_some() || tls_files;
    let auth_from_flags =
        global.username.is_some() || global.password_file.is_some() || global.sat_file.is_some();
    let flag_or_env = |from_flags: bool, flag: &Option<String>, var: &str| {
        if from_flags {
            flag.clone()
        } else {
            env(var)
        }
    };
    let lookup = |var: &str| match var {
        "AIO_BROKER_HOSTNAME" => match &global.broker {
            Some((host, _)) => Some(host.clone()),
            None => env(var),
        },
        "AIO_BROKER_TCP_PORT" => match &global.broker {
            Some((_, port)) => port.map(|p| p.to_string()),
            None => env(var),
        },
        "AIO_MQTT_USE_TLS" if tls_from_flags => Some(global.tls.unwrap_or(tls_files).to_string()),
        "AIO_TLS_CA_FILE" => flag_or_env(tls_from_flags, &global.ca_file, var),
        "AIO_TLS_CERT_FILE" => flag_or_env(tls_from_flags, &global.cert, var),
        "AIO_TLS_KEY_FILE" => flag_or_env(tls_from_flags, &global.key, var),
        "AIO_MQTT_USERNAME" => flag_or_env(auth_from_flags, &global.username, var),
        "AIO_MQTT_PASSWORD_FILE" => flag_or_env(auth_from_flags, &global.password_file, var),
        "AIO_SAT_FILE" => flag_or_env(auth_from_flags, &global.sat_file, var),
        "AIO_MQTT_CLIENT_ID" => global
            .client_id
            .clone()
            .or_else(|| env(var))
            .or_else(|| (!identity).then(made_up_client_id)),
        // An id given on the command line is used as it is; one from the environment gets the
        // driver's suffix, so that it never takes over the application's own session.
        "LEASEDLOCK_CLIENT_ID_SUFFIX" if global.client_id.is_some() => Some(String::new()),
        // A command line lives for seconds: no session for the broker to keep.
        "AIO_MQTT_SESSION_EXPIRY" => env(var).or_else(|| Some("0".into())),
        "AIO_MQTT_CLEAN_START" => env(var).or_else(|| Some("true".into())),
        _ => env(var),
    };
    Settings::from_lookup(lookup).map_err(setting_error)
}

/// A client id of its own for a command that needs no particular one.
fn made_up_client_id() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!(
        "leasedlock-{}-{:08x}",
        std::process::id(),
        hasher.finish() as u32
    )
}

/// An error of the settings, naming the flag as well as the variable.
fn setting_error(err: EnvError) -> Failure {
    let var = match &err {
        EnvError::Missing(var)
        | EnvError::Invalid { var, .. }
        | EnvError::File { var, .. }
        | EnvError::Unsupported { var, .. } => *var,
    };
    let flag = FLAGS.iter().find(|(v, _)| *v == var).map(|(_, flag)| *flag);
    let message = match (&err, flag) {
        (EnvError::Missing("AIO_BROKER_HOSTNAME"), _) => {
            "no broker: pass --broker HOST[:PORT] or set AIO_BROKER_HOSTNAME".to_owned()
        }
        (EnvError::Missing("AIO_MQTT_CLIENT_ID"), _) => "no client id: this subcommand acts for \
             the holder of an earlier acquire: pass --client-id ID or set AIO_MQTT_CLIENT_ID"
            .to_owned(),
        (EnvError::Missing(var), Some(flag)) => format!("missing {flag} (or {var})"),
        (_, Some(flag)) => format!("{err} (set by {flag} or {var})"),
        (_, None) => err.to_string(),
    };
    Failure::new(exit::USAGE, message)
}

/// A connected client and the task that owns its connection.
pub struct Connection {
    /// The handle.
    pub client: Client,
    /// The options of every call: the session id of `--session`.
    pub options: Options,
    task: JoinHandle<()>,
}

impl Connection {
    /// Connects and waits, at most `global.connect_timeout`, until the broker has accepted the
    /// connection; the first refusal or transport error is final.
    pub async fn open(global: &Global, settings: &Settings) -> Result<Connection, Failure> {
        let (client, task) =
            connect(settings).map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
        let broker = format!("{}:{}", settings.host, settings.port);
        let unavailable = |why: String| {
            task.abort();
            Failure::new(exit::UNAVAILABLE, format!("broker {broker}: {why}"))
        };
        match tokio::time::timeout(global.connect_timeout, client.connected()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Err(_) => {
                return Err(unavailable(format!(
                    "no connection within {:?} (--connect-timeout)",
                    global.connect_timeout
                )))
            }
        }
        let mut options = Options::default();
        if let Some(session) = &global.session {
            options = options.with_session_id(session.clone());
        }
        Ok(Connection {
            client,
            options,
            task,
        })
    }

    /// Drops the handle and lets the driver send DISCONNECT (for a bounded time).
    pub async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Parsed};

    fn global(args: &[&str]) -> Global {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["holder", "L"]);
        match parse(all.into_iter().map(Into::into)) {
            Ok(Parsed::Invocation(global, _)) => *global,
            other => panic!("{other:?}"),
        }
    }

    fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const AIO: [(&str, &str); 4] = [
        ("AIO_BROKER_HOSTNAME", "aio-broker"),
        ("AIO_MQTT_CLIENT_ID", "pod-1"),
        ("AIO_TLS_CA_FILE", "/var/run/certs/ca.crt"),
        ("AIO_MQTT_USERNAME", "env-user"),
    ];

    #[test]
    fn the_environment_alone() {
        let s = settings(&global(&[]), true, with_env(&AIO)).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("aio-broker", 18883));
        assert_eq!(s.lock.client_id, "pod-1-leasedlock", "the driver's suffix");
        let tls = s.tls.expect("TLS by default, as the SDKs");
        assert_eq!(tls.ca_file.unwrap().to_str(), Some("/var/run/certs/ca.crt"));
        assert_eq!(s.mqtt.username.as_deref(), Some("env-user"));
        assert_eq!((s.mqtt.session_expiry, s.mqtt.clean_start), (0, true));
    }

    #[test]
    fn flags_replace_their_group() {
        let g = global(&[
            "--broker",
            "localhost:1883",
            "--username",
            "u",
            "--client-id",
            "me",
        ]);
        let s = settings(&g, true, with_env(&AIO)).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("localhost", 1883));
        assert!(s.tls.is_none(), "--broker alone: plain TCP");
        assert_eq!(s.lock.client_id, "me");
        assert_eq!(s.mqtt.username.as_deref(), Some("u"));

        let g = global(&["--broker", "b", "--ca-file", "ca.pem"]);
        let s = settings(&g, true, with_env(&AIO)).unwrap();
        assert_eq!(s.port, 18883);
        assert_eq!(s.tls.unwrap().ca_file.unwrap().to_str(), Some("ca.pem"));

        let g = global(&["--no-tls"]);
        let s = settings(&g, true, with_env(&AIO)).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("aio-broker", 1883, None));
    }

    #[test]
    fn a_client_id_is_made_up_only_where_none_is_needed() {
        let g = global(&["--broker", "b"]);
        let s = settings(&g, false, with_env(&[])).unwrap();
        assert!(
            s.lock.client_id.starts_with("leasedlock-"),
            "{}",
            s.lock.client_id
        );
        let err = settings(&g, true, with_env(&[])).unwrap_err();
        assert!(err.message.contains("--client-id"), "{}", err.message);
        assert_eq!(err.status, exit::USAGE);
    }

    #[test]
    fn errors_name_the_flag() {
        let err = settings(&global(&[]), false, with_env(&[])).unwrap_err();
        assert!(err.message.contains("--broker") && err.message.contains("AIO_BROKER_HOSTNAME"));
        let g = global(&["--broker", "b", "--cert", "c.pem"]);
        let err = settings(&g, false, with_env(&[])).unwrap_err();
        assert!(err.message.contains("--key"), "{}", err.message);
        let g = global(&["--broker", "b", "--password-file", "/nonexistent/pw"]);
        let err = settings(&g, false, with_env(&[])).unwrap_err();
        assert!(err.message.contains("--password-file"), "{}", err.message);
    }
}
