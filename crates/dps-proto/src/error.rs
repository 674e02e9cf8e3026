//! The one mapping from a domain [`Rejection`] to the wire: HTTP status, six-digit `errorCode`
//! (always `status * 1000 + detail`, which the SDKs rely on) and the Azure error body.

use dps_types::{Rejection, Timestamp};
use serde::Serialize;

/// A rejection in wire terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// HTTP status (also the MQTT `$dps/registrations/res/{status}` value).
    pub status: u16,
    /// Six-digit error code.
    pub error_code: u32,
    /// Message shown to the caller. Never carries secrets or the internal reason of an
    /// authentication failure.
    pub message: String,
    /// Seconds to wait, for 429 / 503.
    pub retry_after: Option<u32>,
}

impl WireError {
    /// Maps a rejection.
    pub fn from_rejection(r: &Rejection) -> Self {
        let (status, error_code, message): (u16, u32, String) = match r {
            Rejection::Unauthorized(_) => (401, 401_002, "Unauthorized".into()),
            Rejection::Forbidden(right) => (
                401,
                401_003,
                format!("Unauthorized: the policy lacks the {right} right"),
            ),
            Rejection::ScopeNotFound => (404, 404_001, "ID scope not found".into()),
            Rejection::PathNotFound => (404, 404_000, "Not found".into()),
            Rejection::EnrollmentNotFound => (404, 404_201, "Enrollment not found".into()),
            Rejection::RegistrationNotFound => (404, 404_202, "Registration not found".into()),
            Rejection::OperationNotFound => (404, 404_203, "Operation not found".into()),
            Rejection::GroupNotFound => (404, 404_204, "Enrollment group not found".into()),
            Rejection::Conflict(m) => (409, 409_201, m.clone()),
            Rejection::PreconditionFailed => (
                412,
                412_002,
                "Precondition failed: the ETag does not match".into(),
            ),
            Rejection::BadRequest(m) => (400, 400_004, m.clone()),
            Rejection::BadApiVersion(m) => (400, 400_001, m.clone()),
            Rejection::PayloadTooLarge => (
                413,
                413_001,
                "The request body exceeds the 96 KB limit".into(),
            ),
            Rejection::MethodNotAllowed => (405, 405_001, "Method not allowed".into()),
            Rejection::UnsupportedMediaType => (
                415,
                415_001,
                "Unsupported media type: the body must be JSON".into(),
            ),
            Rejection::Throttled { .. } => (429, 429_001, "Too many requests".into()),
            Rejection::Unavailable => (503, 503_001, "Service unavailable; retry later".into()),
            _ => (500, 500_001, "Internal server error".into()),
        };
        let retry_after = match r {
            Rejection::Throttled { retry_after } => Some(*retry_after),
            Rejection::Unavailable => Some(5),
            _ => None,
        };
        Self {
            status,
            error_code,
            message,
            retry_after,
        }
    }

    /// The JSON body (`ProvisioningServiceErrorDetails`).
    pub fn body(&self, tracking_id: &str, now: Timestamp) -> ErrorBody {
        ErrorBody {
            error_code: self.error_code,
            tracking_id: tracking_id.to_owned(),
            message: self.message.clone(),
            timestamp_utc: now,
        }
    }
}

/// Azure's error body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Six-digit code.
    pub error_code: u32,
    /// Request ID (also sent as `x-ms-request-id`).
    pub tracking_id: String,
    /// Human-readable message.
    pub message: String,
    /// When.
    pub timestamp_utc: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_prefix_equals_status() {
        let all = [
            Rejection::Unauthorized("x".into()),
            Rejection::Forbidden("EnrollmentWrite"),
            Rejection::ScopeNotFound,
            Rejection::PathNotFound,
            Rejection::EnrollmentNotFound,
            Rejection::GroupNotFound,
            Rejection::RegistrationNotFound,
            Rejection::OperationNotFound,
            Rejection::Conflict("c".into()),
            Rejection::PreconditionFailed,
            Rejection::BadRequest("b".into()),
            Rejection::BadApiVersion("v".into()),
            Rejection::PayloadTooLarge,
            Rejection::MethodNotAllowed,
            Rejection::UnsupportedMediaType,
            Rejection::Throttled { retry_after: 3 },
            Rejection::Unavailable,
            Rejection::Internal,
        ];
        for r in &all {
            let w = WireError::from_rejection(r);
            assert_eq!(w.error_code / 1000, u32::from(w.status), "{r:?}");
        }
    }

    #[test]
    fn unauthorized_hides_the_reason() {
        let w = WireError::from_rejection(&Rejection::Unauthorized(
            "signature mismatch for key dGVzdA==".into(),
        ));
        assert_eq!(
            (w.status, w.error_code, w.message.as_str()),
            (401, 401_002, "Unauthorized")
        );
        let now = Timestamp::from_unix_nanos(0).unwrap();
        let json = serde_json::to_string(&w.body("t-1", now)).unwrap();
        assert_eq!(
            json,
            r#"{"errorCode":401002,"trackingId":"t-1","message":"Unauthorized","timestampUtc":"1970-01-01T00:00:00.0000000Z"}"#
        );
    }
}
