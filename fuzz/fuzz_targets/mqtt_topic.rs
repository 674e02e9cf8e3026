//! The `$dps/registrations` grammar on arbitrary strings: request topics, response topics and
//! the CONNECT user name must parse without panicking, and whatever parses must rebuild to a
//! string that parses to the same value. A response topic built for any accepted `$rid` must
//! keep the shape the SDKs match: `$rid` right after `?`, exactly two `$`, no wildcard.

#![no_main]

use dps_proto::mqtt::topic::{Request, Response, Rid, response_topic};
use dps_proto::mqtt::username::Username;
use libfuzzer_sys::fuzz_target;

fn check_response(status: u16, rid: &Rid, retry_after: Option<u32>) {
    let topic = response_topic(status, rid, retry_after);
    assert!(topic.starts_with(&format!("$dps/registrations/res/{status}/?$rid={rid}")));
    assert_eq!(topic.matches('$').count(), 2);
    assert!(!topic.contains(['+', '#', '\0']));
    let parsed = Response::parse(&topic).expect("a built response topic parses");
    assert_eq!(
        parsed,
        Response {
            status,
            rid: rid.clone(),
            retry_after
        }
    );
}

fuzz_target!(|data: &[u8]| {
    // Bytes 0-5 pick a status and a retry-after for the response topics built below.
    let (head, rest) = data.split_at(data.len().min(6));
    let mut h = [0u8; 6];
    h[..head.len()].copy_from_slice(head);
    let status = u16::from_le_bytes([h[0], h[1]]);
    let retry = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
    let retry_after = (retry % 2 == 1).then_some(retry / 2);
    let text = String::from_utf8_lossy(rest);

    match Request::parse(&text) {
        Ok(req) => {
            assert_eq!(Request::parse(&req.to_string()).as_ref(), Ok(&req));
            check_response(status, req.rid(), retry_after);
        }
        // An error that kept the `$rid` must still allow an answer on its topic.
        Err(e) => {
            if let Some(rid) = e.rid() {
                check_response(status, rid, retry_after);
            }
        }
    }
    if let Ok(rid) = Rid::new(&text) {
        check_response(status, &rid, retry_after);
    }
    if let Ok(resp) = Response::parse(&text) {
        assert_eq!(Response::parse(&resp.to_string()).as_ref(), Ok(&resp));
    }
    if let Ok(user) = Username::parse(&text) {
        assert!(!user.id_scope.is_empty() && !user.registration_id.is_empty());
        assert_eq!(Username::parse(&user.to_string()).as_ref(), Ok(&user));
    }
});
