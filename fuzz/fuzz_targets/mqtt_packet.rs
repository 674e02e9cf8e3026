//! MQTT packet decoding on arbitrary bytes: `decode` is called repeatedly on one buffer, as a
//! connection would, and must never panic. `Ok(None)` must consume nothing; every decoded
//! packet must consume bytes, re-encode to exactly the bytes it came from (the codec accepts
//! one encoding per packet: minimal varints, flags implied by the fields) and decode again to
//! itself. The tail of the input is then fed again one byte at a time.

#![no_main]

use bytes::BytesMut;
use dps_proto::mqtt::{Limits, Packet, decode};
use libfuzzer_sys::fuzz_target;

fn check(p: &Packet, consumed: &[u8], limits: &Limits) {
    let mut out = BytesMut::new();
    p.encode(&mut out).expect("a decoded packet encodes");
    assert_eq!(&out[..], consumed, "re-encoding differs");
    let again = decode(&mut out, limits)
        .expect("re-encoded decodes")
        .expect("complete");
    assert_eq!(&again, p);
    assert!(out.is_empty());
}

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the limits: the defaults, or tight ones to reach every bound.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let limits = if mode & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_packet: 64,
            max_topic: 16,
            max_client_id: 8,
            max_username: 16,
            max_password: 16,
            max_filters: 2,
        }
    };

    // All at once.
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match decode(&mut buf, &limits) {
            Ok(Some(p)) => {
                let used = before.len() - buf.len();
                assert!(used >= 2);
                check(&p, &before[..used], &limits);
            }
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }

    // Byte by byte: the same packets, in the same order, and the same verdict at the end.
    let mut whole = BytesMut::from(data);
    let mut trickle = BytesMut::new();
    for &b in data {
        trickle.extend_from_slice(&[b]);
        match decode(&mut trickle, &limits) {
            Ok(Some(p)) => {
                assert_eq!(decode(&mut whole, &limits), Ok(Some(p)));
            }
            Ok(None) => {}
            Err(e) => {
                assert_eq!(decode(&mut whole, &limits), Err(e));
                return;
            }
        }
    }
});
