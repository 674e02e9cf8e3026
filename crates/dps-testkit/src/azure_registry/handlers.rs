//! The registry endpoints of the test server: authorisation, api-version, faults, identities and
//! twins with their etags.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use dps_attest::sas::{SasToken, SigningKey};
use serde_json::{Map, Value, json};

use super::{API_VERSION, Fault, POLICY, POLICY_KEY, Shared, Stored, lock};

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/devices/{id}",
            put(put_device).get(get_device).delete(delete_device),
        )
        .route("/twins/{id}", get(get_twin).patch(patch_twin).put(put_twin))
        .layer(axum::middleware::map_response(close))
        .with_state(state)
}

/// No keep-alive: a stopped server is down for every client at once.
async fn close(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

type Q = RawQuery;

/// The `api-version` query parameter.
fn api_version(q: &Q) -> Option<&str> {
    q.0.as_deref()?
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="))
}

fn error(status: StatusCode, code: &str, text: &str) -> Response {
    let body = json!({"Message": format!("ErrorCode:{code};{text}"),
                      "ExceptionMessage": "Tracking ID:test"});
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("iothub-errorcode", v);
    }
    r
}

fn ok(body: &Value, etag: Option<&str>) -> Response {
    let mut r = (StatusCode::OK, axum::Json(body.clone())).into_response();
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Authorisation, api-version, fault injection and the request log, for every endpoint.
async fn admit(s: &Shared, method: &Method, path: &str, h: &HeaderMap, q: &Q) -> Option<Response> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = lock(s).host_name.clone();
    let authorised = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| SasToken::parse(v).ok())
        .is_some_and(|t| {
            let key = SigningKey::from_base64(POLICY_KEY).ok();
            t.audience().ok().as_deref() == Some(host.as_str())
                && t.key_name() == Some(POLICY)
                && t.expiry() > now
                && key.is_some_and(|k| t.verify_signature(&k))
        });
    if !authorised {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "IotHubUnauthorizedAccess",
            "Unauthorized",
        ));
    }
    if api_version(q) != Some(API_VERSION) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "InvalidProtocolVersion",
            "the api-version is missing or not supported",
        ));
    }
    let fault = {
        let mut st = lock(s);
        st.log.push(format!("{method} {path}"));
        let fault = st
            .fault
            .clone()
            .filter(|(_, m)| m.as_deref().is_none_or(|m| m == method.as_str()));
        if fault.is_some()
            && let Some(n) = st.fault_budget.as_mut()
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.fault = None;
                st.fault_budget = None;
            }
        }
        fault
    };
    match fault {
        Some((Fault::Refuse(status, code), _)) => Some(error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            "injected fault",
        )),
        Some((Fault::Hang, _)) => std::future::pending().await,
        None => None,
    }
}

/// The `If-Match` value without quotes.
fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned())
}

fn etag_of(v: &Value) -> String {
    v.get("etag")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "DeviceNotFound",
        &format!("Device {id} not found."),
    )
}

async fn put_device(
    St(s): St<Shared>,
    Path(id): Path<String>,
    q: Q,
    h: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = admit(&s, &Method::PUT, &format!("/devices/{id}"), &h, &q).await {
        return r;
    }
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "IotHubFormatError",
            "body is not a JSON object",
        );
    };
    if doc.get("deviceId").and_then(Value::as_str) != Some(id.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "ArgumentInvalid",
            "deviceId does not match the path",
        );
    }
    let view = Value::Object(doc.clone());
    let auth_ok = match view.pointer("/authentication/type").and_then(Value::as_str) {
        Some("sas") => view
            .pointer("/authentication/symmetricKey/primaryKey")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty()),
        Some("selfSigned" | "certificateAuthority" | "none") => true,
        _ => false,
    };
    if !auth_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "ArgumentInvalid",
            "invalid authentication",
        );
    }
    let mut st = lock(&s);
    st.counter += 1;
    let etag = format!("{:x}", 0x1000_0000 + st.counter);
    let matched = if_match(&h);
    let existing = st.devices.get(&id).cloned();
    match (&existing, &matched) {
        (Some(_), None) => {
            return error(
                StatusCode::CONFLICT,
                "DeviceAlreadyExists",
                &format!("A device with ID '{id}' is already registered."),
            );
        }
        (None, Some(_)) => return not_found(&id),
        (Some(e), Some(m)) if m != "*" && *m != etag_of(&e.device) => {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "Precondition failed: Device version did not match",
            );
        }
        _ => {}
    }
    doc.insert("etag".into(), json!(etag));
    doc.entry("status").or_insert(json!("enabled"));
    doc.entry("capabilities")
        .or_insert(json!({"iotEdge": false}));
    doc.insert("connectionState".into(), json!("Disconnected"));
    let generation = existing
        .as_ref()
        .and_then(|e| e.device.get("generationId").cloned())
        .unwrap_or_else(|| json!(format!("6387{:014}", st.counter)));
    doc.insert("generationId".into(), generation);
    let device = Value::Object(doc);
    let mut twin = existing.map_or_else(
        || json!({"deviceId": id, "etag": format!("AAAAAAAAAA{}=", st.counter), "version": 1,
                  "tags": {}, "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}}),
        |e| e.twin,
    );
    twin["capabilities"] = device["capabilities"].clone();
    twin["authenticationType"] = device["authentication"]["type"].clone();
    twin["deviceEtag"] = json!(etag);
    st.devices.insert(
        id,
        Stored {
            device: device.clone(),
            twin,
        },
    );
    ok(&device, Some(&etag))
}

async fn get_device(St(s): St<Shared>, Path(id): Path<String>, q: Q, h: HeaderMap) -> Response {
    if let Some(r) = admit(&s, &Method::GET, &format!("/devices/{id}"), &h, &q).await {
        return r;
    }
    match lock(&s).devices.get(&id) {
        Some(d) => ok(&d.device, Some(&etag_of(&d.device))),
        None => not_found(&id),
    }
}

async fn delete_device(St(s): St<Shared>, Path(id): Path<String>, q: Q, h: HeaderMap) -> Response {
    if let Some(r) = admit(&s, &Method::DELETE, &format!("/devices/{id}"), &h, &q).await {
        return r;
    }
    let mut st = lock(&s);
    let Some(d) = st.devices.get(&id) else {
        return not_found(&id);
    };
    if let Some(m) = if_match(&h).filter(|m| m != "*")
        && m != etag_of(&d.device)
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "Precondition failed",
        );
    }
    st.devices.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_twin(St(s): St<Shared>, Path(id): Path<String>, q: Q, h: HeaderMap) -> Response {
    if let Some(r) = admit(&s, &Method::GET, &format!("/twins/{id}"), &h, &q).await {
        return r;
    }
    match lock(&s).devices.get(&id) {
        Some(d) => ok(&d.twin, Some(&etag_of(&d.twin))),
        None => not_found(&id),
    }
}

/// Merges `patch` into `target`: objects recursively, `null` removes.
pub(super) fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (_, Value::Null) => {
                target.remove(k);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge(t, p),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

async fn write_twin(
    s: Shared,
    id: String,
    q: Q,
    h: HeaderMap,
    body: String,
    replace: bool,
) -> Response {
    let method = if replace { Method::PUT } else { Method::PATCH };
    if let Some(r) = admit(&s, &method, &format!("/twins/{id}"), &h, &q).await {
        return r;
    }
    let Ok(patch @ Value::Object(_)) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "IotHubFormatError",
            "body is not a JSON object",
        );
    };
    let mut st = lock(&s);
    st.counter += 1;
    let n = st.counter;
    let Some(d) = st.devices.get_mut(&id) else {
        return not_found(&id);
    };
    if let Some(m) = if_match(&h).filter(|m| m != "*")
        && m != etag_of(&d.twin)
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "Precondition failed",
        );
    }
    let empty = Map::new();
    let tags = patch
        .get("tags")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let desired = patch
        .pointer("/properties/desired")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let version = d.twin["version"].as_u64().unwrap_or(1) + 1;
    let dv = d.twin["properties"]["desired"]["$version"]
        .as_u64()
        .unwrap_or(1)
        + 1;
    let (mut t, mut des) = if replace {
        (Map::new(), Map::new())
    } else {
        let t = d.twin["tags"].as_object().cloned().unwrap_or_default();
        let des = d.twin["properties"]["desired"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        (t, des)
    };
    merge(&mut t, tags);
    merge(&mut des, desired);
    des.insert("$version".into(), json!(dv));
    d.twin["tags"] = Value::Object(t);
    d.twin["properties"]["desired"] = Value::Object(des);
    d.twin["version"] = json!(version);
    d.twin["etag"] = json!(format!("AAAAAAAAAB{n}="));
    ok(&d.twin, Some(&etag_of(&d.twin)))
}

async fn patch_twin(
    St(s): St<Shared>,
    Path(id): Path<String>,
    q: Q,
    h: HeaderMap,
    body: String,
) -> Response {
    write_twin(s, id, q, h, body, false).await
}

async fn put_twin(
    St(s): St<Shared>,
    Path(id): Path<String>,
    q: Q,
    h: HeaderMap,
    body: String,
) -> Response {
    write_twin(s, id, q, h, body, true).await
}
