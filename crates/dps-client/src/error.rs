//! The crate's one error type, and the parser of Azure's error body.

use crate::device::flow::FlowError;
use crate::service::ConnectionStringError;

/// A foreign error kept as a source, so its type never appears in this crate's API.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate. `Display` is one short line; the cause, if any,
/// is in [`source()`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service connection string is malformed; the source says how.
    #[error("invalid connection string")]
    ConnectionString(#[from] ConnectionStringError),
    /// The endpoint is not a `host[:port]`.
    #[error("invalid endpoint '{endpoint}': {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A symmetric key (device, group or policy key) is not valid base64.
    #[error("the symmetric key is not valid base64")]
    InvalidKey,
    /// The device's X.509 certificate or private key could not be read or parsed.
    #[error("cannot load the device certificate or key from {origin}")]
    Identity {
        /// The file names, or `"memory"`.
        origin: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The trusted CA certificate could not be read or parsed.
    #[error("cannot load the CA certificate from {origin}")]
    Ca {
        /// The file name, or `"memory"`.
        origin: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// TLS verification of the server failed: its certificate is not signed by a trusted CA
    /// (pass the server's CA, e.g. dpsd's dev CA) or does not name the host.
    #[error("the server certificate of {host} is not trusted")]
    UntrustedServer {
        /// The host dialled.
        host: String,
        /// The TLS error.
        #[source]
        source: BoxError,
    },
    /// The connection could not be established (DNS, refused, TLS handshake).
    #[error("cannot connect to {host}")]
    Connect {
        /// The host dialled.
        host: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// A request failed after connecting (timeout, reset, body read error).
    #[error("request to {host} failed")]
    Transport {
        /// The host.
        host: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The service API answered with an error status and (usually) Azure's error body
    /// `{"errorCode","trackingId","message","timestampUtc"}`.
    #[error("{}", service_text(*status, *error_code, message))]
    Service {
        /// HTTP status.
        status: u16,
        /// Six-digit `errorCode` (its first three digits are the status).
        error_code: Option<u32>,
        /// The body's `message`, or the raw body when it is not Azure's error JSON.
        message: String,
        /// The body's `trackingId`, for support requests.
        tracking_id: Option<String>,
    },
    /// Device registration ended without an assignment; the source says why.
    #[error("device registration failed")]
    Registration(#[source] FlowError),
    /// A request body could not be encoded as JSON.
    #[error("cannot encode the request body")]
    Encode(#[source] BoxError),
    /// The service answered a body this client cannot interpret.
    #[error("unexpected response from the service: {what}")]
    Protocol {
        /// What was expected.
        what: String,
        /// The decoding error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl From<FlowError> for Error {
    fn from(e: FlowError) -> Self {
        Self::Registration(e)
    }
}

impl Error {
    /// The HTTP status when the service answered with an error (`Service`, or a registration
    /// the service rejected).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. }
            | Self::Registration(FlowError::Rejected { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// True when the server's certificate was not trusted (a hint to configure the CA).
    pub fn is_untrusted_server(&self) -> bool {
        matches!(self, Self::UntrustedServer { .. })
    }
}

/// `404 (errorCode 404201): Enrollment not found`, shared by [`Error::Service`] and
/// [`FlowError::Rejected`].
pub(crate) fn service_text(status: u16, error_code: Option<u32>, message: &str) -> String {
    match error_code {
        Some(code) => format!("service error {status} (errorCode {code}): {message}"),
        None => format!("service error {status}: {message}"),
    }
}

/// The fields of Azure's error body this client reads, parsed leniently: `errorCode` (or
/// `code`, number or numeric string), `message` (or `Message` / `errorMessage`), `trackingId`.
/// A body that is not such JSON becomes the message itself (trimmed and shortened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AzureErrorBody {
    pub(crate) error_code: Option<u32>,
    pub(crate) message: String,
    pub(crate) tracking_id: Option<String>,
}

const MAX_RAW_MESSAGE: usize = 300;

impl AzureErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        use serde_json::Value;
        let json = serde_json::from_slice::<Value>(body).ok();
        let obj = json.as_ref().and_then(Value::as_object);
        let field = |names: &[&str]| {
            obj.and_then(|o| names.iter().find_map(|n| o.get(*n)))
                .filter(|v| !v.is_null())
        };
        let error_code = field(&["errorCode", "code"]).and_then(|v| match v {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let tracking_id = field(&["trackingId"])
            .and_then(Value::as_str)
            .map(str::to_owned);
        let message = match field(&["message", "Message", "errorMessage"]) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => raw_text(body),
        };
        Self {
            error_code,
            message,
            tracking_id,
        }
    }
}

fn raw_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no error details".into();
    }
    match text.char_indices().nth(MAX_RAW_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn azure_error_body() {
        let e = AzureErrorBody::parse(
            br#"{"errorCode":404201,"trackingId":"4a1f","message":"Enrollment not found","timestampUtc":"2023-01-17T01:23:45.1234567Z"}"#,
        );
        assert_eq!(
            e,
            AzureErrorBody {
                error_code: Some(404_201),
                message: "Enrollment not found".into(),
                tracking_id: Some("4a1f".into()),
            }
        );
        let alias = AzureErrorBody::parse(br#"{"code":"400004","errorMessage":"bad"}"#);
        assert_eq!(alias.error_code, Some(400_004));
        assert_eq!(alias.message, "bad");
        let raw = AzureErrorBody::parse(b"  <html>oops</html>\n");
        assert_eq!(
            (raw.error_code, raw.message.as_str()),
            (None, "<html>oops</html>")
        );
        assert_eq!(AzureErrorBody::parse(b"").message, "no error details");
        let long = AzureErrorBody::parse("é".repeat(1000).as_bytes());
        assert_eq!(long.message.chars().count(), MAX_RAW_MESSAGE + 1);
    }

    #[test]
    fn display_is_one_short_line() {
        let e = Error::Service {
            status: 404,
            error_code: Some(404_201),
            message: "Enrollment not found".into(),
            tracking_id: Some("t".into()),
        };
        assert_eq!(
            e.to_string(),
            "service error 404 (errorCode 404201): Enrollment not found"
        );
        assert_eq!(e.status(), Some(404));
        let r = Error::from(FlowError::Disabled);
        assert_eq!(r.to_string(), "device registration failed");
        assert_eq!(
            std::error::Error::source(&r).unwrap().to_string(),
            "the enrollment is disabled"
        );
    }
}
