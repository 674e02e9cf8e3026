//! The JSON documents the Azure connector sends and reads: the device identity (`PUT
//! /devices/{id}`) and the twin's writable parts (`tags`, `properties.desired`).

use dps_service::{HubAuth, HubDevice, HubDeviceState, HubError};
use dps_types::{DeviceCapabilities, InitialTwin, TwinProperties};
use serde_json::{Map, Value, json};

/// The `authentication` object for `auth`.
fn authentication(auth: &HubAuth) -> Result<Value, HubError> {
    match auth {
        HubAuth::SymmetricKey { primary, secondary } => Ok(json!({
            "type": "sas",
            "symmetricKey": {
                "primaryKey": primary.expose_base64(),
                // An empty secondary key makes the hub generate one.
                "secondaryKey": secondary.as_ref().map_or("", |k| k.expose_base64()),
            }
        })),
        // When only one certificate exists, both slots hold its thumbprint (as Azure DPS does).
        HubAuth::X509Thumbprint { primary, secondary } => Ok(json!({
            "type": "selfSigned",
            "x509Thumbprint": {
                "primaryThumbprint": primary,
                "secondaryThumbprint": secondary.as_deref().unwrap_or(primary),
            }
        })),
        HubAuth::CertificateAuthority => Ok(json!({"type": "certificateAuthority"})),
        #[allow(unreachable_patterns)] // other credential kinds may be added to HubAuth
        other => Err(HubError::Rejected(format!(
            "the azure-iothub connector cannot create {} identities",
            other.kind()
        ))),
    }
}

/// The identity document for `d`. An existing identity (as read from the hub) is the base, so
/// the fields DPS does not own (status, statusReason, deviceScope, parentScopes) are kept: a PUT
/// replaces the whole identity.
pub(crate) fn document(d: &HubDevice, existing: Option<&Value>) -> Result<Value, HubError> {
    let mut doc = match existing {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert("status".into(), json!("enabled"));
            m
        }
    };
    doc.insert("deviceId".into(), json!(d.device_id));
    doc.insert("authentication".into(), authentication(&d.auth)?);
    doc.insert(
        "capabilities".into(),
        json!({ "iotEdge": d.capabilities.iot_edge }),
    );
    Ok(Value::Object(doc))
}

/// The twin body writing `twin` (an absent twin writes empty tags and desired properties).
pub(crate) fn twin_body(twin: Option<&InitialTwin>) -> Value {
    let tags = twin.and_then(|t| t.tags.clone()).unwrap_or_default();
    let desired = twin
        .and_then(|t| t.properties.as_ref())
        .and_then(|p| p.desired.clone())
        .unwrap_or_default();
    json!({ "tags": tags, "properties": { "desired": desired } })
}

/// Removes `$metadata`, `$version` and the like, at every depth.
fn strip_meta(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| match v {
            Value::Object(o) => (k.clone(), Value::Object(strip_meta(o))),
            other => (k.clone(), other.clone()),
        })
        .collect()
}

/// What migrates: the identity's capabilities and the twin's tags and desired properties.
pub(crate) fn device_state(identity: &Value, twin: &Value) -> HubDeviceState {
    let iot_edge = identity
        .pointer("/capabilities/iotEdge")
        .or_else(|| twin.pointer("/capabilities/iotEdge"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tags = twin
        .get("tags")
        .and_then(Value::as_object)
        .map(strip_meta)
        .filter(|m| !m.is_empty());
    let desired = twin
        .pointer("/properties/desired")
        .and_then(Value::as_object)
        .map(strip_meta)
        .filter(|m| !m.is_empty());
    HubDeviceState {
        capabilities: DeviceCapabilities { iot_edge },
        twin: InitialTwin {
            tags,
            properties: desired.map(|d| TwinProperties { desired: Some(d) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_types::{HubHostName, RegistrationId, SymmetricKey};

    fn device() -> HubDevice {
        HubDevice {
            hub: HubHostName::new("hub-a").unwrap(),
            device_id: "d1".into(),
            registration_id: RegistrationId::new("d1").unwrap(),
            auth: HubAuth::SymmetricKey {
                primary: SymmetricKey::new("AAAAAAAAAAAAAAAAAAAAAA==").unwrap(),
                secondary: None,
            },
            capabilities: DeviceCapabilities { iot_edge: true },
            initial_twin: None,
            reset_twin: true,
            previous_hub: None,
        }
    }

    #[test]
    fn x509_devices_get_self_signed_identities_pinned_to_thumbprints() {
        let mut d = device();
        d.auth = HubAuth::X509Thumbprint {
            primary: "AB".repeat(32),
            secondary: None,
        };
        let doc = document(&d, None).unwrap();
        let auth = &doc["authentication"];
        assert_eq!(auth["type"], "selfSigned");
        // One certificate: both slots hold its thumbprint, as Azure DPS writes them.
        assert_eq!(auth["x509Thumbprint"]["primaryThumbprint"], "AB".repeat(32));
        assert_eq!(
            auth["x509Thumbprint"]["secondaryThumbprint"],
            "AB".repeat(32)
        );
        assert!(auth.get("symmetricKey").is_none());
        d.auth = HubAuth::X509Thumbprint {
            primary: "AB".repeat(32),
            secondary: Some("CD".repeat(32)),
        };
        let doc = document(&d, None).unwrap();
        assert_eq!(
            doc["authentication"]["x509Thumbprint"]["secondaryThumbprint"],
            "CD".repeat(32)
        );
        d.auth = HubAuth::CertificateAuthority;
        let doc = document(&d, None).unwrap();
        assert_eq!(doc["authentication"]["type"], "certificateAuthority");
    }

    #[test]
    fn identity_documents_keep_what_dps_does_not_own() {
        let fresh = document(&device(), None).unwrap();
        assert_eq!(fresh["status"], "enabled");
        assert_eq!(fresh["authentication"]["type"], "sas");
        assert_eq!(
            fresh["authentication"]["symmetricKey"]["primaryKey"],
            "AAAAAAAAAAAAAAAAAAAAAA=="
        );
        assert_eq!(fresh["capabilities"]["iotEdge"], true);
        let existing = json!({"deviceId":"d1","status":"disabled","deviceScope":"s","etag":"e1",
            "authentication":{"type":"selfSigned"}});
        let updated = document(&device(), Some(&existing)).unwrap();
        assert_eq!(
            (&updated["status"], &updated["deviceScope"]),
            (&json!("disabled"), &json!("s"))
        );
        assert_eq!(updated["authentication"]["type"], "sas");
    }

    #[test]
    fn migrated_state_drops_metadata() {
        let twin = json!({"tags":{"a":1,"$x":2},"capabilities":{"iotEdge":true},
            "properties":{"desired":{"t":30,"$version":4,"$metadata":{}},"reported":{"r":1}}});
        let s = device_state(&Value::Null, &twin);
        assert!(s.capabilities.iot_edge);
        assert_eq!(s.twin.tags.unwrap(), *json!({"a":1}).as_object().unwrap());
        assert_eq!(
            s.twin.properties.unwrap().desired.unwrap(),
            *json!({"t":30}).as_object().unwrap()
        );
        assert_eq!(
            twin_body(None),
            json!({"tags":{},"properties":{"desired":{}}})
        );
    }
}
