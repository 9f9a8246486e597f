//! Topics of the state store (docs/PROTOCOL.md §1, §6) and the upper-case hex encoding they use.

use bytes::Bytes;

/// The topic every request is published to.
pub const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";

/// Prefix of notification topics. Response topics must not start with it.
pub const NOTIFICATION_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8";

/// The recommended response topic of a client (raw client id, as the Rust SDK uses).
pub fn response_topic(client_id: &str) -> String {
    format!(
        "clients/{client_id}/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
    )
}

/// Whether `topic` may be used as a response topic: non-empty, no wildcard or NUL, not the request
/// topic and not under the notification prefix (the broker disconnects clients that use those).
pub fn is_valid_response_topic(topic: &str) -> bool {
    !topic.is_empty()
        && !topic.contains(['+', '#', '\0'])
        && topic != REQUEST_TOPIC
        && !topic.starts_with(NOTIFICATION_PREFIX)
}

/// The topic the store sends notifications for `key` to, for `client_id`.
pub fn notification_topic(client_id: &str, key: &[u8]) -> String {
    format!(
        "{NOTIFICATION_PREFIX}/{}/command/notify/{}",
        hex_upper(client_id.as_bytes()),
        hex_upper(key)
    )
}

/// The filter matching every notification for `client_id`.
pub fn notification_filter(client_id: &str) -> String {
    format!(
        "{NOTIFICATION_PREFIX}/{}/command/notify/+",
        hex_upper(client_id.as_bytes())
    )
}

/// Splits a notification topic into (client id bytes, key bytes).
///
/// Strict: both parts must be non-empty, even-length, upper-case hex; anything else is `None`.
pub fn parse_notification_topic(topic: &str) -> Option<(Bytes, Bytes)> {
    let rest = topic.strip_prefix(NOTIFICATION_PREFIX)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (Some(client), Some("command"), Some("notify"), Some(key), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let client = hex_decode_upper(client)?;
    let key = hex_decode_upper(key)?;
    (!client.is_empty() && !key.is_empty()).then_some((client, key))
}

/// Upper-case base16, two digits per byte.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn hex_digit_upper(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes strict upper-case hex (even length); `None` otherwise.
pub fn hex_decode_upper(text: &str) -> Option<Bytes> {
    let chunks = text.as_bytes().chunks_exact(2);
    if !chunks.remainder().is_empty() {
        return None;
    }
    chunks
        .map(|pair| match pair {
            [hi, lo] => Some(hex_digit_upper(*hi)? << 4 | hex_digit_upper(*lo)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_examples() {
        assert_eq!(hex_upper(b"client-id1"), "636C69656E742D696431");
        assert_eq!(hex_upper(b"SOMEKEY"), "534F4D454B4559");
        assert_eq!(hex_upper(&[0x00, 0xff, 0x0a]), "00FF0A");
        assert_eq!(hex_upper(b""), "");
        assert_eq!(hex_decode_upper("00FF0A").unwrap(), &[0x00, 0xff, 0x0a][..]);
        assert_eq!(hex_decode_upper("00ff0a"), None);
        assert_eq!(hex_decode_upper("0"), None);
        assert_eq!(hex_decode_upper("0G"), None);
        assert_eq!(hex_decode_upper("é0"), None);
    }

    #[test]
    fn notification_topics_round_trip() {
        let t = notification_topic("client-id1", b"SOMEKEY");
        assert_eq!(
            t,
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
        );
        let (c, k) = parse_notification_topic(&t).unwrap();
        assert_eq!((&c[..], &k[..]), (&b"client-id1"[..], &b"SOMEKEY"[..]));
        assert_eq!(
            notification_filter("client-id1"),
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/+"
        );
    }

    #[test]
    fn notification_topic_rejects() {
        let p = NOTIFICATION_PREFIX;
        for bad in [
            format!("{p}/636c/command/notify/53"),
            format!("{p}/636/command/notify/53"),
            format!("{p}/63/command/notify/5"),
            format!("{p}/63/command/notify/"),
            format!("{p}//command/notify/53"),
            format!("{p}/63/command/notify/53/x"),
            format!("{p}/63/command/invoke/53"),
            format!("{p}63/command/notify/53"),
            "other/63/command/notify/53".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_notification_topic(&bad), None, "{bad}");
        }
    }

    #[test]
    fn response_topic_rules() {
        let t = response_topic("client-id1");
        assert_eq!(
            t,
            "clients/client-id1/services/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke/response"
        );
        assert!(is_valid_response_topic(&t));
        assert!(is_valid_response_topic("a/b"));
        assert!(!is_valid_response_topic(""));
        assert!(!is_valid_response_topic(REQUEST_TOPIC));
        assert!(!is_valid_response_topic(
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/x/response"
        ));
        assert!(!is_valid_response_topic(NOTIFICATION_PREFIX));
        assert!(!is_valid_response_topic("a/+/b"));
        assert!(!is_valid_response_topic("a/#"));
        assert!(!is_valid_response_topic("a\0b"));
        assert!(!is_valid_response_topic(&response_topic("bad+id")));
    }
}
