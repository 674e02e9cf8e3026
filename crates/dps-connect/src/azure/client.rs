//! The HTTP side of the Azure IoT Hub connector: one authorised registry request with the
//! connector's timeout and retries, and the hub's error envelopes turned into [`HubError`]s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_service::HubError;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use super::HubConnectionString;
use crate::retry::{Attempt, RetryPolicy};

/// Everything outside RFC 3986 "unreserved" is percent-encoded in a device ID path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Lifetime of the SAS tokens minted per request.
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// A registry answer the caller interprets (401, throttling and 5xx never get here).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    /// The `ETag` header, quotes stripped.
    pub etag: Option<String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: Value,
}

impl Response {
    /// This answer as a refusal: `Rejected` with the hub's error code and message.
    pub fn refusal(&self, what: &str) -> HubError {
        HubError::Rejected(format!("{what}: {}", describe(self.status, &self.body)))
    }
}

/// A registry client for one hub.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub http: reqwest::Client,
    /// `https://{HostName}` or a configured endpoint, without a trailing slash.
    pub base: String,
    pub credential: HubConnectionString,
    pub api_version: String,
    pub retry: RetryPolicy,
}

/// `/devices/{id}` or `/twins/{id}` with the ID percent-encoded.
pub(crate) fn path(collection: &str, device_id: &str) -> String {
    format!("/{collection}/{}", utf8_percent_encode(device_id, SEGMENT))
}

impl Client {
    /// Sends `method path` (with `If-Match: "{if_match}"` and a JSON body when given), retrying
    /// transient failures per the policy.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response, HubError> {
        let what = format!("{method} {path}");
        self.retry
            .run(&what, || {
                self.attempt(&what, method.clone(), path, if_match, body)
            })
            .await
    }

    async fn attempt(
        &self,
        what: &str,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Attempt<Response> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let url = format!("{}{path}?api-version={}", self.base, self.api_version);
        let mut req = self
            .http
            .request(method, url)
            .header(
                header::AUTHORIZATION,
                self.credential.authorization(now, TOKEN_LIFETIME_SECS),
            )
            .header(header::ACCEPT, "application/json");
        if let Some(tag) = if_match {
            req = req.header(header::IF_MATCH, format!("\"{tag}\""));
        }
        if let Some(b) = body {
            req = req
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(b.to_string());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                return Attempt::Retry(HubError::Unavailable(format!("{what}: {kind}")), None);
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("W/").trim_matches('"').to_owned());
        let code_header = resp
            .headers()
            .get("iothub-errorcode")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match resp.bytes().await {
            Ok(b) if b.is_empty() => Value::Null,
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(_) => {
                return Attempt::Retry(
                    HubError::Unavailable(format!("{what}: the answer was cut off")),
                    None,
                );
            }
        };
        let mut body = body;
        if let (Some(code), Value::Object(map)) = (code_header, &mut body) {
            map.entry("iothub-errorcode").or_insert(Value::String(code));
        }
        let text = || format!("{what}: {}", describe(status, &body));
        match status.as_u16() {
            401 => Attempt::Done(Err(HubError::Unauthorized(text()))),
            408 | 429 | 500..=599 => Attempt::Retry(HubError::Unavailable(text()), retry_after),
            _ => Attempt::Done(Ok(Response { status, etag, body })),
        }
    }
}

/// `HTTP 409 DeviceAlreadyExists: A device with ID … is already registered.` from any of the
/// hub's error envelopes (classic `Message: "ErrorCode:Name;text"`, newer
/// `{errorCode, message}`, the `iothub-errorcode` header, or nothing).
pub(crate) fn describe(status: StatusCode, body: &Value) -> String {
    let header = body.get("iothub-errorcode").and_then(Value::as_str);
    let classic = body.get("Message").and_then(Value::as_str);
    let newer = body.get("message").and_then(Value::as_str);
    let (name, text) = match classic {
        Some(m) => match m.strip_prefix("ErrorCode:").and_then(|r| r.split_once(';')) {
            Some((name, text)) => (Some(name), text),
            None => (None, m),
        },
        None => (None, newer.unwrap_or("")),
    };
    let numeric = body
        .get("errorCode")
        .and_then(Value::as_u64)
        .map(|n| n.to_string());
    let name = header.or(name).or(numeric.as_deref());
    match (name, text.is_empty()) {
        (Some(n), false) => format!("HTTP {} {n}: {text}", status.as_u16()),
        (Some(n), true) => format!("HTTP {} {n}", status.as_u16()),
        (None, false) => format!("HTTP {}: {text}", status.as_u16()),
        (None, true) => format!("HTTP {}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_envelopes() {
        let classic = json!({"Message":"ErrorCode:DeviceAlreadyExists;A device with ID 'd' is already registered.","ExceptionMessage":"Tracking ID:x"});
        assert_eq!(
            describe(StatusCode::CONFLICT, &classic),
            "HTTP 409 DeviceAlreadyExists: A device with ID 'd' is already registered."
        );
        let newer = json!({"errorCode":409301,"message":"exists","iothub-errorcode":"ModuleAlreadyExistsOnDevice"});
        assert_eq!(
            describe(StatusCode::CONFLICT, &newer),
            "HTTP 409 ModuleAlreadyExistsOnDevice: exists"
        );
        assert_eq!(describe(StatusCode::BAD_GATEWAY, &Value::Null), "HTTP 502");
    }

    #[test]
    fn device_ids_are_encoded_in_paths() {
        assert_eq!(
            path("devices", "a b#c?d%e+f:g"),
            "/devices/a%20b%23c%3Fd%25e%2Bf%3Ag"
        );
        assert_eq!(path("twins", "dev-1.x_y~z"), "/twins/dev-1.x_y~z");
    }
}
