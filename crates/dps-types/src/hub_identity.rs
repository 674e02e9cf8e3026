//! A device identity as a linked hub keeps it, for hubs whose registry DPS itself hosts (the
//! `embedded` connector): which device exists in which hub, from which registration, with which
//! kind of credential, capabilities and twin.
//!
//! Hub identities are not per ID scope (one hub may serve several), so they are keyed by
//! (hub host name, device ID); [`HubHostName`] is already lower case. The record never holds a
//! key or certificate: only the credential kind's name (`sas`, `selfSigned`,
//! `certificateAuthority`).
//!
//! ```
//! use dps_types::HubIdentity;
//!
//! let id: HubIdentity = serde_json::from_str(
//!     r#"{"hub":"Hub-A.example.net","deviceId":"dev-1","registrationId":"dev-1","authKind":"sas"}"#,
//! ).unwrap();
//! assert_eq!(id.cursor(), "hub-a.example.net/dev-1");
//! assert_eq!(HubIdentity::split_cursor(&id.cursor()), Some(("hub-a.example.net", "dev-1")));
//! ```

use serde::{Deserialize, Serialize};

use crate::{DeviceCapabilities, HubHostName, InitialTwin, RegistrationId};

/// One device identity in a hub whose registry DPS hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubIdentity {
    /// The hub (lower case).
    pub hub: HubHostName,
    /// Device ID in the hub (case-sensitive, as hubs treat it).
    pub device_id: String,
    /// The registration the identity came from.
    pub registration_id: RegistrationId,
    /// Credential kind (`sas`, `selfSigned`, `certificateAuthority`), never the key itself.
    pub auth_kind: String,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: DeviceCapabilities,
    /// The twin as last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<InitialTwin>,
    /// How many times DPS wrote this identity.
    #[serde(default)]
    pub writes: u64,
}

impl HubIdentity {
    /// The listing continuation key of this identity: `hub/deviceId`. A hub host name never
    /// contains `/`, so [`split_cursor`](Self::split_cursor) recovers both parts.
    pub fn cursor(&self) -> String {
        Self::cursor_of(self.hub.as_str(), &self.device_id)
    }

    /// The continuation key of (`hub`, `device_id`); `hub` is lower-cased.
    pub fn cursor_of(hub: &str, device_id: &str) -> String {
        format!("{}/{device_id}", hub.to_ascii_lowercase())
    }

    /// Splits a continuation key into (hub, device ID); `None` if it has no `/`.
    pub fn split_cursor(cursor: &str) -> Option<(&str, &str)> {
        cursor.split_once('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let id: HubIdentity = serde_json::from_str(
            r#"{"hub":"h.example.net","deviceId":"a/b","registrationId":"r","authKind":"x"}"#,
        )
        .unwrap();
        assert_eq!(id.writes, 0);
        assert!(id.twin.is_none());
        assert_eq!(
            HubIdentity::split_cursor(&id.cursor()),
            Some(("h.example.net", "a/b"))
        );
        let back: HubIdentity = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
        assert!(
            serde_json::from_str::<HubIdentity>(
                r#"{"hub":"bad/hub","deviceId":"d","registrationId":"r","authKind":"x"}"#
            )
            .is_err()
        );
    }
}
