//! What the commands print: holder values parsed, plain lines for people, JSON lines for
//! scripts (one object per line, written by hand: the CLI needs no serialization crate).

use std::fmt::Write as _;

/// A holder value parsed: `clientId` or `clientId:sessionId`.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    /// The MQTT client id of the holder.
    pub client_id: &'a str,
    /// The session id given by the holder, if any.
    pub session: Option<&'a str>,
}

/// Splits a holder value at its first `:`.
pub fn parse_holder(value: &str) -> Holder<'_> {
    match value.split_once(':') {
        Some((client_id, session)) => Holder {
            client_id,
            session: Some(session),
        },
        None => Holder {
            client_id: value,
            session: None,
        },
    }
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.client_id)?;
        match self.session {
            Some(session) => write!(f, " (session {session})"),
            None => Ok(()),
        }
    }
}

/// A JSON object built field by field.
#[derive(Debug)]
pub struct Json(String);

impl Json {
    /// An object whose first field is `"lock": name` (or `"key"` for the key commands).
    pub fn new(field: &str, name: &str) -> Json {
        Json(String::from("{")).str(field, name)
    }

    fn key(mut self, key: &str) -> Json {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        quote(&mut self.0, key);
        self.0.push(':');
        self
    }

    /// A string field.
    pub fn str(self, key: &str, value: &str) -> Json {
        let mut json = self.key(key);
        quote(&mut json.0, value);
        json
    }

    /// A string field, or `null`.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Json {
        match value {
            Some(value) => self.str(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// A boolean field.
    pub fn bool(self, key: &str, value: bool) -> Json {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// A number field.
    pub fn num(self, key: &str, value: u128) -> Json {
        self.raw(key, &value.to_string())
    }

    /// The holder's fields: `held`, and when held `holder`, `client_id`, `session`.
    pub fn holder(self, value: Option<&str>) -> Json {
        let json = self.bool("held", value.is_some());
        match value {
            Some(value) => {
                let holder = parse_holder(value);
                json.str("holder", value)
                    .str("client_id", holder.client_id)
                    .opt_str("session", holder.session)
            }
            None => json,
        }
    }

    fn raw(self, key: &str, value: &str) -> Json {
        let mut json = self.key(key);
        json.0.push_str(value);
        json
    }

    /// Prints the object as one line on stdout.
    pub fn print(self) {
        println!("{}", self.finish());
    }

    /// Prints the object as one line on stderr (the lifecycle of `run` and `elect`, whose
    /// stdout is the command's).
    pub fn eprint(self) {
        eprintln!("{}", self.finish());
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Appends `text` as a JSON string.
fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_splits_at_the_first_colon() {
        assert_eq!(
            parse_holder("worker-1"),
            Holder {
                client_id: "worker-1",
                session: None
            }
        );
        assert_eq!(
            parse_holder("worker-1:job:7"),
            Holder {
                client_id: "worker-1",
                session: Some("job:7")
            }
        );
        assert_eq!(parse_holder("w:s").to_string(), "w (session s)");
        assert_eq!(parse_holder("w").to_string(), "w");
    }

    #[test]
    fn json_escapes_and_orders_fields() {
        let line = Json::new("lock", "a\"b\\c\n\u{1}é")
            .holder(Some("w:s"))
            .num("n", 7)
            .opt_str("none", None)
            .finish();
        assert_eq!(
            line,
            r#"{"lock":"a\"b\\c\n\u0001é","held":true,"holder":"w:s","client_id":"w","session":"s","n":7,"none":null}"#
        );
        assert_eq!(
            Json::new("lock", "L").holder(None).finish(),
            r#"{"lock":"L","held":false}"#
        );
    }
}
