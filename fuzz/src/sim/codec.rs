//! MQTT v5 packets as the modelled broker sees them: a strict reader of what a client may send,
//! and writers of what the broker sends back.
//!
//! Written for the simulator from the MQTT v5 specification, apart from the crate's own codec, so
//! that each checks the other: every rule a client's packet must follow that a server can see is
//! checked here (fixed-header flags, shortest variable byte integers, UTF-8 strings without NUL,
//! properties allowed in the packet and not repeated, packet identifiers not zero, nothing after
//! the last field). A packet the model does not serve (QoS 2, UNSUBSCRIBE, AUTH) is refused too:
//! the client never sends one.

use leasedlock::bytes::{BufMut, Bytes, BytesMut};
use leasedlock::{Message, QoS, SharedStr};

/// What is wrong with a client's packet.
pub(crate) type Bad = String;

/// A CONNECT, with the fields the broker acts on.
#[derive(Debug)]
pub(crate) struct Connect {
    pub client_id: String,
    pub clean_start: bool,
    /// Session Expiry Interval, in seconds (0 when absent: the session ends with the connection).
    pub session_expiry: u32,
    /// Keep Alive, in seconds (0: off).
    pub keep_alive: u16,
    /// The client's Receive Maximum (65 535 when absent).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size, if it set one.
    pub maximum_packet_size: Option<u32>,
}

/// A packet a client may send.
#[derive(Debug)]
pub(crate) enum Packet {
    Connect(Connect),
    Publish {
        packet_id: u16,
        dup: bool,
        retain: bool,
        message: Message,
    },
    PubAck {
        packet_id: u16,
        reason: u8,
    },
    Subscribe {
        packet_id: u16,
        /// Each filter with its subscription options byte.
        filters: Vec<(String, u8)>,
    },
    PingReq,
    Disconnect {
        reason: u8,
    },
}

/// The length of the packet at the start of `buf`; `None` until all of it has arrived.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, Bad> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err("remaining length not in its shortest form".into());
            }
            let len = 2 + i + remaining;
            return Ok((buf.len() >= len).then_some(len));
        }
    }
    Err("remaining length longer than 4 bytes".into())
}

/// The messages of the PUBLISH packets in `buf`, which must hold whole packets, each with its
/// DUP flag (a re-send).
pub(crate) fn published(mut buf: &[u8]) -> Result<Vec<(bool, Message)>, Bad> {
    let mut messages = Vec::new();
    while !buf.is_empty() {
        let len = frame_len(buf)?.ok_or("a buffer ends inside a packet")?;
        if buf[0] >> 4 == 3 {
            if let Packet::Publish { dup, message, .. } = decode(&buf[..len])? {
                messages.push((dup, message));
            }
        }
        buf = &buf[len..];
    }
    Ok(messages)
}

/// Decodes one whole packet (as located by [`frame_len`]).
pub(crate) fn decode(packet: &[u8]) -> Result<Packet, Bad> {
    let first = packet[0];
    let (kind, flags) = (first >> 4, first & 0x0f);
    let header = 2 + packet[1..].iter().take_while(|b| **b & 0x80 != 0).count();
    let mut r = Reader {
        buf: &packet[header..],
        at: 0,
    };
    let want_flags = |want: u8, name: &str| {
        if flags == want {
            Ok(())
        } else {
            Err(format!("{name} with fixed-header flags {flags:#x}"))
        }
    };
    let packet = match kind {
        1 => {
            want_flags(0, "CONNECT")?;
            Packet::Connect(connect(&mut r)?)
        }
        3 => read_publish(&mut r, flags)?,
        4 => {
            want_flags(0, "PUBACK")?;
            read_puback(&mut r)?
        }
        8 => {
            want_flags(2, "SUBSCRIBE")?;
            subscribe(&mut r)?
        }
        12 => {
            want_flags(0, "PINGREQ")?;
            Packet::PingReq
        }
        14 => {
            want_flags(0, "DISCONNECT")?;
            disconnect(&mut r)?
        }
        5..=7 => return Err(format!("packet type {kind}: QoS 2 is not modelled")),
        10 => return Err("UNSUBSCRIBE: not modelled (the client never unsubscribes)".into()),
        15 => return Err("AUTH without an authentication method".into()),
        0 => return Err("reserved packet type 0".into()),
        other => {
            return Err(format!(
                "packet type {other} goes from server to client only"
            ))
        }
    };
    if !r.is_empty() {
        return Err(format!("{} bytes after the last field", r.buf.len() - r.at));
    }
    Ok(packet)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or("a field runs past the end of the packet")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.at.min(self.buf.len())..];
        self.at = self.buf.len();
        s
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Bad> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A Variable Byte Integer, in its shortest form.
    fn varint(&mut self) -> Result<usize, Bad> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            value |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err("variable byte integer not in its shortest form".into());
                }
                return Ok(value);
            }
        }
        Err("variable byte integer longer than 4 bytes".into())
    }

    fn binary(&mut self) -> Result<&'a [u8], Bad> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 string: valid UTF-8 without U+0000.
    fn string(&mut self) -> Result<&'a str, Bad> {
        let s = std::str::from_utf8(self.binary()?).map_err(|e| format!("string: {e}"))?;
        if s.contains('\0') {
            return Err(format!("string with U+0000: {s:?}"));
        }
        Ok(s)
    }
}

/// Reads a property block: its length, then each property through `f`, which reads the value and
/// returns `false` for a property the packet may not carry. Only User Property may repeat.
fn properties<'a>(
    r: &mut Reader<'a>,
    packet: &str,
    mut f: impl FnMut(usize, &mut Reader<'a>) -> Result<bool, Bad>,
) -> Result<(), Bad> {
    let len = r.varint()?;
    let mut p = Reader {
        buf: r.take(len)?,
        at: 0,
    };
    let mut seen = 0u64;
    while !p.is_empty() {
        let id = p.varint()?;
        if id != 0x26 {
            let bit = 1u64 << (id % 64);
            if seen & bit != 0 {
                return Err(format!("{packet}: property {id:#04x} twice"));
            }
            seen |= bit;
        }
        if !f(id, &mut p).map_err(|e| format!("{packet}: property {id:#04x}: {e}"))? {
            return Err(format!("{packet}: property {id:#04x} not allowed"));
        }
    }
    Ok(())
}

fn flag(r: &mut Reader<'_>) -> Result<u8, Bad> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        v => Err(format!("{v} where 0 or 1 is allowed")),
    }
}

fn user_property<'a>(r: &mut Reader<'a>) -> Result<(&'a str, &'a str), Bad> {
    Ok((r.string()?, r.string()?))
}

fn topic_name(topic: &str) -> Result<(), Bad> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(format!("bad topic name {topic:?}"));
    }
    Ok(())
}

/// A topic filter: not empty, `#` only as the last whole level, `+` only as a whole level.
fn topic_filter(filter: &str) -> Result<(), Bad> {
    let levels: Vec<&str> = filter.split('/').collect();
    let ok = !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i + 1 == levels.len(),
            "+" => true,
            other => !other.contains(['+', '#']),
        });
    if ok {
        Ok(())
    } else {
        Err(format!("bad topic filter {filter:?}"))
    }
}

fn connect(r: &mut Reader<'_>) -> Result<Connect, Bad> {
    let name = r.string()?;
    if name != "MQTT" {
        return Err(format!("CONNECT: protocol name {name:?}"));
    }
    let level = r.u8()?;
    if level != 5 {
        return Err(format!("CONNECT: protocol level {level}"));
    }
    let flags = r.u8()?;
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0x20 != 0;
    if flags & 0x01 != 0 {
        return Err("CONNECT: reserved flag set".into());
    }
    if will_qos == 3 || (!will && (will_qos != 0 || will_retain)) {
        return Err(format!("CONNECT: will flags {flags:#x}"));
    }
    let mut c = Connect {
        client_id: String::new(),
        clean_start: flags & 0x02 != 0,
        session_expiry: 0,
        keep_alive: r.u16()?,
        receive_maximum: u16::MAX,
        maximum_packet_size: None,
    };
    let (mut method, mut data) = (false, false);
    properties(r, "CONNECT", |id, p| {
        match id {
            0x11 => c.session_expiry = p.u32()?,
            0x21 => {
                c.receive_maximum = p.u16()?;
                if c.receive_maximum == 0 {
                    return Err("Receive Maximum 0".into());
                }
            }
            0x27 => {
                let max = p.u32()?;
                if max == 0 {
                    return Err("Maximum Packet Size 0".into());
                }
                c.maximum_packet_size = Some(max);
            }
            0x22 => {
                p.u16()?;
            }
            0x17 | 0x19 => {
                flag(p)?;
            }
            0x26 => {
                user_property(p)?;
            }
            0x15 => {
                p.string()?;
                method = true;
            }
            0x16 => {
                p.binary()?;
                data = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if data && !method {
        return Err("CONNECT: Authentication Data without a method".into());
    }
    c.client_id = r.string()?.to_owned();
    if will {
        properties(r, "will", |id, p| {
            match id {
                0x18 | 0x02 => {
                    p.u32()?;
                }
                0x01 => {
                    flag(p)?;
                }
                0x03 | 0x08 => {
                    p.string()?;
                }
                0x09 => {
                    p.binary()?;
                }
                0x26 => {
                    user_property(p)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        topic_name(r.string()?)?;
        r.binary()?;
    }
    if flags & 0x80 != 0 {
        r.string()?;
    }
    if flags & 0x40 != 0 {
        r.binary()?;
    }
    Ok(c)
}

fn read_publish(r: &mut Reader<'_>, flags: u8) -> Result<Packet, Bad> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let qos = match (flags >> 1) & 3 {
        0 if dup => return Err("PUBLISH: DUP set on QoS 0".into()),
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => return Err("PUBLISH: QoS 2 is not modelled".into()),
        _ => return Err("PUBLISH: QoS 3".into()),
    };
    let topic = r.string()?;
    topic_name(topic)?;
    let packet_id = match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => match r.u16()? {
            0 => return Err("PUBLISH: packet identifier 0".into()),
            id => id,
        },
    };
    let mut m = Message {
        topic: SharedStr::from(topic),
        qos,
        ..Message::default()
    };
    let mut utf8_payload = false;
    properties(r, "PUBLISH", |id, p| {
        match id {
            0x01 => utf8_payload = flag(p)? == 1,
            0x02 => m.message_expiry = Some(p.u32()?),
            0x03 => m.content_type = Some(p.string()?.into()),
            0x08 => {
                let t = p.string()?;
                topic_name(t)?;
                m.response_topic = Some(t.into());
            }
            0x09 => m.correlation_data = Some(Bytes::copy_from_slice(p.binary()?)),
            0x26 => {
                let (k, v) = user_property(p)?;
                m.user_properties.push((k.into(), v.into()));
            }
            // Topic Alias: the broker allows none (no Topic Alias Maximum in its CONNACK).
            // Subscription Identifier: from server to client only.
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let payload = r.rest();
    if utf8_payload && std::str::from_utf8(payload).is_err() {
        return Err("PUBLISH: payload format UTF-8, payload is not".into());
    }
    m.payload = Bytes::copy_from_slice(payload);
    Ok(Packet::Publish {
        packet_id,
        dup,
        retain,
        message: m,
    })
}

fn read_puback(r: &mut Reader<'_>) -> Result<Packet, Bad> {
    let packet_id = match r.u16()? {
        0 => return Err("PUBACK: packet identifier 0".into()),
        id => id,
    };
    let reason = if r.is_empty() { 0 } else { r.u8()? };
    if !matches!(
        reason,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    ) {
        return Err(format!("PUBACK: reason code {reason:#04x}"));
    }
    if !r.is_empty() {
        properties(r, "PUBACK", |id, p| {
            match id {
                0x1f => {
                    p.string()?;
                }
                0x26 => {
                    user_property(p)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }
    Ok(Packet::PubAck { packet_id, reason })
}

fn subscribe(r: &mut Reader<'_>) -> Result<Packet, Bad> {
    let packet_id = match r.u16()? {
        0 => return Err("SUBSCRIBE: packet identifier 0".into()),
        id => id,
    };
    properties(r, "SUBSCRIBE", |id, p| {
        match id {
            0x0b => {
                if p.varint()? == 0 {
                    return Err("Subscription Identifier 0".into());
                }
            }
            0x26 => {
                user_property(p)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        topic_filter(filter)?;
        let options = r.u8()?;
        if options & 3 == 3 || (options >> 4) & 3 == 3 || options & 0xc0 != 0 {
            return Err(format!("SUBSCRIBE: options {options:#04x}"));
        }
        filters.push((filter.to_owned(), options));
    }
    if filters.is_empty() {
        return Err("SUBSCRIBE without a filter".into());
    }
    Ok(Packet::Subscribe { packet_id, filters })
}

fn disconnect(r: &mut Reader<'_>) -> Result<Packet, Bad> {
    let reason = if r.is_empty() { 0 } else { r.u8()? };
    if !matches!(
        reason,
        0x00 | 0x04 | 0x80 | 0x81 | 0x82 | 0x83 | 0x87 | 0x90 | 0x93..=0x99
    ) {
        return Err(format!("DISCONNECT: reason code {reason:#04x}"));
    }
    if !r.is_empty() {
        properties(r, "DISCONNECT", |id, p| {
            match id {
                0x11 => {
                    p.u32()?;
                }
                0x1f => {
                    p.string()?;
                }
                0x26 => {
                    user_property(p)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }
    Ok(Packet::Disconnect { reason })
}

// ----- what the broker writes -------------------------------------------------------------------

fn put_varint(out: &mut BytesMut, mut v: usize) {
    loop {
        let byte = (v % 128) as u8;
        v /= 128;
        out.put_u8(if v > 0 { byte | 0x80 } else { byte });
        if v == 0 {
            return;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    // The broker writes what the store made and its own constants: all shorter than 64 KiB.
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(&s[..s.len().min(usize::from(u16::MAX))]);
}

/// A packet from its first byte and its body.
fn packet(first: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(first);
    put_varint(&mut out, body.len());
    out.put_slice(body);
    out.freeze()
}

/// A property block: its length, then the properties.
fn put_properties(out: &mut BytesMut, props: &[u8]) {
    put_varint(out, props.len());
    out.put_slice(props);
}

/// A successful CONNACK, with Session Present as given, a Receive Maximum and a Server Keep
/// Alive if given; `extras` picks other optional properties (each allowed and harmless).
pub(crate) fn connack(
    session_present: bool,
    receive_maximum: Option<u16>,
    server_keep_alive: Option<u16>,
    extras: u64,
) -> Bytes {
    let mut props = BytesMut::new();
    if let Some(max) = receive_maximum {
        props.put_u8(0x21);
        props.put_u16(max);
    }
    if extras & 1 != 0 {
        props.put_slice(&[0x24, 1]); // Maximum QoS 1
    }
    if extras & 2 != 0 {
        props.put_slice(&[0x22, 0, 0]); // Topic Alias Maximum 0
    }
    if extras & 4 != 0 {
        props.put_slice(&[0x25, 0, 0x28, 1, 0x2a, 0]); // retain, wildcards, shared subscriptions
    }
    if let Some(secs) = server_keep_alive {
        props.put_u8(0x13);
        props.put_u16(secs);
    }
    if extras & 8 != 0 {
        props.put_u8(0x26);
        put_str(&mut props, b"broker");
        put_str(&mut props, b"simulated");
    }
    let mut body = BytesMut::new();
    body.put_slice(&[u8::from(session_present), 0]); // success
    put_properties(&mut body, &props);
    packet(0x20, &body)
}

/// A SUBACK with a reason code per filter: the QoS granted, or a refusal (0x80 and above).
pub(crate) fn suback(packet_id: u16, codes: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    put_properties(&mut body, &[]);
    body.put_slice(codes);
    packet(0x90, &body)
}

/// A successful PUBACK in one of its three encodings (`form` % 3: without reason code, with it,
/// with it and an empty property block).
pub(crate) fn puback(packet_id: u16, form: u64) -> Bytes {
    let [hi, lo] = packet_id.to_be_bytes();
    match form % 3 {
        0 => packet(0x40, &[hi, lo]),
        1 => packet(0x40, &[hi, lo, 0]),
        _ => packet(0x40, &[hi, lo, 0, 0]),
    }
}

/// A DISCONNECT of the server with a reason code and no properties.
pub(crate) fn server_disconnect(reason: u8) -> Bytes {
    packet(0xe0, &[reason, 0])
}

pub(crate) fn pingresp() -> Bytes {
    packet(0xd0, &[])
}

/// The PUBLISH of `m` to a subscriber (RETAIN 0; DUP as given: a QoS 1 re-delivery on a resumed
/// session). `order` shuffles where the
/// properties other than user properties go among the user properties (whose order is kept, as
/// MQTT requires).
pub(crate) fn publish(packet_id: u16, m: &Message, dup: bool, order: u64) -> Bytes {
    let mut fixed: Vec<BytesMut> = Vec::new();
    let mut prop = |id: u8, write: &dyn Fn(&mut BytesMut)| {
        let mut p = BytesMut::new();
        p.put_u8(id);
        write(&mut p);
        fixed.push(p);
    };
    if let Some(expiry) = m.message_expiry {
        prop(0x02, &|p| p.put_u32(expiry));
    }
    if let Some(t) = &m.content_type {
        prop(0x03, &|p| put_str(p, t.as_bytes()));
    }
    if let Some(t) = &m.response_topic {
        prop(0x08, &|p| put_str(p, t.as_bytes()));
    }
    if let Some(c) = &m.correlation_data {
        prop(0x09, &|p| put_str(p, c));
    }
    let mut bits = order;
    if !fixed.is_empty() {
        let k = (bits % fixed.len() as u64) as usize;
        fixed.rotate_left(k);
        bits >>= 3;
    }
    let mut props = BytesMut::new();
    let mut fixed = fixed.into_iter().peekable();
    for (k, v) in &m.user_properties {
        while fixed.peek().is_some() && bits & 1 == 1 {
            props.extend_from_slice(&fixed.next().unwrap_or_default());
            bits >>= 1;
        }
        bits >>= 1;
        props.put_u8(0x26);
        put_str(&mut props, k.as_bytes());
        put_str(&mut props, v.as_bytes());
    }
    for p in fixed {
        props.extend_from_slice(&p);
    }
    let mut body = BytesMut::with_capacity(m.topic.len() + props.len() + m.payload.len() + 8);
    put_str(&mut body, m.topic.as_bytes());
    let first = match m.qos {
        QoS::AtMostOnce => 0x30,
        QoS::AtLeastOnce => {
            body.put_u16(packet_id);
            if dup {
                0x3a
            } else {
                0x32
            }
        }
    };
    put_properties(&mut body, &props);
    body.put_slice(&m.payload);
    packet(first, &body)
}

/// Whether `filter` matches `topic` (MQTT wildcards; topics starting with `$` are not matched by
/// a wildcard in the first level).
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A short description of a client's packet for the trace.
pub(crate) fn describe(p: &Packet) -> String {
    match p {
        Packet::Connect(c) => format!(
            "CONNECT {} clean start {} session expiry {} s keep alive {} s",
            c.client_id, c.clean_start, c.session_expiry, c.keep_alive
        ),
        Packet::Publish {
            packet_id,
            dup: true,
            ..
        } => format!("PUBLISH p{packet_id} DUP"),
        Packet::Publish { packet_id, .. } => format!("PUBLISH p{packet_id}"),
        Packet::PubAck {
            packet_id,
            reason: 0,
        } => format!("PUBACK p{packet_id}"),
        Packet::PubAck { packet_id, reason } => format!("PUBACK p{packet_id} reason {reason:#04x}"),
        Packet::Subscribe { packet_id, filters } => {
            let names: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
            format!("SUBSCRIBE p{packet_id} {}", names.join(" "))
        }
        Packet::PingReq => "PINGREQ".into(),
        Packet::Disconnect { reason } => format!("DISCONNECT {reason:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_message_reads_back() {
        let m = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"+OK\r\n"),
            correlation_data: Some(Bytes::from_static(&[7; 16])),
            content_type: Some("application/octet-stream".into()),
            response_topic: Some("r/t".into()),
            message_expiry: Some(9),
            user_properties: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            ..Message::default()
        };
        for order in 0..64 {
            let resent = order % 2 == 1;
            let bytes = publish(5, &m, resent, order);
            assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
            match decode(&bytes) {
                Ok(Packet::Publish {
                    packet_id: 5,
                    dup,
                    message,
                    ..
                }) => assert_eq!((dup, message), (resent, m.clone())),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn strictness() {
        // A remaining length with a needless continuation byte.
        assert!(frame_len(&[0xc0, 0x80, 0x00]).is_err());
        // PINGREQ with flags, SUBSCRIBE without its 0b0010 flags.
        assert!(decode(&[0xc1, 0]).is_err());
        assert!(decode(&[0x80, 6, 0, 1, 0, 0, 1, b'a']).is_err());
        // A PUBACK of packet id 0, one with a reason a PUBACK may not have.
        assert!(decode(&[0x40, 2, 0, 0]).is_err());
        assert!(decode(&[0x40, 3, 0, 1, 0x8e]).is_err());
        // A PUBLISH with a Topic Alias.
        assert!(decode(&[0x32, 9, 0, 1, b't', 0, 1, 3, 0x23, 0, 1]).is_err());
        // A property twice.
        assert!(decode(&[0x32, 10, 0, 1, b't', 0, 1, 4, 0x01, 0, 0x01, 0]).is_err());
        assert!(matches!(
            decode(&[0x32, 7, 0, 1, b't', 0, 1, 0, b'x']),
            Ok(Packet::Publish { .. })
        ));
    }

    #[test]
    fn topic_filters_match() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/bc"));
    }
}
