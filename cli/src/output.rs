//! What the commands print: plain lines for people, JSON lines for scripts (one object per
//! line, written by hand: the CLI needs no serialization crate).

use crate::exit;
use crate::Failure;
use leasedlock_tokio::leasedlock::lock::Holder;
use std::fmt::Write as _;
use std::io::Write as _;

/// Writes `bytes` and a newline to stdout. A reader that has gone (a closed pipe, as in
/// `leasedlock watch L | head -1`) ends the command quietly with the status of a process that
/// SIGPIPE killed; another error is a failure.
pub fn say_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::quiet(exit::CLOSED_STDOUT),
        _ => Failure::new(exit::FAILED, format!("writing to stdout: {e}")),
    })
}

/// Writes a line to stdout (see [`say_bytes`]).
pub fn say(line: &str) -> Result<(), Failure> {
    say_bytes(line.as_bytes())
}

/// A holder for people: `CLIENT_ID`, or `CLIENT_ID (session SESSION)`.
pub fn shown(holder: &Holder) -> String {
    let client_id = String::from_utf8_lossy(holder.client_id());
    match holder.session_id() {
        Some(session) => format!("{client_id} (session {})", String::from_utf8_lossy(session)),
        None => client_id.into_owned(),
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

    /// The holder's fields: `held`, and when held `holder` (the value), `client_id`, `session`.
    pub fn holder(self, holder: Option<&Holder>) -> Json {
        let json = self.bool("held", holder.is_some());
        let Some(holder) = holder else {
            return json;
        };
        let text = |bytes| String::from_utf8_lossy(bytes);
        json.str("holder", &text(holder.as_bytes()))
            .str("client_id", &text(holder.client_id()))
            .opt_str("session", holder.session_id().map(text).as_deref())
    }

    fn raw(self, key: &str, value: &str) -> Json {
        let mut json = self.key(key);
        json.0.push_str(value);
        json
    }

    /// Prints the object as one line on stdout.
    pub fn print(self) -> Result<(), Failure> {
        say(&self.finish())
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
    fn a_holder_is_shown_with_its_session() {
        assert_eq!(shown(&Holder::from_value("w:job:7")), "w (session job:7)");
        assert_eq!(shown(&Holder::from_value("w")), "w");
    }

    #[test]
    fn json_escapes_and_orders_fields() {
        let line = Json::new("lock", "a\"b\\c\n\u{1}é")
            .holder(Some(&Holder::from_value("w:s")))
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
