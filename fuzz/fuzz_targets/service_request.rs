//! Service-API body and header decoding on arbitrary input: query specifications, bulk bodies,
//! page sizes and continuation tokens must never panic; continuation tokens round-trip.

#![no_main]

use dps_proto::http::service::{BulkRequest, Query, decode_continuation, encode_continuation, page_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Query::decode(data);
    let _ = BulkRequest::decode(data, "enrollments");
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = page_size(Some(&text)) {
        assert!((1..=1000).contains(&n));
    }
    if let Ok(key) = decode_continuation(&text) {
        assert_eq!(decode_continuation(&encode_continuation(&key)).as_deref(), Ok(key.as_str()));
    }
    let token = encode_continuation(&text);
    assert_eq!(decode_continuation(&token).as_deref(), Ok(text.as_ref()));
});
