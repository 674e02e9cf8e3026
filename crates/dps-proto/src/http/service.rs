//! Service-API bodies that are not records: query specifications, paging headers and
//! continuation tokens, bulk operations and their results.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dps_types::Rejection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default page size when `x-ms-max-item-count` is absent or 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page size; larger requests are clamped (not refused).
pub const MAX_PAGE_SIZE: usize = 1000;
/// Most items in one bulk call (Azure allows 10).
pub const MAX_BULK_ITEMS: usize = 10_000;
/// Largest bulk body.
pub const MAX_BULK_BODY_BYTES: usize = 32 * 1024 * 1024;

/// `x-ms-item-type` values.
pub mod item_type {
    /// Individual enrollments.
    pub const ENROLLMENT: &str = "Enrollment";
    /// Enrollment groups.
    pub const ENROLLMENT_GROUP: &str = "EnrollmentGroup";
    /// Registration records.
    pub const DEVICE_REGISTRATION: &str = "DeviceRegistration";
}

/// A parsed query. Only `SELECT *` (with or without `FROM <collection>`, or just `*`) is
/// supported: it returns the whole collection in stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query;

#[derive(Deserialize)]
struct QuerySpecification {
    query: Option<String>,
}

impl Query {
    /// Decodes a `QuerySpecification` body. An empty body means `SELECT *` (the registration
    /// query takes none).
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        let spec: QuerySpecification = serde_json::from_slice(body)
            .map_err(|e| Rejection::BadRequest(format!("invalid query specification: {e}")))?;
        let q = spec.query.unwrap_or_else(|| "*".into());
        let words: Vec<String> = q.split_whitespace().map(str::to_ascii_lowercase).collect();
        let ok = match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["*"] | ["select", "*"] => true,
            ["select", "*", "from", c] => {
                matches!(
                    *c,
                    "enrollments" | "enrollmentgroups" | "deviceregistrations" | "registrations"
                )
            }
            _ => false,
        };
        if ok {
            Ok(Self)
        } else {
            Err(Rejection::BadRequest(format!(
                "unsupported query '{q}': only SELECT * [FROM <collection>] is supported"
            )))
        }
    }
}

/// Parses `x-ms-max-item-count` (absent or 0 = default; clamped to [`MAX_PAGE_SIZE`]).
pub fn page_size(header: Option<&str>) -> Result<usize, Rejection> {
    match header.map(str::trim) {
        None | Some("") => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => {
            let n: usize = v.parse().map_err(|_| {
                Rejection::BadRequest("x-ms-max-item-count must be a non-negative integer".into())
            })?;
            Ok(if n == 0 {
                DEFAULT_PAGE_SIZE
            } else {
                n.min(MAX_PAGE_SIZE)
            })
        }
    }
}

/// Encodes a continuation token: the last key of the page, opaque to clients.
pub fn encode_continuation(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

/// Decodes a continuation token back to the last key seen.
pub fn decode_continuation(token: &str) -> Result<String, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| Rejection::BadRequest("invalid x-ms-continuation token".into()))?;
    String::from_utf8(bytes)
        .map_err(|_| Rejection::BadRequest("invalid x-ms-continuation token".into()))
}

/// Bulk modes (parsed case-insensitively: Node sends `updateIfMatchEtag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMode {
    /// Create; fails per item if it exists.
    Create,
    /// Create or replace, ignoring etags.
    Update,
    /// Replace only if the item's etag matches.
    UpdateIfMatchEtag,
    /// Delete.
    Delete,
}

/// A decoded bulk request: mode plus the raw items (each decoded by the caller, so one bad item
/// fails alone).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// The mode.
    pub mode: BulkMode,
    /// The items.
    pub items: Vec<Value>,
}

impl BulkRequest {
    /// Decodes `{"mode": ..., "enrollments"|"enrollmentGroups": [...]}`.
    pub fn decode(body: &[u8], items_field: &str) -> Result<Self, Rejection> {
        if body.len() > MAX_BULK_BODY_BYTES {
            return Err(Rejection::PayloadTooLarge);
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Rejection::BadRequest(format!("invalid bulk body: {e}")))?;
        let mode = match v
            .get("mode")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("create") => BulkMode::Create,
            Some("update") => BulkMode::Update,
            Some("updateifmatchetag") => BulkMode::UpdateIfMatchEtag,
            Some("delete") => BulkMode::Delete,
            _ => {
                return Err(Rejection::BadRequest(
                    "bulk mode must be create, update, updateIfMatchETag or delete".into(),
                ));
            }
        };
        let items = match v.get(items_field) {
            Some(Value::Array(a)) => a.clone(),
            _ => {
                return Err(Rejection::BadRequest(format!(
                    "bulk body needs an array '{items_field}'"
                )));
            }
        };
        if items.len() > MAX_BULK_ITEMS {
            return Err(Rejection::BadRequest(format!(
                "a bulk operation takes at most {MAX_BULK_ITEMS} items"
            )));
        }
        Ok(Self { mode, items })
    }
}

/// One failed bulk item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkItemError {
    /// The item's ID (`registrationId` or `enrollmentGroupId` on the wire).
    #[serde(flatten)]
    pub id: BulkItemId,
    /// Six-digit code.
    pub error_code: u32,
    /// Message.
    pub error_status: String,
}

/// The ID member of a bulk error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkItemId {
    /// An individual enrollment.
    RegistrationId(String),
    /// A group.
    EnrollmentGroupId(String),
}

/// `BulkEnrollmentOperationResult`: only failures are listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    /// True when every item succeeded.
    pub is_successful: bool,
    /// The failed items.
    #[serde(default)]
    pub errors: Vec<BulkItemError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        for ok in [
            r#"{"query":"*"}"#,
            r#"{"query":"SELECT *"}"#,
            r#"{"query":"select * from enrollments"}"#,
            "",
            r#"{}"#,
        ] {
            assert!(Query::decode(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"query":"SELECT id FROM enrollments"}"#,
            "{",
            r#"{"query":"DROP"}"#,
        ] {
            assert!(Query::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn paging() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some("0")).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some("2")).unwrap(), 2);
        assert_eq!(page_size(Some("99999")).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(Some("-1")).is_err());
        let t = encode_continuation("dev:7");
        assert_eq!(decode_continuation(&t).unwrap(), "dev:7");
        assert!(decode_continuation("!!!").is_err());
    }

    #[test]
    fn bulk() {
        let b = BulkRequest::decode(
            br#"{"mode":"updateIfMatchEtag","enrollments":[{"a":1}]}"#,
            "enrollments",
        )
        .unwrap();
        assert_eq!(b.mode, BulkMode::UpdateIfMatchEtag);
        assert_eq!(b.items.len(), 1);
        assert!(
            BulkRequest::decode(br#"{"mode":"upsert","enrollments":[]}"#, "enrollments").is_err()
        );
        assert!(BulkRequest::decode(br#"{"mode":"create"}"#, "enrollments").is_err());
        let r = BulkResult {
            is_successful: false,
            errors: vec![BulkItemError {
                id: BulkItemId::RegistrationId("dev-2".into()),
                error_code: 409201,
                error_status: "exists".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"isSuccessful":false,"errors":[{"registrationId":"dev-2","errorCode":409201,"errorStatus":"exists"}]}"#
        );
    }
}
