//! Device-API request decoding on arbitrary input: routing of the method and path, query
//! parameters, the api-version check and the register body must never panic. Input layout:
//! byte 0 picks the method, then `path?query` up to the first newline, then the body.
//! Whatever decodes must re-encode and decode to the same value.

#![no_main]

use dps_proto::api_version;
use dps_proto::http::{DeviceRegistration, Method, Route, query_param, route};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 5] = [Method::Get, Method::Put, Method::Post, Method::Delete, Method::Other];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let method = METHODS[usize::from(m) % METHODS.len()];
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let (target, body) = rest.split_at(split);
    let target = String::from_utf8_lossy(target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.as_ref(), None),
    };
    if let Ok(r) = route(method, path) {
        if let Route::DeviceRegister { id_scope, registration_id } = &r {
            assert!(!id_scope.is_empty() && !registration_id.is_empty());
        }
    }
    if let Ok(v) = query_param(query, "api-version") {
        let _ = api_version::device(v.as_deref());
        let _ = api_version::service(v.as_deref());
    }
    if let Ok(reg) = DeviceRegistration::decode(body.get(1..).unwrap_or_default()) {
        let _ = reg.check_id("dev-1");
        let json = serde_json::to_vec(&reg).expect("a decoded body encodes");
        let again = DeviceRegistration::decode(&json).expect("an encoded body decodes");
        assert_eq!(again, reg);
    }
});
