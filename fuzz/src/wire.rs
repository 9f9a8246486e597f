//! Harnesses for the RESP3 and state-store decoders.
//!
//! Each harness must never panic on any input; where a decoder accepts input, it also checks a
//! round-trip property (the decoders are canonical, so re-encoding gives back the same bytes).

use leasedlock::bytes::{Bytes, BytesMut};
use leasedlock::hlc::Hlc;
use leasedlock::resp;
use leasedlock::store::{self, Command, StoreReply};
use leasedlock::{Message, QoS};

/// Runs both RESP decoders on `data`; whatever decodes must re-encode to exactly `data`.
pub fn resp_decode(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    if let Ok(reply) = resp::decode_reply(&input) {
        let mut out = BytesMut::new();
        resp::encode_reply(&reply, &mut out);
        assert_eq!(&out[..], data, "reply did not round-trip: {reply:?}");
    }
    if let Ok(args) = resp::decode_array(&input) {
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let mut out = BytesMut::new();
        resp::encode_array(refs.iter().copied(), &mut out);
        assert_eq!(&out[..], data, "array did not round-trip: {args:?}");
        assert_eq!(resp::encoded_array_len(&refs), data.len());
        assert_eq!(resp::decode_array(&out.freeze()).as_ref(), Ok(&args));
    }
}

/// Builds a [`Message`] from `data` and runs every store-level parser on it.
///
/// Byte 0 is a set of flags choosing which parts are present; the rest is split at `0x00` bytes
/// into `__stat`, `__ts`, `__ft`, `__protVer`, topic (or notification key) and payload.
///
/// | bit | effect |
/// |---|---|
/// | 0 | correlation data present |
/// | 1 | content type `application/octet-stream` |
/// | 2 | another content type |
/// | 3 | `__stat` present |
/// | 4 | `__ts` present |
/// | 5 | `__ft` present |
/// | 6 | `__protVer` present |
/// | 7 | the topic is a notification topic whose key is the topic field |
pub fn store_decode(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(6, |&b| b == 0);
    let mut next = || fields.next().unwrap_or_default();
    let (stat, ts, ft, ver, topic, payload) = (next(), next(), next(), next(), next(), next());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let bit = |n: u8| flags & (1 << n) != 0;

    let mut user_properties = Vec::new();
    for (n, name, value) in [
        (3, "__stat", stat),
        (4, "__ts", ts),
        (5, "__ft", ft),
        (6, "__protVer", ver),
    ] {
        if bit(n) {
            user_properties.push((name.into(), text(value).into()));
        }
    }
    let msg = Message {
        topic: if bit(7) {
            store::notification_topic("fuzz-client", topic).into()
        } else {
            text(topic).into()
        },
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        correlation_data: bit(0).then(|| Bytes::from_static(b"0123456789abcdef")),
        response_topic: Some(store::response_topic("fuzz-client").into()),
        message_expiry: None,
        content_type: if bit(1) {
            Some(store::CONTENT_TYPE.into())
        } else if bit(2) {
            Some(text(ver).into())
        } else {
            None
        },
        user_properties,
    };

    if let Ok(h) = text(ts).parse::<Hlc>() {
        assert_eq!(h.to_string().parse::<Hlc>().as_ref(), Ok(&h));
    }

    if let Ok(response) = store::parse_response(&msg) {
        if let Ok(body) = &response.outcome {
            let again = store::response_message(
                "r",
                response.correlation_data.clone(),
                200,
                body.version.as_ref(),
                &body.reply,
            );
            let reparsed = store::parse_response(&again).map(|r| r.outcome);
            match &body.reply {
                // `Unknown` holds any text, which may spell a known error once `ERR ` is added.
                StoreReply::Error(_) => assert!(matches!(
                    reparsed,
                    Ok(Ok(store::ResponseBody {
                        reply: StoreReply::Error(_),
                        ..
                    }))
                )),
                _ => assert_eq!(reparsed, Ok(Ok(body.clone()))),
            }
        }
    } else {
        assert!(msg.correlation_data.is_none());
    }

    if let Ok(n) = store::parse_notification(&msg) {
        let again = store::notification_message("fuzz-client", &n);
        assert_eq!(store::parse_notification(&again).as_ref(), Ok(&n));
    }

    let parsed = store::parse_request(&msg);
    let _ = parsed.check();

    if let Ok(command) = Command::decode(&msg.payload) {
        assert!(!command.key().is_empty());
        let payload = command.to_payload();
        assert_eq!(Command::decode(&payload).as_ref(), Ok(&command));
    }
}
