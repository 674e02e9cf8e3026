//! Registration records (what a device's registration produced) and operations (one
//! registration attempt, polled by the device).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attestation::AttestationKind;
use crate::ids::{EnrollmentGroupId, Etag, HubHostName, OperationId, RegistrationId};
use crate::time::Timestamp;

/// Status of a registration or operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    /// Not assigned.
    Unassigned,
    /// Being assigned.
    Assigning,
    /// Assigned to a hub.
    Assigned,
    /// The registration failed (see `errorCode`).
    Failed,
    /// The enrollment is disabled.
    Disabled,
}

/// What a successful (re-)registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Substatus {
    /// First assignment.
    InitialAssignment,
    /// Moved to another hub with its data.
    DeviceDataMigrated,
    /// Moved (or reset) with the enrollment's initial data.
    DeviceDataReset,
    /// Moved back to the hub it was first assigned to.
    ReprovisionedToInitialAssignment,
}

/// The registration state of one device, as the service API and devices see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    /// Registration ID.
    pub registration_id: RegistrationId,
    /// When the record was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<Timestamp>,
    /// The assigned hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<HubHostName>,
    /// The device ID in that hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Status.
    pub status: RegistrationStatus,
    /// Substatus (for `assigned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    /// Six-digit error code (for `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// Error message (for `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<Timestamp>,
    /// Entity tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Etag>,
    /// Custom allocation payload returned to the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// A stored registration record: the public state plus what the service needs to decide the
/// next registration of the same device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRecord {
    /// The public state.
    pub state: DeviceRegistrationState,
    /// The group the device registered through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<EnrollmentGroupId>,
    /// How the device attested.
    pub attestation: AttestationKind,
    /// The first hub this device was assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_hub: Option<HubHostName>,
}

/// One registration attempt, as polled by the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Operation ID.
    pub operation_id: OperationId,
    /// The registering device.
    pub registration_id: RegistrationId,
    /// Current status of the attempt.
    pub status: RegistrationStatus,
    /// The result (terminal states) or progress.
    pub registration_state: DeviceRegistrationState,
    /// The group the device matched, if any (reported as `symmetricKey.enrollmentGroupId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<EnrollmentGroupId>,
    /// How the device attested.
    pub attestation: AttestationKind,
    /// When the attempt started (operations expire after a while).
    pub created: Timestamp,
}
