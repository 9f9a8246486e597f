//! The RESP3 subset of the state store: request arrays of blob strings, and single-value replies.
//!
//! Decoding is strict and canonical: `\r\n` after every line, lengths and integers in decimal without
//! sign or leading zeros (only `:-<n>` and `$-1` are negative), blob lengths that match, exactly one
//! value with nothing after it. It never panics, never allocates more than the input could justify and
//! never copies: decoded byte strings are [`Bytes::slice`]s of the input. Every error says where (byte
//! offset into the input) it went wrong.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use leasedlock::resp::{decode_array, decode_reply, encode_array, Reply};
//!
//! let mut out = BytesMut::new();
//! encode_array([&b"GET"[..], b"SETKEY2"], &mut out);
//! assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$7\r\nSETKEY2\r\n");
//! assert_eq!(decode_array(&out.freeze()).unwrap(), vec!["GET", "SETKEY2"]);
//! assert_eq!(decode_reply(&Bytes::from_static(b":-1\r\n")), Ok(Reply::Integer(-1)));
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::decimal;

fn put_decimal(out: &mut impl BufMut, n: u64) {
    if n < 10 {
        out.put_u8(b'0' + n as u8);
    } else if n < 100 {
        out.put_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        out.put_slice(decimal::write(n, &mut [0; 20]));
    }
}

/// Number of decimal digits of `n`.
fn decimal_len(n: usize) -> usize {
    let mut len = 1;
    let mut v = n / 10;
    while v > 0 {
        len += 1;
        v /= 10;
    }
    len
}

fn put_len_line(out: &mut impl BufMut, tag: u8, n: usize) {
    out.put_u8(tag);
    put_decimal(out, n as u64);
    out.put_slice(b"\r\n");
}

/// Appends `args` as a RESP3 array of blob strings: `*<n>\r\n` then `$<len>\r\n<bytes>\r\n` each.
pub fn encode_array<'a, I>(args: I, out: &mut impl BufMut)
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let args = args.into_iter();
    put_len_line(out, b'*', args.len());
    for arg in args {
        put_len_line(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// The exact number of bytes [`encode_array`] writes for `args`.
pub fn encoded_array_len(args: &[&[u8]]) -> usize {
    args.iter().fold(3 + decimal_len(args.len()), |acc, a| {
        acc + 5 + decimal_len(a.len()) + a.len()
    })
}

/// One decoded reply value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Simple string `+<text>\r\n` (the store sends `+OK`); holds the text after `+`.
    Simple(Bytes),
    /// Integer `:<n>\r\n`.
    Integer(i64),
    /// Blob string `$<n>\r\n<n bytes>\r\n` (`n` may be 0).
    Blob(Bytes),
    /// Null blob string `$-1\r\n`.
    Null,
    /// Simple error `-<text>\r\n`; holds the whole text after `-`, e.g. `ERR syntax error`
    /// (the `ERR ` prefix is a convention the store layer interprets, not part of RESP).
    Error(Bytes),
}

/// Appends one reply value.
///
/// `\r` and `\n` inside a `Simple` or `Error` text cannot be framed: they are written as spaces.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    let put_line = |out: &mut BytesMut, tag: u8, text: &[u8]| {
        out.put_u8(tag);
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.put_slice(b"\r\n");
    };
    match reply {
        Reply::Simple(text) => put_line(out, b'+', text),
        Reply::Error(text) => put_line(out, b'-', text),
        Reply::Integer(n) => {
            out.put_u8(b':');
            if *n < 0 {
                out.put_u8(b'-');
            }
            put_decimal(out, n.unsigned_abs());
            out.put_slice(b"\r\n");
        }
        Reply::Blob(b) => {
            put_len_line(out, b'$', b.len());
            out.put_slice(b);
            out.put_slice(b"\r\n");
        }
        Reply::Null => out.put_slice(b"$-1\r\n"),
    }
}

/// What is wrong with RESP input, and at which byte offset.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is empty.
    #[error("empty input")]
    Empty,
    /// The input ends inside a value; `at` is the input length.
    #[error("input truncated at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// The type byte is not one this decoder accepts here.
    #[error("unexpected type byte 0x{found:02x} at byte {at}")]
    UnexpectedType {
        /// Offset of the type byte.
        at: usize,
        /// The byte found.
        found: u8,
    },
    /// An array element is not a blob string (`$<len>`).
    #[error("array element at byte {at} is not a blob string (type byte 0x{found:02x})")]
    NotABlob {
        /// Offset of the element's type byte.
        at: usize,
        /// The byte found.
        found: u8,
    },
    /// A length is not canonical decimal, is negative where not allowed, or overflows.
    #[error("bad length at byte {at}")]
    BadLength {
        /// Offset of the first byte of the length.
        at: usize,
    },
    /// An integer is not canonical decimal or does not fit `i64`.
    #[error("bad integer at byte {at}")]
    BadInteger {
        /// Offset of the first byte of the integer.
        at: usize,
    },
    /// A line is not terminated by `\r\n` (a stray `\r` or `\n`, or wrong bytes after a blob).
    #[error("missing CRLF at byte {at}")]
    MissingCrlf {
        /// Offset where `\r\n` was expected or a stray `\r`/`\n` was found.
        at: usize,
    },
    /// Bytes follow the one complete value.
    #[error("trailing bytes after the value, from byte {at}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
    },
}

/// A cursor over the input.
struct Reader<'a> {
    input: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a Bytes) -> Self {
        Reader { input, pos: 0 }
    }

    fn type_byte(&mut self) -> Result<(usize, u8), DecodeError> {
        let at = self.pos;
        let b = *self.input.get(at).ok_or(DecodeError::Truncated {
            at: self.input.len(),
        })?;
        self.pos += 1;
        Ok((at, b))
    }

    /// Reads up to the next `\r\n`; returns the line's start and end offsets (excluding CRLF).
    fn line(&mut self) -> Result<(usize, usize), DecodeError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        for (i, &b) in rest.iter().enumerate() {
            let at = start + i;
            match b {
                b'\r' => {
                    return match rest.get(i + 1) {
                        Some(b'\n') => {
                            self.pos = at + 2;
                            Ok((start, at))
                        }
                        Some(_) => Err(DecodeError::MissingCrlf { at }),
                        None => Err(DecodeError::Truncated {
                            at: self.input.len(),
                        }),
                    };
                }
                b'\n' => return Err(DecodeError::MissingCrlf { at }),
                _ => {}
            }
        }
        Err(DecodeError::Truncated {
            at: self.input.len(),
        })
    }

    fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        self.input.get(start..end).unwrap_or_default()
    }

    /// A canonical non-negative decimal line (no sign, no leading zero except `0`).
    fn length(&mut self) -> Result<usize, DecodeError> {
        let (start, end) = self.line()?;
        parse_canonical(self.slice(start, end))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(DecodeError::BadLength { at: start })
    }

    /// The remaining input length.
    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// `len` bytes of blob payload followed by `\r\n`.
    fn blob_body(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        let end = start.checked_add(len).ok_or(DecodeError::Truncated {
            at: self.input.len(),
        })?;
        let crlf_end = end.checked_add(2).ok_or(DecodeError::Truncated {
            at: self.input.len(),
        })?;
        if crlf_end > self.input.len() {
            return Err(DecodeError::Truncated {
                at: self.input.len(),
            });
        }
        if self.slice(end, crlf_end) != b"\r\n" {
            return Err(DecodeError::MissingCrlf { at: end });
        }
        self.pos = crlf_end;
        Ok(self.input.slice(start..end))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos < self.input.len() {
            return Err(DecodeError::TrailingBytes { at: self.pos });
        }
        Ok(())
    }
}

/// Parses canonical decimal digits: at least one, no leading zero unless the number is 0.
fn parse_canonical(digits: &[u8]) -> Option<u64> {
    match digits {
        [b'0', _, ..] => None,
        _ => decimal::parse(digits),
    }
}

/// Decodes exactly one reply value (`+`, `-`, `:`, `$`, `$-1`) filling the whole input.
pub fn decode_reply(input: &Bytes) -> Result<Reply, DecodeError> {
    if input.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut r = Reader::new(input);
    let (at, tag) = r.type_byte()?;
    let reply = match tag {
        b'+' => {
            let (s, e) = r.line()?;
            Reply::Simple(input.slice(s..e))
        }
        b'-' => {
            let (s, e) = r.line()?;
            Reply::Error(input.slice(s..e))
        }
        b':' => {
            let (s, e) = r.line()?;
            let bad = DecodeError::BadInteger { at: s };
            let n = match r.slice(s, e) {
                [b'-', b'0', ..] => return Err(bad),
                [b'-', digits @ ..] => parse_canonical(digits)
                    .and_then(|v| 0i64.checked_sub_unsigned(v))
                    .ok_or(bad)?,
                digits => parse_canonical(digits)
                    .and_then(|v| i64::try_from(v).ok())
                    .ok_or(bad)?,
            };
            Reply::Integer(n)
        }
        b'$' => {
            if input.get(r.pos..r.pos + 4) == Some(&b"-1\r\n"[..]) {
                r.pos += 4;
                Reply::Null
            } else {
                let len = r.length()?;
                Reply::Blob(r.blob_body(len)?)
            }
        }
        found => return Err(DecodeError::UnexpectedType { at, found }),
    };
    r.finish()?;
    Ok(reply)
}

/// Decodes exactly one array of blob strings (a request or a notification) filling the whole input.
pub fn decode_array(input: &Bytes) -> Result<Vec<Bytes>, DecodeError> {
    if input.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut r = Reader::new(input);
    let (at, tag) = r.type_byte()?;
    if tag != b'*' {
        return Err(DecodeError::UnexpectedType { at, found: tag });
    }
    let count = r.length()?;
    // Every element takes at least 6 bytes (`$0\r\n\r\n`).
    let mut items = Vec::with_capacity(count.min(r.remaining() / 6));
    for _ in 0..count {
        let (at, tag) = r.type_byte()?;
        if tag != b'$' {
            return Err(DecodeError::NotABlob { at, found: tag });
        }
        let len = r.length()?;
        items.push(r.blob_body(len)?);
    }
    r.finish()?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(args: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_array(args.iter().copied(), &mut out);
        assert_eq!(out.len(), encoded_array_len(args), "{args:?}");
        out.to_vec()
    }

    fn reply(b: &'static [u8]) -> Result<Reply, DecodeError> {
        decode_reply(&Bytes::from_static(b))
    }

    fn array(b: &'static [u8]) -> Result<Vec<Bytes>, DecodeError> {
        decode_array(&Bytes::from_static(b))
    }

    const REQUESTS: &[(&[&[u8]], &[u8])] = &[
        (
            &[b"SET", b"SETKEY2", b"VALUE5"],
            b"*3\r\n$3\r\nSET\r\n$7\r\nSETKEY2\r\n$6\r\nVALUE5\r\n",
        ),
        (&[b"GET", b"SETKEY2"], b"*2\r\n$3\r\nGET\r\n$7\r\nSETKEY2\r\n"),
        (&[b"DEL", b"SETKEY2"], b"*2\r\n$3\r\nDEL\r\n$7\r\nSETKEY2\r\n"),
        (
            &[b"VDEL", b"SETKEY2", b"ABC"],
            b"*3\r\n$4\r\nVDEL\r\n$7\r\nSETKEY2\r\n$3\r\nABC\r\n",
        ),
        (
            &[b"KEYNOTIFY", b"SOMEKEY"],
            b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n",
        ),
        (
            &[b"KEYNOTIFY", b"SOMEKEY", b"STOP"],
            b"*3\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n$4\r\nSTOP\r\n",
        ),
        (
            &[b"SET", b"feas-lock", b"feas-client", b"NEX", b"PX", b"10000"],
            b"*6\r\n$3\r\nSET\r\n$9\r\nfeas-lock\r\n$11\r\nfeas-client\r\n$3\r\nNEX\r\n$2\r\nPX\r\n$5\r\n10000\r\n",
        ),
        (
            &[b"NOTIFY", b"SET", b"VALUE", b""],
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$0\r\n\r\n",
        ),
        (&[b"NOTIFY", b"DELETE"], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"),
        (&[], b"*0\r\n"),
    ];

    #[test]
    fn protocol_arrays_encode_and_decode() {
        for (args, bytes) in REQUESTS {
            assert_eq!(enc(args), *bytes);
            let decoded = array(bytes).unwrap();
            let decoded: Vec<&[u8]> = decoded.iter().map(|b| &b[..]).collect();
            assert_eq!(&decoded[..], *args);
        }
    }

    #[test]
    fn long_args_count_digits() {
        let big = vec![b'x'; 1234];
        let args: Vec<&[u8]> = vec![&big; 11].into_iter().map(|v| &v[..]).collect();
        let bytes = enc(&args);
        assert!(bytes.starts_with(b"*11\r\n$1234\r\nxx"));
        assert_eq!(decode_array(&Bytes::from(bytes)).unwrap().len(), 11);
    }

    #[test]
    fn decoded_blobs_share_the_input() {
        let input = Bytes::from_static(b"*1\r\n$3\r\nabc\r\n");
        let out = decode_array(&input).unwrap();
        assert_eq!(out[0].as_ptr(), input[8..].as_ptr());
    }

    #[test]
    fn protocol_replies_decode_and_encode() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple(Bytes::from_static(b"OK"))),
            (b":-1\r\n", Reply::Integer(-1)),
            (b":0\r\n", Reply::Integer(0)),
            (b":1\r\n", Reply::Integer(1)),
            (b"$-1\r\n", Reply::Null),
            (b"$0\r\n\r\n", Reply::Blob(Bytes::new())),
            (
                b"$6\r\nVALUE5\r\n",
                Reply::Blob(Bytes::from_static(b"VALUE5")),
            ),
            (
                b"$4\r\na\r\nb\r\n",
                Reply::Blob(Bytes::from_static(b"a\r\nb")),
            ),
            (
                b"-ERR syntax error\r\n",
                Reply::Error(Bytes::from_static(b"ERR syntax error")),
            ),
            (
                b"-ERR the key length is zero\r\n",
                Reply::Error(Bytes::from_static(b"ERR the key length is zero")),
            ),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
        ];
        for (bytes, expected) in cases {
            let input = Bytes::copy_from_slice(bytes);
            assert_eq!(decode_reply(&input).as_ref(), Ok(expected), "{input:?}");
            let mut out = BytesMut::new();
            encode_reply(expected, &mut out);
            assert_eq!(&out[..], *bytes);
        }
    }

    #[test]
    fn encode_reply_blanks_line_breaks_in_text() {
        let mut out = BytesMut::new();
        encode_reply(&Reply::Error(Bytes::from_static(b"ERR a\r\nb")), &mut out);
        assert_eq!(&out[..], b"-ERR a  b\r\n");
        assert!(decode_reply(&out.freeze()).is_ok());
    }

    #[test]
    fn malformed_replies() {
        use DecodeError::*;
        let cases: &[(&'static [u8], DecodeError)] = &[
            (b"", Empty),
            (b"+", Truncated { at: 1 }),
            (b"+OK", Truncated { at: 3 }),
            (b"+OK\r", Truncated { at: 4 }),
            (b"+OK\n", MissingCrlf { at: 3 }),
            (b"+O\rK\r\n", MissingCrlf { at: 2 }),
            (b"+OK\r\n+OK\r\n", TrailingBytes { at: 5 }),
            (b":\r\n", BadInteger { at: 1 }),
            (b":+1\r\n", BadInteger { at: 1 }),
            (b":-0\r\n", BadInteger { at: 1 }),
            (b":01\r\n", BadInteger { at: 1 }),
            (b": 1\r\n", BadInteger { at: 1 }),
            (b":-\r\n", BadInteger { at: 1 }),
            (b":9223372036854775808\r\n", BadInteger { at: 1 }),
            (b":-9223372036854775809\r\n", BadInteger { at: 1 }),
            (b":99999999999999999999999\r\n", BadInteger { at: 1 }),
            (b"$-2\r\n", BadLength { at: 1 }),
            (b"$-1\r\nx", TrailingBytes { at: 5 }),
            (b"$-1", Truncated { at: 3 }),
            (b"$01\r\nx\r\n", BadLength { at: 1 }),
            (b"$\r\n\r\n", BadLength { at: 1 }),
            (b"$18446744073709551615\r\n", Truncated { at: 23 }),
            (b"$99999999999999999999999\r\n", BadLength { at: 1 }),
            (b"$3\r\nab\r\n", Truncated { at: 8 }),
            (b"$1\r\nab\r\n", MissingCrlf { at: 5 }),
            (b"$2\r\nab", Truncated { at: 6 }),
            (b"$2\r\nab\r", Truncated { at: 7 }),
            (b"$2\r\nab\r\n\r\n", TrailingBytes { at: 8 }),
            (b"*1\r\n$2\r\nab\r\n", UnexpectedType { at: 0, found: b'*' }),
            (b"_\r\n", UnexpectedType { at: 0, found: b'_' }),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                reply(bytes).as_ref(),
                Err(err),
                "{:?}",
                Bytes::from_static(bytes)
            );
        }
    }

    #[test]
    fn error_reply_without_err_prefix_is_kept_whole() {
        assert_eq!(reply(b"-1\r\n"), Ok(Reply::Error(Bytes::from_static(b"1"))));
    }

    #[test]
    fn malformed_arrays() {
        use DecodeError::*;
        let cases: &[(&'static [u8], DecodeError)] = &[
            (b"", Empty),
            (b"*", Truncated { at: 1 }),
            (b"$3\r\nabc\r\n", UnexpectedType { at: 0, found: b'$' }),
            (b"*-1\r\n", BadLength { at: 1 }),
            (b"*01\r\n$1\r\na\r\n", BadLength { at: 1 }),
            (b"*1\r\n", Truncated { at: 4 }),
            (b"*2\r\n$1\r\na\r\n", Truncated { at: 11 }),
            (b"*1\r\n$1\r\na\r\n$1\r\nb\r\n", TrailingBytes { at: 11 }),
            (b"*1\r\n+OK\r\n", NotABlob { at: 4, found: b'+' }),
            (b"*1\r\n:1\r\n", NotABlob { at: 4, found: b':' }),
            (b"*1\r\n$-1\r\n", BadLength { at: 5 }),
            (b"*1\r\n$+1\r\na\r\n", BadLength { at: 5 }),
            (b"*1\n$1\r\na\r\n", MissingCrlf { at: 2 }),
            (b"*1\r\n$1\r\nab\r\n", MissingCrlf { at: 9 }),
            (b"*18446744073709551615\r\n", Truncated { at: 23 }),
            (b"*18446744073709551616\r\n", BadLength { at: 1 }),
            (b"*1\r\n$18446744073709551615\r\nab", Truncated { at: 29 }),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                array(bytes).as_ref(),
                Err(err),
                "{:?}",
                Bytes::from_static(bytes)
            );
        }
    }
}
