//! The domain model of dps-rs, a self-hostable Device Provisioning Service that is
//! wire-compatible with Azure IoT Hub DPS.
//!
//! This crate owns the vocabulary every other crate speaks: identifier newtypes that cannot hold
//! an invalid value ([`RegistrationId`], [`IdScope`], [`DeviceId`], [`OperationId`],
//! [`EnrollmentGroupId`], [`HubHostName`], [`Etag`]), enrollments ([`IndividualEnrollment`],
//! [`EnrollmentGroup`]) with their [`AttestationMechanism`] and policies, and registration records
//! and operations ([`RegistrationRecord`], [`Operation`]). The serde representation of each record
//! *is* Azure's JSON (camelCase, 7-digit UTC timestamps, quoted etags), so the wire codecs reuse it.
//!
//! It deliberately does no I/O, holds no clock and makes no decisions: verification lives in
//! `dps-attest`, allocation in `dps-alloc`, rules in `dps-core`.
//!
//! Start from [`IndividualEnrollment`]:
//!
//! ```
//! use dps_types::{IndividualEnrollment, ProvisioningStatus, RegistrationId};
//!
//! let e: IndividualEnrollment = serde_json::from_str(
//!     r#"{"registrationId":"Dev-1","attestation":{"type":"symmetricKey"}}"#,
//! ).unwrap();
//! assert_eq!(e.registration_id, RegistrationId::new("Dev-1").unwrap());
//! assert_eq!(e.registration_id.key(), "dev-1");
//! assert_eq!(e.provisioning_status, ProvisioningStatus::Enabled);
//! // Symmetric keys never leave through `masked()`.
//! assert!(e.attestation.masked().symmetric_key().unwrap().primary_key.is_none());
//! ```

pub mod attestation;
pub mod certificate;
pub mod enrollment;
pub mod hub_identity;
pub mod ids;
pub mod pattern;
pub mod registration;
pub mod rejection;
pub mod time;

pub use attestation::{
    AttestationKind, AttestationMechanism, KeyError, SymmetricKey, SymmetricKeyAttestation,
    TpmAttestation, X509Attestation, X509CaReferences, X509CertificateInfo,
    X509CertificateWithInfo, X509Certificates,
};
pub use certificate::{CaCertificate, CertificateProperties};
pub use enrollment::{
    AllocationPolicy, CustomAllocationDefinition, DeviceCapabilities, EnrollmentGroup,
    IndividualEnrollment, InitialTwin, PolicyView, ProvisioningStatus, ReprovisionPolicy,
    TwinProperties, ValidationError,
};
pub use hub_identity::HubIdentity;
pub use ids::{
    DeviceId, EnrollmentGroupId, Etag, HubHostName, IdError, IdScope, OperationId, RegistrationId,
};
pub use pattern::{PatternError, RegistrationIdPattern};
pub use registration::{
    DeviceRegistrationState, Operation, RegistrationRecord, RegistrationStatus, Substatus,
};
pub use rejection::Rejection;
pub use time::Timestamp;
