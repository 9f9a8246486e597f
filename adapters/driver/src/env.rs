//! [`Settings`] from the environment variables of the Azure IoT Operations SDKs.

use crate::settings::{Settings, TlsSettings};
use leasedlock::bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;

/// The variables read by [`Settings::from_env`], as the AIO SDKs name them.
pub const ENV_VARS: [&str; 14] = [
    "AIO_BROKER_HOSTNAME",
    "AIO_BROKER_TCP_PORT",
    "AIO_MQTT_CLIENT_ID",
    "AIO_MQTT_USE_TLS",
    "AIO_TLS_CA_FILE",
    "AIO_TLS_CERT_FILE",
    "AIO_TLS_KEY_FILE",
    "AIO_TLS_KEY_PASSWORD_FILE",
    "AIO_SAT_FILE",
    "AIO_MQTT_USERNAME",
    "AIO_MQTT_PASSWORD_FILE",
    "AIO_MQTT_KEEP_ALIVE",
    "AIO_MQTT_SESSION_EXPIRY",
    "AIO_MQTT_CLEAN_START",
];

/// What [`Settings::from_env`] appends to `AIO_MQTT_CLIENT_ID` for the lock's own connection,
/// unless [`CLIENT_ID_SUFFIX_VAR`] says otherwise. In an AIO pod the application's SDK session
/// uses `AIO_MQTT_CLIENT_ID` as it is; a second connection under the same id would take that
/// session over (DISCONNECT 0x8E) and be taken over in turn.
pub const CLIENT_ID_SUFFIX: &str = "-leasedlock";

/// The variable that replaces [`CLIENT_ID_SUFFIX`]: its value is appended instead, and an empty
/// value appends nothing (the lock's connection then uses `AIO_MQTT_CLIENT_ID` as it is: only
/// when nothing else in the process connects under that id).
pub const CLIENT_ID_SUFFIX_VAR: &str = "LEASEDLOCK_CLIENT_ID_SUFFIX";

/// A setting from the environment that is missing, invalid or unsupported; names the variable.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A required variable is not set (or empty).
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable's value cannot be used.
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file named by a variable cannot be read.
    #[error("{var}: cannot read {path}: {source}")]
    File {
        /// The variable.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A variable this crate does not support.
    #[error("{var} is not supported: {reason}")]
    Unsupported {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl Settings {
    /// Settings from the process environment; see [`Settings::from_lookup`].
    pub fn from_env() -> Result<Settings, EnvError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from the AIO SDK variables, read through `lookup` (a test passes a map; an
    /// empty value counts as unset). Defaults as the SDKs: TLS on, port 18883 with TLS and 1883
    /// without, keep-alive 60 s, session expiry 3600 s, Clean Start off.
    ///
    /// | variable | meaning |
    /// |-|-|
    /// | `AIO_BROKER_HOSTNAME` | broker host (required) |
    /// | `AIO_BROKER_TCP_PORT` | broker port |
    /// | `AIO_MQTT_CLIENT_ID` | MQTT client id, also the lock holder's name, with [`CLIENT_ID_SUFFIX`] appended (required) |
    /// | `LEASEDLOCK_CLIENT_ID_SUFFIX` | the suffix instead of [`CLIENT_ID_SUFFIX`]; empty for none |
    /// | `AIO_MQTT_USE_TLS` | `true`/`false` |
    /// | `AIO_TLS_CA_FILE` | PEM CA file (else the system's store) |
    /// | `AIO_TLS_CERT_FILE`, `AIO_TLS_KEY_FILE` | client certificate and key (both or neither) |
    /// | `AIO_TLS_KEY_PASSWORD_FILE` | not supported: an error when set |
    /// | `AIO_SAT_FILE` | service account token file (K8S-SAT), read now and watched |
    /// | `AIO_MQTT_USERNAME` | user name |
    /// | `AIO_MQTT_PASSWORD_FILE` | file whose contents are the password (read now) |
    /// | `AIO_MQTT_KEEP_ALIVE` | keep-alive, seconds |
    /// | `AIO_MQTT_SESSION_EXPIRY` | session expiry, seconds |
    /// | `AIO_MQTT_CLEAN_START` | `true`/`false` |
    ///
    /// ```
    /// use leasedlock_driver::Settings;
    ///
    /// let settings = Settings::from_lookup(|name| match name {
    ///     "AIO_BROKER_HOSTNAME" => Some("aio-broker".into()),
    ///     "AIO_MQTT_CLIENT_ID" => Some("worker-1".into()),
    ///     "AIO_MQTT_USE_TLS" => Some("false".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!((settings.host.as_str(), settings.port), ("aio-broker", 1883));
    /// assert_eq!(settings.lock.client_id, "worker-1-leasedlock");
    /// assert!(settings.tls.is_none());
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, EnvError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.is_empty());
        let host = get("AIO_BROKER_HOSTNAME").ok_or(EnvError::Missing("AIO_BROKER_HOSTNAME"))?;
        let client_id = get("AIO_MQTT_CLIENT_ID").ok_or(EnvError::Missing("AIO_MQTT_CLIENT_ID"))?;
        let use_tls = parse_bool(&get, "AIO_MQTT_USE_TLS")?.unwrap_or(true);
        let port = match get("AIO_BROKER_TCP_PORT") {
            None if use_tls => 18883,
            None => 1883,
            Some(value) => match value.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => {
                    return Err(EnvError::Invalid {
                        var: "AIO_BROKER_TCP_PORT",
                        value,
                        reason: "not a port number (1-65535)",
                    })
                }
            },
        };
        // Not through `get`: an empty suffix is a choice, not an unset variable.
        let suffix = lookup(CLIENT_ID_SUFFIX_VAR).unwrap_or_else(|| CLIENT_ID_SUFFIX.to_owned());
        let mut settings = Settings::new(host, port, client_id).with_client_id_suffix(&suffix);
        settings.mqtt.keep_alive = Duration::from_secs(60);
        settings.mqtt.clean_start = false;
        if let Some(secs) = parse_u32(&get, "AIO_MQTT_KEEP_ALIVE")? {
            if secs > u32::from(u16::MAX) {
                return Err(EnvError::Invalid {
                    var: "AIO_MQTT_KEEP_ALIVE",
                    value: secs.to_string(),
                    reason: "more than 65535 seconds",
                });
            }
            settings.mqtt.keep_alive = Duration::from_secs(u64::from(secs));
        }
        if let Some(secs) = parse_u32(&get, "AIO_MQTT_SESSION_EXPIRY")? {
            settings.mqtt.session_expiry = secs;
        }
        if let Some(clean) = parse_bool(&get, "AIO_MQTT_CLEAN_START")? {
            settings.mqtt.clean_start = clean;
        }

        if get("AIO_TLS_KEY_PASSWORD_FILE").is_some() {
            return Err(EnvError::Unsupported {
                var: "AIO_TLS_KEY_PASSWORD_FILE",
                reason: "encrypted private keys cannot be read; give an unencrypted key",
            });
        }
        let ca_file = get("AIO_TLS_CA_FILE").map(PathBuf::from);
        let cert_file = get("AIO_TLS_CERT_FILE");
        let key_file = get("AIO_TLS_KEY_FILE");
        if use_tls {
            let mut tls = TlsSettings {
                ca_file,
                ..TlsSettings::default()
            };
            match (cert_file, key_file) {
                (Some(cert), Some(key)) => tls = tls.with_client_certificate(cert, key),
                (None, None) => {}
                (Some(_), None) => return Err(EnvError::Missing("AIO_TLS_KEY_FILE")),
                (None, Some(_)) => return Err(EnvError::Missing("AIO_TLS_CERT_FILE")),
            }
            settings.tls = Some(tls);
        } else if let Some((var, value)) = [
            ("AIO_TLS_CA_FILE", ca_file.map(|p| p.display().to_string())),
            ("AIO_TLS_CERT_FILE", cert_file),
            ("AIO_TLS_KEY_FILE", key_file),
        ]
        .into_iter()
        .find_map(|(var, value)| value.map(|v| (var, v)))
        {
            return Err(EnvError::Invalid {
                var,
                value,
                reason: "TLS files given while AIO_MQTT_USE_TLS is false",
            });
        }

        let password_file = get("AIO_MQTT_PASSWORD_FILE");
        match (get("AIO_SAT_FILE"), &password_file) {
            (Some(_), Some(_)) => {
                return Err(EnvError::Invalid {
                    var: "AIO_SAT_FILE",
                    value: "<set>".into(),
                    reason: "a service account token and AIO_MQTT_PASSWORD_FILE exclude each other",
                })
            }
            (Some(sat), None) => {
                read_file("AIO_SAT_FILE", &sat)?;
                settings = settings.with_sat_file(sat);
            }
            (None, _) => {}
        }
        settings.mqtt.username = get("AIO_MQTT_USERNAME");
        if let Some(path) = password_file {
            settings.mqtt.password = Some(read_file("AIO_MQTT_PASSWORD_FILE", &path)?);
        }
        Ok(settings)
    }
}

fn read_file(var: &'static str, path: &str) -> Result<Bytes, EnvError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| EnvError::File {
            var,
            path: path.into(),
            source,
        })
}

fn parse_bool(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
) -> Result<Option<bool>, EnvError> {
    let Some(value) = get(var) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(EnvError::Invalid {
            var,
            value,
            reason: "not a boolean (true or false)",
        }),
    }
}

fn parse_u32(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
) -> Result<Option<u32>, EnvError> {
    let Some(value) = get(var) else {
        return Ok(None);
    };
    match value.parse() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(EnvError::Invalid {
            var,
            value,
            reason: "not a whole number of seconds",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, EnvError> {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| env.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("AIO_BROKER_HOSTNAME", "aio-broker"),
        ("AIO_MQTT_CLIENT_ID", "worker-1"),
    ];

    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf, String);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("leasedlock-env-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            let text = path.display().to_string();
            TempFile(path, text)
        }

        fn path(&self) -> &str {
            &self.1
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn defaults_follow_the_sdks() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.host, "aio-broker");
        assert_eq!(s.port, 18883);
        assert_eq!(s.lock.client_id, "worker-1-leasedlock");
        assert_eq!(s.mqtt.client_id, s.lock.client_id);
        assert_eq!(s.tls, Some(TlsSettings::default()));
        assert_eq!(s.mqtt.keep_alive, Duration::from_secs(60));
        assert_eq!(s.mqtt.session_expiry, 3600);
        assert!(!s.mqtt.clean_start);
        assert_eq!(s.mqtt.username, None);
        assert_eq!(s.mqtt.authentication_method, None);
        assert_eq!(s.sat_file, None);

        let s = settings(&with(&[("AIO_MQTT_USE_TLS", "false")])).unwrap();
        assert_eq!((s.port, s.tls), (1883, None));
    }

    #[test]
    fn the_client_id_gets_a_suffix_that_can_be_replaced_or_dropped() {
        let s = settings(&with(&[("LEASEDLOCK_CLIENT_ID_SUFFIX", "-lock-b")])).unwrap();
        assert_eq!(s.lock.client_id, "worker-1-lock-b");
        assert_eq!(s.mqtt.client_id, "worker-1-lock-b");
        let s = settings(&with(&[("LEASEDLOCK_CLIENT_ID_SUFFIX", "")])).unwrap();
        assert_eq!(
            s.lock.client_id, "worker-1",
            "an empty suffix keeps the id as it is"
        );
        assert_eq!(s.mqtt.client_id, "worker-1");
    }

    #[test]
    fn every_variable_is_read() {
        let password = TempFile::new("password", b"s3cret");
        let vars = with(&[
            ("AIO_BROKER_TCP_PORT", "8884"),
            ("AIO_MQTT_USE_TLS", "true"),
            ("AIO_TLS_CA_FILE", "/certs/ca.pem"),
            ("AIO_TLS_CERT_FILE", "/certs/client.pem"),
            ("AIO_TLS_KEY_FILE", "/certs/client.key"),
            ("AIO_MQTT_USERNAME", "alice"),
            ("AIO_MQTT_PASSWORD_FILE", password.path()),
            ("AIO_MQTT_KEEP_ALIVE", "15"),
            ("AIO_MQTT_SESSION_EXPIRY", "0"),
            ("AIO_MQTT_CLEAN_START", "TRUE"),
        ]);
        let s = settings(&vars).unwrap();
        assert_eq!(s.port, 8884);
        assert_eq!(
            s.tls,
            Some(
                TlsSettings::with_ca_file("/certs/ca.pem")
                    .with_client_certificate("/certs/client.pem", "/certs/client.key")
            )
        );
        assert_eq!(s.mqtt.username.as_deref(), Some("alice"));
        assert_eq!(s.mqtt.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(s.mqtt.keep_alive, Duration::from_secs(15));
        assert_eq!(s.mqtt.session_expiry, 0);
        assert!(s.mqtt.clean_start);
    }

    #[test]
    fn service_account_token() {
        let token = TempFile::new("sat", b"eyJ...");
        let s = settings(&with(&[("AIO_SAT_FILE", token.path())])).unwrap();
        assert_eq!(s.sat_file.as_deref(), Some(token.0.as_path()));
        assert_eq!(s.mqtt.authentication_method.as_deref(), Some("K8S-SAT"));

        let err = settings(&with(&[("AIO_SAT_FILE", "/nonexistent/token")])).unwrap_err();
        assert!(
            matches!(
                err,
                EnvError::File {
                    var: "AIO_SAT_FILE",
                    ..
                }
            ),
            "{err}"
        );
        let err = settings(&with(&[
            ("AIO_SAT_FILE", token.path()),
            ("AIO_MQTT_PASSWORD_FILE", token.path()),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                EnvError::Invalid {
                    var: "AIO_SAT_FILE",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let check = |vars: &[(&str, &str)], var: &str| {
            let err = settings(vars).unwrap_err();
            assert!(err.to_string().starts_with(var), "{err}");
        };
        check(&[("AIO_MQTT_CLIENT_ID", "c")], "AIO_BROKER_HOSTNAME");
        check(&[("AIO_BROKER_HOSTNAME", "h")], "AIO_MQTT_CLIENT_ID");
        check(
            &[("AIO_BROKER_HOSTNAME", "h"), ("AIO_MQTT_CLIENT_ID", "")],
            "AIO_MQTT_CLIENT_ID",
        );
        check(
            &with(&[("AIO_BROKER_TCP_PORT", "0")]),
            "AIO_BROKER_TCP_PORT",
        );
        check(
            &with(&[("AIO_BROKER_TCP_PORT", "70000")]),
            "AIO_BROKER_TCP_PORT",
        );
        check(&with(&[("AIO_MQTT_USE_TLS", "yes")]), "AIO_MQTT_USE_TLS");
        check(
            &with(&[("AIO_MQTT_KEEP_ALIVE", "-1")]),
            "AIO_MQTT_KEEP_ALIVE",
        );
        check(
            &with(&[("AIO_MQTT_KEEP_ALIVE", "70000")]),
            "AIO_MQTT_KEEP_ALIVE",
        );
        check(
            &with(&[("AIO_MQTT_SESSION_EXPIRY", "x")]),
            "AIO_MQTT_SESSION_EXPIRY",
        );
        check(
            &with(&[("AIO_MQTT_CLEAN_START", "2")]),
            "AIO_MQTT_CLEAN_START",
        );
        check(&with(&[("AIO_TLS_CERT_FILE", "c.pem")]), "AIO_TLS_KEY_FILE");
        check(&with(&[("AIO_TLS_KEY_FILE", "c.key")]), "AIO_TLS_CERT_FILE");
        check(
            &with(&[("AIO_TLS_KEY_PASSWORD_FILE", "p")]),
            "AIO_TLS_KEY_PASSWORD_FILE",
        );
        check(
            &with(&[("AIO_MQTT_USE_TLS", "false"), ("AIO_TLS_CA_FILE", "ca.pem")]),
            "AIO_TLS_CA_FILE",
        );
        check(
            &with(&[("AIO_MQTT_PASSWORD_FILE", "/nonexistent/password")]),
            "AIO_MQTT_PASSWORD_FILE",
        );
    }
}
