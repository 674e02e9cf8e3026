//! The device API's register and poll messages (`DeviceRegistration` in,
//! `RegistrationOperationStatus` out), shared by every transport.
//!
//! Wire vectors (Node SDK, captured):
//! ```text
//! PUT /0ne00000001/registrations/dev-1/register?api-version=2019-03-31
//! {"registrationId":"dev-1"}
//! <- 202 Retry-After: 2  {"operationId":"…","status":"assigning"}
//! GET /0ne00000001/registrations/dev-1/operations/{operationId}?api-version=2019-03-31   (body "{}")
//! <- 200 {"operationId":"…","status":"assigned","registrationState":{"registrationId":"dev-1",
//!         "createdDateTimeUtc":"…","assignedHub":"…","deviceId":"dev-1","status":"assigned",
//!         "substatus":"initialAssignment","lastUpdatedDateTimeUtc":"…","etag":"…"}}
//! ```

use dps_types::{
    DeviceRegistrationState, EnrollmentGroupId, Operation, RegistrationStatus, Rejection,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest accepted request body: Azure's 96 KB message limit.
pub const MAX_BODY_BYTES: usize = 96 * 1024;

/// The register request body. Every field is optional: .NET MQTT/AMQP send only a payload or
/// nothing at all, Python sends `"payload": null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    /// Registration ID (the path's is authoritative; a different one is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// Custom payload (e.g. `{"modelId": "dtmi:…"}`), passed to custom allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// TPM keys (TPM attestation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<Value>,
    /// Certificate signing request (2025-07-01-preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

impl DeviceRegistration {
    /// Decodes a body: empty or whitespace-only means "no fields" (the MQTT poll sends `" "`);
    /// otherwise it must be a JSON object within [`MAX_BODY_BYTES`].
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        if body.len() > MAX_BODY_BYTES {
            return Err(Rejection::PayloadTooLarge);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| Rejection::BadRequest(format!("invalid registration body: {e}")))
    }

    /// Checks a body registration ID against the path's (case-insensitive).
    pub fn check_id(&self, path_id: &str) -> Result<(), Rejection> {
        match &self.registration_id {
            Some(id) if !id.eq_ignore_ascii_case(path_id) => Err(Rejection::BadRequest(
                "the registration ID in the body does not match the one in the path".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// `symmetricKey` member of a registration result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyResult {
    /// The group the device registered through.
    pub enrollment_group_id: EnrollmentGroupId,
}

/// `x509` member of a registration result: empty for an individual enrollment (as Azure
/// answers), the group for a member of an X.509 enrollment group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Result {
    /// The group the device registered through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<EnrollmentGroupId>,
}

/// `registrationState` of a device response: the registration state plus attestation details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationResult {
    /// The state.
    #[serde(flatten)]
    pub state: DeviceRegistrationState,
    /// Group details for symmetric-key group members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyResult>,
    /// Attestation details for X.509 devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Result>,
}

/// The body of every register / poll answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    /// Operation ID (always present, as the embedded C SDK requires).
    pub operation_id: String,
    /// Status (always present).
    pub status: RegistrationStatus,
    /// The registration state (absent on the register answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationResult>,
}

impl RegistrationOperationStatus {
    /// The answer to a register request: always `assigning` (with HTTP 202), even when the
    /// result is already known, because .NET and iot-identity-service only accept 202 there.
    pub fn accepted(op: &Operation) -> Self {
        Self {
            operation_id: op.operation_id.to_string(),
            status: RegistrationStatus::Assigning,
            registration_state: None,
        }
    }

    /// The answer to a poll, with its HTTP status: 202 while assigning (with
    /// `registrationState.registrationId`, which iot-identity-service needs), 200 when terminal.
    pub fn poll(op: &Operation) -> (u16, Self) {
        let symmetric_key = op
            .enrollment_group_id
            .clone()
            .filter(|_| op.attestation == dps_types::AttestationKind::SymmetricKey)
            .map(|enrollment_group_id| SymmetricKeyResult {
                enrollment_group_id,
            });
        let x509 = (op.attestation == dps_types::AttestationKind::X509).then(|| X509Result {
            enrollment_group_id: op.enrollment_group_id.clone(),
        });
        let status = if op.status == RegistrationStatus::Assigning {
            202
        } else {
            200
        };
        let body = Self {
            operation_id: op.operation_id.to_string(),
            status: op.status,
            registration_state: Some(DeviceRegistrationResult {
                state: op.registration_state.clone(),
                symmetric_key,
                x509,
            }),
        };
        (status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_types::{AttestationKind, OperationId, RegistrationId, Timestamp};

    fn op(status: RegistrationStatus, group: Option<&str>) -> Operation {
        let t = Timestamp::from_unix_nanos(1_661_983_370_516_335_200).unwrap();
        Operation {
            operation_id: OperationId::new("5.abc.def").unwrap(),
            registration_id: RegistrationId::new("dev-1").unwrap(),
            status,
            registration_state: DeviceRegistrationState {
                registration_id: RegistrationId::new("dev-1").unwrap(),
                created_date_time_utc: Some(t),
                assigned_hub: Some(dps_types::HubHostName::new("hub-a.example.net").unwrap()),
                device_id: Some("dev-1".into()),
                status,
                substatus: Some(dps_types::Substatus::InitialAssignment),
                error_code: None,
                error_message: None,
                last_updated_date_time_utc: Some(t),
                etag: Some(dps_types::Etag::new("e1")),
                payload: None,
            },
            enrollment_group_id: group.map(|g| EnrollmentGroupId::new(g).unwrap()),
            attestation: AttestationKind::SymmetricKey,
            created: t,
        }
    }

    #[test]
    fn bodies_decode_leniently() {
        assert_eq!(
            DeviceRegistration::decode(b"").unwrap(),
            DeviceRegistration::default()
        );
        assert_eq!(
            DeviceRegistration::decode(b" ").unwrap(),
            DeviceRegistration::default()
        );
        let py =
            DeviceRegistration::decode(br#"{"payload": null, "registrationId": "dev-1"}"#).unwrap();
        assert_eq!(py.registration_id.as_deref(), Some("dev-1"));
        assert!(py.check_id("DEV-1").is_ok());
        assert!(py.check_id("dev-2").is_err());
        let unknown = DeviceRegistration::decode(br#"{"registrationId":"d","future":1}"#).unwrap();
        assert_eq!(unknown.registration_id.as_deref(), Some("d"));
        assert!(matches!(
            DeviceRegistration::decode(b"{not json"),
            Err(Rejection::BadRequest(_))
        ));
        assert!(matches!(
            DeviceRegistration::decode(b"[1,2]"),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(
            DeviceRegistration::decode(&vec![b' '; MAX_BODY_BYTES + 1]),
            Err(Rejection::PayloadTooLarge)
        );
    }

    #[test]
    fn assigned_poll_matches_the_azure_shape() {
        let (code, body) =
            RegistrationOperationStatus::poll(&op(RegistrationStatus::Assigned, Some("group-1")));
        assert_eq!(code, 200);
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"operationId":"5.abc.def","status":"assigned","registrationState":{"registrationId":"dev-1","createdDateTimeUtc":"2022-08-31T22:02:50.5163352Z","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2022-08-31T22:02:50.5163352Z","etag":"\"e1\"","symmetricKey":{"enrollmentGroupId":"group-1"}}}"#
        );
        let back: RegistrationOperationStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn x509_polls_carry_an_x509_member() {
        // Azure answers an individual X.509 device with `"x509":{}` (captured).
        let mut o = op(RegistrationStatus::Assigned, None);
        o.attestation = AttestationKind::X509;
        let json = serde_json::to_value(RegistrationOperationStatus::poll(&o).1).unwrap();
        assert_eq!(json["registrationState"]["x509"], serde_json::json!({}));
        assert!(json["registrationState"].get("symmetricKey").is_none());
        let mut g = op(RegistrationStatus::Assigned, Some("cas"));
        g.attestation = AttestationKind::X509;
        let json = serde_json::to_value(RegistrationOperationStatus::poll(&g).1).unwrap();
        assert_eq!(
            json["registrationState"]["x509"],
            serde_json::json!({"enrollmentGroupId": "cas"})
        );
        // Symmetric-key devices have no x509 member.
        let s = serde_json::to_value(
            RegistrationOperationStatus::poll(&op(RegistrationStatus::Assigned, None)).1,
        )
        .unwrap();
        assert!(s["registrationState"].get("x509").is_none());
    }

    #[test]
    fn register_answer_is_assigning() {
        let a = RegistrationOperationStatus::accepted(&op(RegistrationStatus::Assigned, None));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"operationId":"5.abc.def","status":"assigning"}"#
        );
        let (code, _) = RegistrationOperationStatus::poll(&op(RegistrationStatus::Assigning, None));
        assert_eq!(code, 202);
    }
}
