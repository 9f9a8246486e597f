//! A PUBLISH template: the bytes that a stream of QoS 1 publishes shares, encoded once, and a
//! writer that adds what differs per publish without building a [`Message`].
//!
//! [`PublishTemplate::new`] takes a sample message: its topic, Content Type, Response Topic and
//! user properties are what every publish shares, except the user properties it is told are
//! variable. [`PublishTemplate::write`] appends a whole QoS 1 PUBLISH from the parts that differ:
//! the Message Expiry Interval, the Correlation Data, the value of each variable user property
//! (or its absence) and the payload. The bytes are exactly those that the codec's
//! `encode_publish` writes for the equivalent message (properties in the same order), with packet
//! identifier 0, for the session to fill in ([`Session::publish_packet`]).
//!
//! Nothing here knows what the publishes are for.

use bytes::{BufMut, BytesMut};

use super::codec::{property, put_str, put_varint, varint_len, MAX_REMAINING_LENGTH};
#[cfg(doc)]
use super::Session;
use crate::Message;

/// The first byte of the PUBLISH the template writes: QoS 1, DUP 0, RETAIN 0.
const PUBLISH_QOS_1: u8 = 0x32;

/// The longest string or binary field MQTT can carry.
const MAX_FIELD: usize = u16::MAX as usize;

/// The bytes every publish of one kind shares; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct PublishTemplate {
    /// The topic name, with its length prefix.
    topic: Box<[u8]>,
    /// The Content Type and Response Topic properties (either may be absent).
    head: Box<[u8]>,
    /// The user properties, in the sample's order, fixed ones merged.
    user: Box<[UserPart]>,
    /// The length of `head` and of every fixed user property.
    fixed_len: usize,
    /// How many variable user properties there are.
    variables: usize,
}

/// A run of the user properties of a [`PublishTemplate`].
#[derive(Clone, Debug)]
enum UserPart {
    /// User properties that every publish carries as they are (identifier, name, value).
    Fixed(Box<[u8]>),
    /// A user property whose value each write gives: its identifier and name (with its length
    /// prefix), and the index of its value in [`PublishTemplate::write`]'s `values`.
    Variable { head: Box<[u8]>, value: usize },
}

/// Why [`PublishTemplate::write`] wrote nothing: the PUBLISH would be longer than MQTT allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// The size the whole packet would have; `usize::MAX` when a field (the correlation data or
    /// a value) is longer than 65 535 bytes, or the size does not even fit a `usize`.
    pub size: usize,
}

/// Appends `s` with its length prefix; `None` (and nothing appended) when it is too long.
fn put_field(out: &mut Vec<u8>, s: &[u8]) -> Option<()> {
    if s.len() > MAX_FIELD {
        return None;
    }
    put_str(out, s);
    Some(())
}

impl PublishTemplate {
    /// The template of publishes like `sample`: its topic, Content Type, Response Topic and user
    /// properties are what every publish shares, except the user properties named in
    /// `variable`, which take a value per write and keep their position in the sample's order
    /// (their values in the sample are not used). `values[i]` of [`PublishTemplate::write`] is
    /// the value of `variable[i]`. The sample's QoS, Message Expiry Interval, Correlation Data
    /// and payload are not used either: every publish is QoS 1, and those are given per write.
    ///
    /// `None` when a string of the sample is too long for MQTT (over 65 535 bytes), or when a
    /// name in `variable` is not the name of exactly one user property of the sample (or is
    /// given twice).
    pub(crate) fn new(sample: &Message, variable: &[&str]) -> Option<PublishTemplate> {
        let mut topic = Vec::new();
        put_field(&mut topic, sample.topic.as_bytes())?;
        let mut head = Vec::new();
        if let Some(content_type) = &sample.content_type {
            head.put_u8(property::CONTENT_TYPE);
            put_field(&mut head, content_type.as_bytes())?;
        }
        if let Some(response_topic) = &sample.response_topic {
            head.put_u8(property::RESPONSE_TOPIC);
            put_field(&mut head, response_topic.as_bytes())?;
        }
        let mut fixed_len = head.len();

        let mut user = Vec::new();
        let mut run = Vec::new();
        let mut found = vec![false; variable.len()];
        for (name, value) in &sample.user_properties {
            let mut property = Vec::new();
            property.put_u8(property::USER_PROPERTY);
            put_field(&mut property, name.as_bytes())?;
            match variable.iter().position(|v| *v == &**name) {
                None => {
                    put_field(&mut property, value.as_bytes())?;
                    run.extend_from_slice(&property);
                }
                Some(index) => {
                    if std::mem::replace(&mut found[index], true) {
                        return None; // The name of two user properties of the sample.
                    }
                    if !run.is_empty() {
                        fixed_len += run.len();
                        user.push(UserPart::Fixed(std::mem::take(&mut run).into()));
                    }
                    user.push(UserPart::Variable {
                        head: property.into(),
                        value: index,
                    });
                }
            }
        }
        // Every name given is one property's, and no name is given twice (the second would find
        // nothing of its own).
        if found.contains(&false) {
            return None;
        }
        if !run.is_empty() {
            fixed_len += run.len();
            user.push(UserPart::Fixed(run.into()));
        }
        Some(PublishTemplate {
            topic: topic.into(),
            head: head.into(),
            user: user.into(),
            fixed_len,
            variables: variable.len(),
        })
    }

    /// Appends a QoS 1 PUBLISH (DUP 0, RETAIN 0) with packet identifier 0 to `out` and returns
    /// the offset of the packet identifier in the bytes appended (the session fills it in).
    ///
    /// `message_expiry` and `correlation_data` are the Message Expiry Interval and Correlation
    /// Data properties (`None`: absent). `values` has one entry per name in `variable` of
    /// [`PublishTemplate::new`], in that order: `None` leaves that user property out,
    /// `Some(parts)` writes the concatenation of `parts` as its value (a missing entry counts as
    /// `None`, extra entries are ignored). `write_payload` appends the payload, exactly
    /// `payload_len` bytes, after the rest of the packet (room for it is reserved).
    ///
    /// On [`TooLarge`] nothing is appended and `write_payload` is not called.
    pub(crate) fn write(
        &self,
        message_expiry: Option<u32>,
        correlation_data: Option<&[u8]>,
        values: &[Option<&[&[u8]]>],
        payload_len: usize,
        write_payload: impl FnOnce(&mut BytesMut),
        out: &mut BytesMut,
    ) -> Result<usize, TooLarge> {
        debug_assert_eq!(
            values.len(),
            self.variables,
            "one value per variable property"
        );
        let value_of = |index: usize| values.get(index).copied().flatten();
        let too_long = TooLarge { size: usize::MAX };

        let mut props = self.fixed_len + message_expiry.map_or(0, |_| 1 + 4);
        if let Some(data) = correlation_data {
            if data.len() > MAX_FIELD {
                return Err(too_long);
            }
            props += 1 + 2 + data.len();
        }
        for part in self.user.iter() {
            if let UserPart::Variable { head, value: index } = part {
                if let Some(parts) = value_of(*index) {
                    let len = parts.iter().map(|p| p.len()).sum::<usize>();
                    if len > MAX_FIELD {
                        return Err(too_long);
                    }
                    props += head.len() + 2 + len;
                }
            }
        }
        let header = self.topic.len() + 2 + varint_len(props) + props;
        let remaining = header.checked_add(payload_len).ok_or(too_long)?;
        let size = (1 + varint_len(remaining))
            .checked_add(remaining)
            .ok_or(too_long)?;
        if remaining > MAX_REMAINING_LENGTH {
            return Err(TooLarge { size });
        }

        let start = out.len();
        out.reserve(size);
        out.put_u8(PUBLISH_QOS_1);
        put_varint(out, remaining);
        out.put_slice(&self.topic);
        let id_at = out.len() - start;
        out.put_u16(0);
        put_varint(out, props);
        if let Some(expiry) = message_expiry {
            out.put_u8(property::MESSAGE_EXPIRY_INTERVAL);
            out.put_u32(expiry);
        }
        out.put_slice(&self.head);
        if let Some(data) = correlation_data {
            out.put_u8(property::CORRELATION_DATA);
            put_str(out, data);
        }
        for part in self.user.iter() {
            match part {
                UserPart::Fixed(bytes) => out.put_slice(bytes),
                UserPart::Variable { head, value: index } => {
                    if let Some(parts) = value_of(*index) {
                        out.put_slice(head);
                        // Checked above: at most 65 535 bytes.
                        out.put_u16(parts.iter().map(|p| p.len()).sum::<usize>() as u16);
                        for p in parts {
                            out.put_slice(p);
                        }
                    }
                }
            }
        }
        debug_assert_eq!(out.len() - start, size - payload_len);
        write_payload(out);
        debug_assert_eq!(out.len() - start, size, "the payload is payload_len bytes");
        Ok(id_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::encode_publish;
    use crate::{QoS, SharedStr};
    use bytes::Bytes;

    /// What one write is given.
    struct Write<'a> {
        expiry: Option<u32>,
        correlation: Option<&'a [u8]>,
        values: Vec<Option<&'a [&'a [u8]]>>,
        payload: &'a [u8],
    }

    /// The message `write` stands for: the sample with the per-write parts.
    fn equivalent(sample: &Message, variable: &[&str], w: &Write<'_>) -> Message {
        let user_properties = sample
            .user_properties
            .iter()
            .filter_map(
                |(name, value)| match variable.iter().position(|v| v == name) {
                    None => Some((name.clone(), value.clone())),
                    Some(i) => w.values[i].map(|parts| {
                        let text = String::from_utf8(parts.concat()).unwrap();
                        (name.clone(), SharedStr::from(text))
                    }),
                },
            )
            .collect();
        Message {
            qos: QoS::AtLeastOnce,
            message_expiry: w.expiry,
            correlation_data: w.correlation.map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(w.payload),
            user_properties,
            ..sample.clone()
        }
    }

    /// The packet `template` writes for `w`, appended after other bytes, its packet id set.
    fn written(template: &PublishTemplate, w: &Write<'_>, packet_id: u16) -> Vec<u8> {
        let mut out = BytesMut::from(&b"before"[..]);
        let id_at = template
            .write(
                w.expiry,
                w.correlation,
                &w.values,
                w.payload.len(),
                |out| out.extend_from_slice(w.payload),
                &mut out,
            )
            .unwrap();
        assert_eq!(&out[..6], b"before");
        let mut packet = out.split_off(6).to_vec();
        assert_eq!(&packet[id_at..id_at + 2], &[0, 0]);
        packet[id_at..id_at + 2].copy_from_slice(&packet_id.to_be_bytes());
        packet
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(SharedStr, SharedStr)> {
        pairs
            .iter()
            .map(|(k, v)| (SharedStr::from(*k), SharedStr::from(*v)))
            .collect()
    }

    #[test]
    fn writes_the_bytes_of_the_equivalent_message() {
        let long_topic = "t/".repeat(150);
        let long_value = "v".repeat(400);
        let base = Message {
            topic: "t".into(),
            qos: QoS::AtLeastOnce,
            // Not used by the template: every write gives its own.
            payload: Bytes::from_static(b"sample payload"),
            message_expiry: Some(99),
            correlation_data: Some(Bytes::from_static(b"sample")),
            ..Message::default()
        };
        let samples: Vec<(Message, Vec<&str>)> = vec![
            // No properties at all.
            (base.clone(), vec![]),
            // Only a variable property: first and last at once.
            (
                Message {
                    user_properties: props(&[("v", "sample")]),
                    ..base.clone()
                },
                vec!["v"],
            ),
            // Variable first, then fixed; a QoS 0 sample (the template writes QoS 1).
            (
                Message {
                    topic: long_topic.as_str().into(),
                    qos: QoS::AtMostOnce,
                    content_type: Some("text/plain".into()),
                    user_properties: props(&[("first", ""), ("a", "1"), ("b", &long_value)]),
                    ..base.clone()
                },
                vec!["first"],
            ),
            // The shape of a state-store request: variables in the middle and last.
            (
                Message {
                    topic: "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke"
                        .into(),
                    content_type: Some("application/octet-stream".into()),
                    response_topic: Some("clients/client-1/statestore/resp".into()),
                    user_properties: props(&[
                        ("__srcId", "client-1"),
                        ("__ts", "sample"),
                        ("__protVer", "1.0"),
                        ("$partition", "client-1"),
                        ("$high_priority", ""),
                        ("__ft", "sample"),
                    ]),
                    ..base.clone()
                },
                vec!["__ts", "__ft"],
            ),
            // Values given in another order than the sample's; only a response topic; a name
            // that is fixed when it comes twice.
            (
                Message {
                    topic: long_topic.as_str().into(),
                    response_topic: Some("r".into()),
                    user_properties: props(&[
                        ("x", "1"),
                        ("late", "?"),
                        ("x", "2"),
                        ("early", "?"),
                        ("y", ""),
                    ]),
                    ..base
                },
                vec!["early", "late"],
            ),
        ];
        let big = vec![b'p'; 20_000];
        let payloads: [&[u8]; 3] = [b"", b"*1\r\n$4\r\nPING\r\n", &big];
        let corr_16 = [0xAB; 16];
        let corr_300 = [0xCD; 300];
        let correlations: [Option<&[u8]>; 4] = [None, Some(b""), Some(&corr_16), Some(&corr_300)];
        let one: &[&[u8]] = &[b"1700000000123:00042:client-1"];
        let split: &[&[u8]] = &[b"1700000000123:00042:", b"", b"client-1"];
        let empty: &[&[u8]] = &[];
        let long_value_parts: &[&[u8]] = &[long_value.as_bytes(), long_value.as_bytes()];
        for (sample, variable) in &samples {
            let template = PublishTemplate::new(sample, variable).unwrap();
            let value_sets: Vec<Vec<Option<&[&[u8]]>>> = vec![
                vec![None; variable.len()],
                vec![Some(one); variable.len()],
                (0..variable.len())
                    .map(|i| [Some(split), None, Some(empty), Some(long_value_parts)][i % 4])
                    .collect(),
                (0..variable.len())
                    .map(|i| [None, Some(long_value_parts)][i % 2])
                    .collect(),
            ];
            for expiry in [None, Some(0), Some(u32::MAX)] {
                for correlation in correlations {
                    for values in &value_sets {
                        for payload in payloads {
                            let w = Write {
                                expiry,
                                correlation,
                                values: values.clone(),
                                payload,
                            };
                            let m = equivalent(sample, variable, &w);
                            let mut expected = BytesMut::new();
                            encode_publish(&mut expected, &m, 0x1234, false).unwrap();
                            assert_eq!(
                                written(&template, &w, 0x1234),
                                &expected[..],
                                "{variable:?} {expiry:?} {correlation:?} {values:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn too_large_writes_nothing() {
        let sample = Message {
            topic: "t".into(),
            user_properties: props(&[("v", "")]),
            ..Message::default()
        };
        let template = PublishTemplate::new(&sample, &["v"]).unwrap();
        let mut out = BytesMut::from(&b"before"[..]);
        let never = |_: &mut BytesMut| panic!("no payload is written for a refused packet");
        // The size of the packet with an empty payload and no value, to predict larger ones.
        let header = {
            let mut o = BytesMut::new();
            template
                .write(None, None, &[None], 0, |_| {}, &mut o)
                .unwrap();
            o.len() - 2 // the first byte and a one-byte remaining length
        };
        for payload_len in [MAX_REMAINING_LENGTH, MAX_REMAINING_LENGTH - header + 1] {
            assert_eq!(
                template.write(None, None, &[None], payload_len, never, &mut out),
                Err(TooLarge {
                    size: 1 + 4 + header + payload_len
                })
            );
        }
        assert_eq!(
            template.write(None, None, &[None], usize::MAX - 3, never, &mut out),
            Err(TooLarge { size: usize::MAX })
        );
        let field = vec![b'c'; MAX_FIELD + 1];
        assert_eq!(
            template.write(None, Some(&field), &[None], 0, never, &mut out),
            Err(TooLarge { size: usize::MAX })
        );
        let half = &field[..MAX_FIELD / 2 + 1];
        let parts: &[&[u8]] = &[half, half];
        assert_eq!(
            template.write(None, None, &[Some(parts)], 0, never, &mut out),
            Err(TooLarge { size: usize::MAX })
        );
        assert_eq!(&out[..], b"before");
        // At the limits it still writes.
        let parts: &[&[u8]] = &[&field[..MAX_FIELD]];
        let w = Write {
            expiry: None,
            correlation: Some(&field[..MAX_FIELD]),
            values: vec![Some(parts)],
            payload: b"x",
        };
        let mut expected = BytesMut::new();
        encode_publish(&mut expected, &equivalent(&sample, &["v"], &w), 7, false).unwrap();
        assert_eq!(written(&template, &w, 7), &expected[..]);
    }

    #[test]
    fn samples_that_make_no_template() {
        let long = "l".repeat(MAX_FIELD + 1);
        let sample = Message {
            topic: "t".into(),
            user_properties: props(&[("a", "1"), ("b", "2"), ("b", "3")]),
            ..Message::default()
        };
        assert!(PublishTemplate::new(&sample, &["a"]).is_some());
        // A string too long for MQTT.
        for m in [
            Message {
                topic: long.as_str().into(),
                ..sample.clone()
            },
            Message {
                content_type: Some(long.as_str().into()),
                ..sample.clone()
            },
            Message {
                response_topic: Some(long.as_str().into()),
                ..sample.clone()
            },
            Message {
                user_properties: props(&[("a", &long)]),
                ..sample.clone()
            },
            Message {
                user_properties: props(&[(&long, "1")]),
                ..sample.clone()
            },
        ] {
            assert!(PublishTemplate::new(&m, &[]).is_none());
        }
        // The sample's value of a variable property is not used, however long.
        let m = Message {
            user_properties: props(&[("a", &long)]),
            ..sample.clone()
        };
        assert!(PublishTemplate::new(&m, &["a"]).is_some());
        // A variable name that is not one property's: absent, twice in the sample, given twice.
        assert!(PublishTemplate::new(&sample, &["c"]).is_none());
        assert!(PublishTemplate::new(&sample, &["b"]).is_none());
        assert!(PublishTemplate::new(&sample, &["a", "a"]).is_none());
    }
}
