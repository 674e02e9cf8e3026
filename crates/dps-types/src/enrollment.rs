//! Individual enrollments and enrollment groups, with the policies they carry.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attestation::{AttestationKind, AttestationMechanism};
use crate::ids::{DeviceId, EnrollmentGroupId, Etag, RegistrationId};
use crate::pattern::RegistrationIdPattern;
use crate::registration::DeviceRegistrationState;
use crate::time::Timestamp;

/// Whether an enrollment may be used to register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningStatus {
    /// Registrations are allowed.
    #[default]
    #[serde(alias = "Enabled")]
    Enabled,
    /// Registrations are refused with status `disabled`.
    #[serde(alias = "Disabled")]
    Disabled,
}

/// How a hub is chosen for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    /// Evenly weighted distribution (weighted hash of the registration ID).
    Hashed,
    /// Lowest latency, ties hashed.
    GeoLatency,
    /// The single hub the enrollment names.
    Static,
    /// A webhook or in-process allocator decides.
    Custom,
}

impl AllocationPolicy {
    /// Parses case-insensitively (`hashed`, `Hashed`, `geolatency`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hashed" => Some(Self::Hashed),
            "geolatency" => Some(Self::GeoLatency),
            "static" => Some(Self::Static),
            "custom" => Some(Self::Custom),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for AllocationPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown allocation policy '{s}'")))
    }
}

/// What happens to an assigned device when it registers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    /// Re-evaluate the hub on re-registration.
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    /// Migrate the device's state when it moves (else reset to the initial twin).
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        Self {
            update_hub_assignment: true,
            migrate_device_data: true,
        }
    }
}

/// Device capabilities applied to the hub identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    /// The device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// Twin properties of an initial twin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinProperties {
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Map<String, Value>>,
}

/// The initial twin written to the hub on assignment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    /// Twin tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    /// Twin properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<TwinProperties>,
}

/// The custom allocation webhook of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    /// The webhook URL (its query string may hold a secret).
    pub webhook_url: String,
    /// The API version of the record types sent to the webhook.
    pub api_version: String,
}

/// An individual enrollment: one device, identified by its registration ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    /// The device's registration ID.
    pub registration_id: RegistrationId,
    /// The IoT Hub device ID (default: the registration ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// The device's current registration (read-only; filled on output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
    /// Free-form device information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<Value>,
    /// How the device attests.
    pub attestation: AttestationMechanism,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: DeviceCapabilities,
    /// Legacy desired hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Initial twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Entity tag (server-minted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Etag>,
    /// Enabled or disabled.
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// Reprovisioning policy; `None` = never set (matters for old device API versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Creation time (server-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<Timestamp>,
    /// Last update time (server-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<Timestamp>,
    /// Allocation policy override (`None` = the scope's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Hubs this enrollment may be assigned to (empty = all linked hubs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iot_hubs: Vec<String>,
    /// Custom allocation webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Fields of newer API versions, kept and echoed verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An enrollment group: every device whose credential derives from the group's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    /// The group ID.
    pub enrollment_group_id: EnrollmentGroupId,
    /// How members attest (symmetric key or X.509).
    pub attestation: AttestationMechanism,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: DeviceCapabilities,
    /// Legacy desired hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Initial twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Entity tag (server-minted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Etag>,
    /// Enabled or disabled.
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// Reprovisioning policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Creation time (server-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<Timestamp>,
    /// Last update time (server-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<Timestamp>,
    /// Allocation policy override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Hubs members may be assigned to (empty = all linked hubs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iot_hubs: Vec<String>,
    /// Custom allocation webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Extension beyond Azure DPS (`registrationIdPattern`): only devices whose registration ID
    /// matches may register through this group; absent (the default, and always in Azure's
    /// bodies), any device may. Never serialised when absent, so Azure-shaped bodies stay so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id_pattern: Option<RegistrationIdPattern>,
    /// Fields of newer API versions, kept and echoed verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A rule an enrollment breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

/// The policy fields both record kinds share, for rules that apply to both.
pub struct PolicyView<'a> {
    /// Allocation policy.
    pub allocation_policy: Option<AllocationPolicy>,
    /// Hubs named.
    pub iot_hubs: &'a [String],
    /// Legacy hub.
    pub iot_hub_host_name: Option<&'a str>,
    /// Custom definition.
    pub custom: Option<&'a CustomAllocationDefinition>,
}

impl PolicyView<'_> {
    /// The hubs the record names: `iotHubs`, else the legacy `iotHubHostName`.
    pub fn named_hubs(&self) -> Vec<&str> {
        if !self.iot_hubs.is_empty() {
            self.iot_hubs.iter().map(String::as_str).collect()
        } else {
            self.iot_hub_host_name.into_iter().collect()
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.allocation_policy == Some(AllocationPolicy::Custom) && self.custom.is_none() {
            return Err(ValidationError(
                "A CustomAllocationDefinition is required when the allocation policy is set to 'Custom'".into(),
            ));
        }
        if self.allocation_policy == Some(AllocationPolicy::Static) && self.named_hubs().len() != 1
        {
            return Err(ValidationError(
                "A static allocation policy requires exactly one IoT hub in iotHubs".into(),
            ));
        }
        Ok(())
    }
}

impl IndividualEnrollment {
    /// The device ID the hub identity gets.
    pub fn effective_device_id(&self) -> String {
        self.device_id
            .as_ref()
            .map_or_else(|| self.registration_id.to_string(), |d| d.to_string())
    }
    /// The policy fields.
    pub fn policy(&self) -> PolicyView<'_> {
        PolicyView {
            allocation_policy: self.allocation_policy,
            iot_hubs: &self.iot_hubs,
            iot_hub_host_name: self.iot_hub_host_name.as_deref(),
            custom: self.custom_allocation_definition.as_ref(),
        }
    }
    /// Record-level rules (hub membership is checked by the service, which knows the hubs).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let AttestationMechanism::X509(x) = &self.attestation
            && x.client_certificates.is_none()
        {
            return Err(ValidationError(
                "individual enrollments take x509 clientCertificates only".into(),
            ));
        }
        self.policy().validate()
    }
}

impl EnrollmentGroup {
    /// Whether `rid` may register through this group as far as its registration-ID pattern
    /// goes: always when the group has none.
    pub fn admits(&self, rid: &RegistrationId) -> bool {
        self.registration_id_pattern
            .as_ref()
            .is_none_or(|p| p.is_match(rid.as_str()))
    }
    /// The policy fields.
    pub fn policy(&self) -> PolicyView<'_> {
        PolicyView {
            allocation_policy: self.allocation_policy,
            iot_hubs: &self.iot_hubs,
            iot_hub_host_name: self.iot_hub_host_name.as_deref(),
            custom: self.custom_allocation_definition.as_ref(),
        }
    }
    /// Record-level rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match &self.attestation {
            AttestationMechanism::Tpm(_) => {
                return Err(ValidationError(
                    "enrollment groups do not support TPM attestation".into(),
                ));
            }
            AttestationMechanism::X509(x) if x.client_certificates.is_some() => {
                return Err(ValidationError(
                    "enrollment groups take x509 signingCertificates or caReferences".into(),
                ));
            }
            _ => {}
        }
        debug_assert!(self.attestation.kind() != AttestationKind::Tpm);
        self.policy().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_sdk_body_and_keeps_unknown_fields() {
        let body = r#"{"registrationId":"enroll-node-1","deviceId":"enroll-node-1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"XAjeK6ESKv5cjwvfoZX/huDqgPGfs4AP/uoK/UX7+FA=","secondaryKey":"EtV+8Bez6xliJaT8bdgieG+zBz7JRJWchkw1Tv5sZfU="}},"provisioningStatus":"enabled","capabilities":{"iotEdge":false},"initialTwin":{"tags":{"acceptance":"node"},"properties":{"desired":{"interval":30}}},"credentialPolicyName":"p1","etag":"\"abc\""}"#;
        let e: IndividualEnrollment = serde_json::from_str(body).unwrap();
        assert_eq!(e.registration_id.as_str(), "enroll-node-1");
        assert_eq!(
            e.extra.get("credentialPolicyName"),
            Some(&Value::from("p1"))
        );
        assert_eq!(e.etag.as_ref().unwrap().bare(), "abc");
        let out = serde_json::to_value(&e).unwrap();
        assert_eq!(out["credentialPolicyName"], "p1");
        assert_eq!(out["capabilities"]["iotEdge"], false);
        assert!(e.validate().is_ok());
    }

    #[test]
    fn policy_rules() {
        let mut e: IndividualEnrollment = serde_json::from_str(
            r#"{"registrationId":"d1","attestation":{"type":"symmetricKey"},"allocationPolicy":"Custom"}"#,
        )
        .unwrap();
        assert_eq!(e.allocation_policy, Some(AllocationPolicy::Custom));
        assert!(e.validate().is_err());
        e.allocation_policy = Some(AllocationPolicy::Static);
        assert!(e.validate().is_err());
        e.iot_hubs = vec!["hub-a".into()];
        assert!(e.validate().is_ok());
        e.iot_hubs.clear();
        e.iot_hub_host_name = Some("hub-b".into());
        assert!(e.validate().is_ok());
        assert!(serde_json::from_str::<IndividualEnrollment>(
            r#"{"registrationId":"d1","attestation":{"type":"symmetricKey"},"allocationPolicy":"nearest"}"#
        )
        .is_err());
    }

    #[test]
    fn group_pattern_is_optional_typed_and_omitted_when_absent() {
        let g: EnrollmentGroup = serde_json::from_str(
            r#"{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"},"registrationIdPattern":"Line-7-*"}"#,
        )
        .unwrap();
        assert_eq!(
            g.registration_id_pattern
                .as_ref()
                .map(RegistrationIdPattern::as_str),
            Some("Line-7-*")
        );
        assert!(g.extra.is_empty());
        assert_eq!(
            serde_json::to_value(&g).unwrap()["registrationIdPattern"],
            "Line-7-*"
        );

        let plain: EnrollmentGroup = serde_json::from_str(
            r#"{"enrollmentGroupId":"g2","attestation":{"type":"symmetricKey"}}"#,
        )
        .unwrap();
        assert_eq!(plain.registration_id_pattern, None);
        let rid = |s| RegistrationId::new(s).unwrap();
        assert!(g.admits(&rid("line-7-0042")));
        assert!(!g.admits(&rid("line-8-0042")));
        assert!(plain.admits(&rid("anything")));
        let out = serde_json::to_value(&plain).unwrap();
        assert!(out.get("registrationIdPattern").is_none(), "{out}");

        let bad = serde_json::from_str::<EnrollmentGroup>(
            r#"{"enrollmentGroupId":"g3","attestation":{"type":"symmetricKey"},"registrationIdPattern":"a b"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("registrationIdPattern contains ' '"), "{bad}");
    }

    #[test]
    fn groups_reject_tpm() {
        let g: EnrollmentGroup = serde_json::from_str(
            r#"{"enrollmentGroupId":"g1","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}}}"#,
        )
        .unwrap();
        assert!(g.validate().is_err());
    }
}
