//! The `api-version` values the device and service APIs accept. Every listed version is served
//! with one JSON model: the versions differ only by optional fields (see the reference tables).

use dps_types::Rejection;

/// Device API versions, oldest first (HTTPS query, MQTT username, AMQP link property).
pub const DEVICE_API_VERSIONS: &[&str] = &[
    "2017-08-31-preview",
    "2017-11-15",
    "2018-04-01",
    "2018-09-01-preview",
    "2018-11-01",
    "2019-01-15",
    "2019-03-31",
    "2021-06-01",
    "2021-10-01",
    "2021-11-01-preview",
    "2025-07-01-preview",
    "2026-04-01",
    "2026-11-01",
    "2026-11-02-preview",
    "2026-11-15-preview",
];

/// Service API versions, oldest first.
pub const SERVICE_API_VERSIONS: &[&str] = &[
    "2017-11-15",
    "2018-04-01",
    "2018-09-01-preview",
    "2019-03-31",
    "2021-10-01",
    "2021-11-01-preview",
    "2025-07-01-preview",
    "2026-04-01",
    "2026-07-01-preview",
    "2026-11-01",
];

/// A validated api-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(&'static str);

impl ApiVersion {
    /// The version string.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
    /// True for device versions from before native reprovisioning (≤ 2018-04-01), which keep
    /// sticky hub assignment when the enrollment has no reprovision policy.
    pub fn is_legacy_sticky(&self) -> bool {
        self.0 <= "2018-04-01"
    }
}

fn find(list: &[&'static str], v: Option<&str>) -> Result<ApiVersion, Rejection> {
    let v = v.ok_or_else(|| {
        Rejection::BadApiVersion("the api-version query parameter is required".into())
    })?;
    list.iter()
        .find(|k| k.eq_ignore_ascii_case(v))
        .map(|k| ApiVersion(k))
        .ok_or_else(|| Rejection::BadApiVersion(format!("unsupported api-version '{v}'")))
}

/// Validates a device API version.
pub fn device(v: Option<&str>) -> Result<ApiVersion, Rejection> {
    find(DEVICE_API_VERSIONS, v)
}

/// Validates a service API version.
pub fn service(v: Option<&str>) -> Result<ApiVersion, Rejection> {
    find(SERVICE_API_VERSIONS, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_versions_accepted_unknown_refused() {
        assert_eq!(device(Some("2019-03-31")).unwrap().as_str(), "2019-03-31");
        assert!(device(Some("2021-06-01")).is_ok());
        assert!(device(Some("2026-11-15-PREVIEW")).is_ok());
        assert!(matches!(
            device(Some("2030-01-01")),
            Err(Rejection::BadApiVersion(_))
        ));
        assert!(matches!(device(None), Err(Rejection::BadApiVersion(_))));
        assert!(service(Some("2021-10-01")).is_ok());
        assert!(service(Some("2018-04-01")).is_ok());
        assert!(service(Some("2019-03-31")).is_ok());
        assert!(device(Some("2017-11-15")).unwrap().is_legacy_sticky());
        assert!(!device(Some("2019-03-31")).unwrap().is_legacy_sticky());
    }
}
