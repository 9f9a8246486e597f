//! [`Command`]: the state-store requests (docs/PROTOCOL.md §2) and their RESP payloads.

use std::num::NonZeroU64;

use bytes::{Bytes, BytesMut};

use super::ServiceError;
use crate::resp;

/// The condition of a SET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SetCondition {
    /// Set unconditionally.
    #[default]
    Always,
    /// `NX`: set only if the key does not exist.
    NotExists,
    /// `NEX`: set only if the key does not exist or its value equals the value of this SET.
    NotExistsOrEqual,
}

/// The options of a SET. The default is unconditional, without expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SetOptions {
    /// When the SET applies.
    pub condition: SetCondition,
    /// `PX <ms>`: expire the key after that many milliseconds.
    pub expiry: Option<NonZeroU64>,
}

/// A state-store command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `SET key value [NX|NEX] [PX ms]`.
    Set {
        /// Key.
        key: Bytes,
        /// New value (may be empty).
        value: Bytes,
        /// Condition and expiry.
        options: SetOptions,
    },
    /// `GET key`.
    Get {
        /// Key.
        key: Bytes,
    },
    /// `DEL key`.
    Del {
        /// Key.
        key: Bytes,
    },
    /// `VDEL key value`: delete only if the value equals.
    VDel {
        /// Key.
        key: Bytes,
        /// The value the key must have.
        value: Bytes,
    },
    /// `KEYNOTIFY key`: start notifications for the key.
    KeyNotify {
        /// Key.
        key: Bytes,
    },
    /// `KEYNOTIFY key STOP`: stop notifications for the key.
    KeyNotifyStop {
        /// Key.
        key: Bytes,
    },
}

impl Command {
    /// The key the command is about.
    pub fn key(&self) -> &Bytes {
        match self {
            Command::Set { key, .. }
            | Command::Get { key }
            | Command::Del { key }
            | Command::VDel { key, .. }
            | Command::KeyNotify { key }
            | Command::KeyNotifyStop { key } => key,
        }
    }

    /// Calls `f` with the RESP arguments of the command (verbs and options upper case).
    fn with_args<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let mut px = [0u8; 20];
        match self {
            Command::Set {
                key,
                value,
                options,
            } => {
                let condition: Option<&[u8]> = match options.condition {
                    SetCondition::Always => None,
                    SetCondition::NotExists => Some(b"NX"),
                    SetCondition::NotExistsOrEqual => Some(b"NEX"),
                };
                let expiry = options
                    .expiry
                    .map(|ms| [&b"PX"[..], crate::decimal::write(ms.get(), &mut px)]);
                let mut args: [&[u8]; 6] = [Verb::Set.name(), key, value, b"", b"", b""];
                let mut n = 3;
                for arg in condition.into_iter().chain(expiry.into_iter().flatten()) {
                    if let Some(slot) = args.get_mut(n) {
                        *slot = arg;
                        n += 1;
                    }
                }
                f(args.get(..n).unwrap_or_default())
            }
            Command::Get { key } => f(&[Verb::Get.name(), key]),
            Command::Del { key } => f(&[Verb::Del.name(), key]),
            Command::VDel { key, value } => f(&[Verb::VDel.name(), key, value]),
            Command::KeyNotify { key } => f(&[Verb::KeyNotify.name(), key]),
            Command::KeyNotifyStop { key } => f(&[Verb::KeyNotify.name(), key, b"STOP"]),
        }
    }

    /// Appends the RESP payload of the command.
    pub fn encode(&self, out: &mut BytesMut) {
        self.with_args(|args| {
            out.reserve(resp::encoded_array_len(args));
            resp::encode_array(args.iter().copied(), out);
        });
    }

    /// Appends the RESP payload to a buffer that has room for it already.
    pub(crate) fn write(&self, out: &mut impl bytes::BufMut) {
        self.with_args(|args| resp::encode_array(args.iter().copied(), out));
    }

    /// The size of the RESP payload of the command.
    pub fn encoded_len(&self) -> usize {
        self.with_args(resp::encoded_array_len)
    }

    /// The RESP payload of the command.
    pub fn to_payload(&self) -> Bytes {
        self.with_args(|args| {
            // Exactly the encoded size: the vector becomes the payload without another allocation.
            let mut out = Vec::with_capacity(resp::encoded_array_len(args));
            resp::encode_array(args.iter().copied(), &mut out);
            Bytes::from(out)
        })
    }

    /// Decodes a request payload the way the service does (for an emulator).
    ///
    /// Verbs and options match case-insensitively; SET options may come in any order, each at most
    /// once. Checks, in this order: RESP well-formed (else `SyntaxError`; an empty array too),
    /// verb known (`UnknownCommand`), argument count (`WrongNumberOfArguments`), key non-empty
    /// (`KeyLengthZero`), options (`SyntaxError`: unknown, repeated, NX with NEX, PX missing, PX not
    /// a decimal ≥ 1, KEYNOTIFY third argument other than STOP).
    pub fn decode(payload: &Bytes) -> Result<Command, ServiceError> {
        let args = resp::decode_array(payload).map_err(|_| ServiceError::SyntaxError)?;
        let Some((verb, rest)) = args.split_first() else {
            return Err(ServiceError::SyntaxError);
        };
        let verb = Verb::ALL
            .into_iter()
            .find(|v| verb.eq_ignore_ascii_case(v.name()))
            .ok_or(ServiceError::UnknownCommand)?;
        let (min, max) = verb.arity();
        if rest.len() < min || rest.len() > max {
            return Err(ServiceError::WrongNumberOfArguments);
        }
        let key = rest.first().cloned().unwrap_or_default();
        if key.is_empty() {
            return Err(ServiceError::KeyLengthZero);
        }
        let second = rest.get(1).cloned().unwrap_or_default();
        match verb {
            Verb::Set => Ok(Command::Set {
                key,
                value: second,
                options: parse_set_options(rest.get(2..).unwrap_or_default())?,
            }),
            Verb::Get => Ok(Command::Get { key }),
            Verb::Del => Ok(Command::Del { key }),
            Verb::VDel => Ok(Command::VDel { key, value: second }),
            Verb::KeyNotify => match rest.get(1) {
                None => Ok(Command::KeyNotify { key }),
                Some(stop) if stop.eq_ignore_ascii_case(b"STOP") => {
                    Ok(Command::KeyNotifyStop { key })
                }
                Some(_) => Err(ServiceError::SyntaxError),
            },
        }
    }
}

/// The verbs of the protocol.
#[derive(Clone, Copy)]
enum Verb {
    Set,
    Get,
    Del,
    VDel,
    KeyNotify,
}

impl Verb {
    const ALL: [Verb; 5] = [Verb::Set, Verb::Get, Verb::Del, Verb::VDel, Verb::KeyNotify];

    fn name(self) -> &'static [u8] {
        match self {
            Verb::Set => b"SET",
            Verb::Get => b"GET",
            Verb::Del => b"DEL",
            Verb::VDel => b"VDEL",
            Verb::KeyNotify => b"KEYNOTIFY",
        }
    }

    /// Minimum and maximum number of arguments after the verb.
    fn arity(self) -> (usize, usize) {
        match self {
            Verb::Set => (2, 5),
            Verb::Get | Verb::Del => (1, 1),
            Verb::VDel => (2, 2),
            Verb::KeyNotify => (1, 2),
        }
    }
}

fn parse_set_options(mut opts: &[Bytes]) -> Result<SetOptions, ServiceError> {
    let mut condition = None;
    let mut expiry = None;
    while let Some((opt, rest)) = opts.split_first() {
        opts = rest;
        let new_condition = if opt.eq_ignore_ascii_case(b"NX") {
            SetCondition::NotExists
        } else if opt.eq_ignore_ascii_case(b"NEX") {
            SetCondition::NotExistsOrEqual
        } else if opt.eq_ignore_ascii_case(b"PX") {
            let (ms, rest) = opts.split_first().ok_or(ServiceError::SyntaxError)?;
            opts = rest;
            if expiry.is_some() {
                return Err(ServiceError::SyntaxError);
            }
            expiry = Some(parse_ms(ms).ok_or(ServiceError::SyntaxError)?);
            continue;
        } else {
            return Err(ServiceError::SyntaxError);
        };
        if condition.replace(new_condition).is_some() {
            return Err(ServiceError::SyntaxError);
        }
    }
    Ok(SetOptions {
        condition: condition.unwrap_or_default(),
        expiry,
    })
}

/// Decimal digits only (leading zeros allowed), ≥ 1, fits `u64`.
fn parse_ms(digits: &[u8]) -> Option<NonZeroU64> {
    crate::decimal::parse(digits).and_then(NonZeroU64::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn dec(s: &'static str) -> Result<Command, ServiceError> {
        Command::decode(&b(s))
    }

    fn set(opts: SetOptions) -> Command {
        Command::Set {
            key: b("k"),
            value: b("v"),
            options: opts,
        }
    }

    #[test]
    fn encodes_every_form() {
        let px = NonZeroU64::new(18_446_744_073_709_551_615);
        let cases = [
            (set(SetOptions::default()), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
            (
                set(SetOptions {
                    condition: SetCondition::NotExists,
                    expiry: None,
                }),
                "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n",
            ),
            (
                set(SetOptions {
                    condition: SetCondition::Always,
                    expiry: px,
                }),
                "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$20\r\n18446744073709551615\r\n",
            ),
            (
                set(SetOptions {
                    condition: SetCondition::NotExistsOrEqual,
                    expiry: NonZeroU64::new(1),
                }),
                "*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$1\r\n1\r\n",
            ),
        ];
        for (cmd, bytes) in cases {
            assert_eq!(cmd.to_payload(), bytes.as_bytes());
            assert_eq!(cmd.encoded_len(), bytes.len());
            assert_eq!(Command::decode(&cmd.to_payload()), Ok(cmd.clone()));
            assert_eq!(cmd.key(), &b("k"));
        }
    }

    #[test]
    fn decode_is_case_insensitive_and_order_free() {
        assert_eq!(
            dec("*6\r\n$3\r\nsEt\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\npx\r\n$2\r\n10\r\n$2\r\nnx\r\n"),
            Ok(set(SetOptions {
                condition: SetCondition::NotExists,
                expiry: NonZeroU64::new(10)
            }))
        );
        assert_eq!(
            dec("*3\r\n$9\r\nkeynotify\r\n$1\r\nk\r\n$4\r\nstop\r\n"),
            Ok(Command::KeyNotifyStop { key: b("k") })
        );
        assert_eq!(
            dec("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"),
            Ok(Command::Set {
                key: b("k"),
                value: Bytes::new(),
                options: SetOptions::default()
            })
        );
    }

    #[test]
    fn decode_errors() {
        use ServiceError::*;
        let cases: &[(&'static str, ServiceError)] = &[
            ("", SyntaxError),
            ("*1\r\n$3\r\nGET\r\n$1\r\nk\r\n", SyntaxError),
            ("*0\r\n", SyntaxError),
            ("*2\r\n$4\r\nPING\r\n$1\r\nk\r\n", UnknownCommand),
            ("*1\r\n$3\r\nGET\r\n", WrongNumberOfArguments),
            ("*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nk\r\n", WrongNumberOfArguments),
            ("*3\r\n$3\r\nDEL\r\n$1\r\nk\r\n$1\r\nk\r\n", WrongNumberOfArguments),
            ("*2\r\n$4\r\nVDEL\r\n$1\r\nk\r\n", WrongNumberOfArguments),
            ("*2\r\n$3\r\nSET\r\n$1\r\nk\r\n", WrongNumberOfArguments),
            (
                "*7\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nPX\r\n$1\r\n1\r\n$1\r\nx\r\n",
                WrongNumberOfArguments,
            ),
            ("*4\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTOP\r\n$1\r\nx\r\n", WrongNumberOfArguments),
            ("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", KeyLengthZero),
            ("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\nv\r\n", KeyLengthZero),
            ("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nXX\r\n", SyntaxError),
            ("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n", SyntaxError),
            ("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n0\r\n", SyntaxError),
            ("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n-1\r\n", SyntaxError),
            ("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$0\r\n\r\n", SyntaxError),
            (
                "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$20\r\n18446744073709551616\r\n",
                SyntaxError,
            ),
            ("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$3\r\nNEX\r\n", SyntaxError),
            ("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nNX\r\n", SyntaxError),
            (
                "*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n1\r\n$2\r\nPX\r\n",
                SyntaxError,
            ),
            ("*3\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n$4\r\nSTAP\r\n", SyntaxError),
        ];
        for (input, err) in cases {
            assert_eq!(dec(input).as_ref(), Err(err), "{input:?}");
        }
    }
}
