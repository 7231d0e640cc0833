//! Decoding and normalisation of arbitrary requests: never a panic, an accepted payload always
//! becomes an envelope, and a JSON body is always kept byte for byte.
//! `cargo +nightly fuzz run decode_normalise <work dir> fuzz/seeds/decode_normalise`
//! See docs/testing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telecmi_bridge::pipeline::{Encoding, EnvelopeAttributes, RawRequest, decode, to_envelope};
use time::OffsetDateTime;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain; charset=utf-8"),
    Some("application/cloudevents+json"),
    Some("application/json; charset=latin1"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let is_get = selector & 0x80 != 0;
    let query = String::from_utf8_lossy(body);
    let request = RawRequest {
        is_get,
        content_type: CONTENT_TYPES[usize::from(selector & 0x7f) % CONTENT_TYPES.len()],
        content_encoding: None,
        query: is_get.then_some(query.as_ref()),
        body: if is_get { &[] } else { body },
        reserved_query_param: Some("bridge_token"),
    };
    let Ok(decoded) = decode(&request) else {
        return;
    };
    let verbatim_json = decoded.encoding == Encoding::Json && decoded.original.is_exact();
    let (normalised, event) = to_envelope(&EnvelopeAttributes::default(), decoded, OffsetDateTime::UNIX_EPOCH)
        .expect("an accepted payload always makes an envelope");
    let bytes = event.value;
    let envelope: serde_json::Value = serde_json::from_slice(&bytes).expect("the envelope is JSON");
    assert_eq!(envelope["id"], normalised.id.to_string());
    if verbatim_json {
        let body = std::str::from_utf8(body)
            .expect("accepted JSON is UTF-8")
            .trim();
        let published = std::str::from_utf8(&bytes).expect("the envelope is UTF-8");
        assert!(
            published.contains(body),
            "the JSON body is not kept verbatim"
        );
    }
});
