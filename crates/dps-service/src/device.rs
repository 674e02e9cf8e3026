//! The device API, transport-agnostic: register, poll an operation, look up a registration.
//! HTTPS, MQTT and AMQP front ends all call these, so every rule is identical across them.

use dps_core::EnrollmentStatus;
use dps_store::{RegistrationCommit, Store};
use dps_types::{
    AttestationKind, DeviceRegistrationState, EnrollmentGroupId, Operation, OperationId,
    RegistrationId, RegistrationStatus, Rejection, Timestamp,
};
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::auth::Matched;
use crate::env::{random_guid, random_hex};
use crate::hubs::HubRegistry;
use crate::{Service, meter, store_err};

/// A device's credential as presented on the wire.
#[derive(Debug, Clone, Copy)]
pub enum DeviceCredential<'a> {
    /// A SAS token (`Authorization` header, MQTT password, SASL PLAIN password).
    Sas(&'a str),
    /// The certificate chain the client presented in the TLS handshake, leaf first (the
    /// handshake proved it holds the leaf's key; whether an enrollment trusts it is ours).
    X509(&'a [CertificateDer<'a>]),
    /// Nothing.
    None,
}

/// A register request from any transport.
#[derive(Debug, Clone)]
pub struct RegisterRequest<'a> {
    /// The ID scope from the path / username / link address.
    pub id_scope: &'a str,
    /// The registration ID from the path / username / link address.
    pub registration_id: &'a str,
    /// The credential.
    pub credential: DeviceCredential<'a>,
    /// The custom payload of the body.
    pub payload: Option<Value>,
    /// True for device API versions ≤ 2018-04-01 (sticky assignment without a policy).
    pub legacy_api: bool,
    /// The client's address as the front end saw it, for source-region mapping.
    pub source: Option<std::net::IpAddr>,
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Registers a device: authenticates it, decides its hub, creates its identity there and
    /// records the result. Returns the operation the device will poll (its status is already
    /// terminal: assignment completes within the request).
    pub async fn register(&self, req: RegisterRequest<'_>) -> Result<Operation, Rejection> {
        let scope = self.device_scope(req.id_scope)?;
        let rid = RegistrationId::new(req.registration_id)
            .map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let previous = self
            .store
            .registration(&scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        let hint = previous
            .as_ref()
            .and_then(|p| p.enrollment_group_id.as_ref());
        let matched = self.authenticate(scope, &rid, req.credential, hint).await?;
        let now = self.clock.now();
        let (individual, group) = match &matched {
            Matched::Individual(e) => (Some(&**e), None),
            Matched::Group(g, _) => (None, Some(&**g)),
        };
        let group_id = group.map(|g| g.enrollment_group_id.clone());
        let operation_id = OperationId::new(&format!(
            "1.{}.{}",
            random_hex(&*self.entropy, 8),
            random_guid(&*self.entropy)
        ))
        .map_err(|_| Rejection::Internal)?;
        let mut state = DeviceRegistrationState {
            registration_id: individual.map_or_else(|| rid.clone(), |e| e.registration_id.clone()),
            created_date_time_utc: None,
            assigned_hub: None,
            device_id: None,
            status: RegistrationStatus::Assigning,
            substatus: None,
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: Some(now),
            etag: None,
            payload: None,
        };
        let commit =
            if dps_core::enrollment_status(individual, group) == Some(EnrollmentStatus::Disabled) {
                state.status = RegistrationStatus::Disabled;
                RegistrationCommit {
                    record: None,
                    operation: self.operation(
                        operation_id,
                        &rid,
                        state,
                        group_id,
                        matched.attestation_kind(),
                        now,
                    ),
                    meter: Some(meter::DEVICE_REGISTRATION),
                }
            } else {
                let outcome = self
                    .assign(scope, &rid, &matched, &req, previous, state)
                    .await?;
                let op = self.operation(
                    operation_id,
                    &rid,
                    outcome.state,
                    group_id,
                    matched.attestation_kind(),
                    now,
                );
                RegistrationCommit {
                    record: outcome.record,
                    operation: op,
                    meter: Some(meter::DEVICE_REGISTRATION),
                }
            };
        let op = commit.operation.clone();
        self.store
            .commit_registration(&scope.id_scope, commit)
            .await
            .map_err(store_err)?;
        Ok(op)
    }

    fn operation(
        &self,
        operation_id: OperationId,
        rid: &RegistrationId,
        state: DeviceRegistrationState,
        enrollment_group_id: Option<EnrollmentGroupId>,
        attestation: AttestationKind,
        now: Timestamp,
    ) -> Operation {
        Operation {
            operation_id,
            registration_id: rid.clone(),
            status: state.status,
            registration_state: state,
            enrollment_group_id,
            attestation,
            created: now,
        }
    }

    /// Answers a device's poll. The device must present a credential that its enrollment still
    /// accepts, and the operation must be its own.
    pub async fn operation_status(
        &self,
        id_scope: &str,
        registration_id: &str,
        operation_id: &str,
        credential: DeviceCredential<'_>,
    ) -> Result<Operation, Rejection> {
        let scope = self.device_scope(id_scope)?;
        let rid = RegistrationId::new(registration_id)
            .map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let op = self
            .store
            .operation(&scope.id_scope, operation_id, self.clock.now())
            .await
            .map_err(store_err)?
            .filter(|op| op.registration_id.key() == rid.key());
        // Authenticate before revealing whether the operation exists.
        let hint = op.as_ref().and_then(|op| op.enrollment_group_id.as_ref());
        self.authenticate(scope, &rid, credential, hint).await?;
        op.ok_or(Rejection::OperationNotFound)
    }

    /// Looks up a device's current registration (`POST /{scope}/registrations/{id}`).
    pub async fn registration_status(
        &self,
        id_scope: &str,
        registration_id: &str,
        credential: DeviceCredential<'_>,
    ) -> Result<DeviceRegistrationState, Rejection> {
        let scope = self.device_scope(id_scope)?;
        let rid = RegistrationId::new(registration_id)
            .map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let record = self
            .store
            .registration(&scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        let hint = record.as_ref().and_then(|r| r.enrollment_group_id.as_ref());
        self.authenticate(scope, &rid, credential, hint).await?;
        record
            .map(|r| r.state)
            .ok_or(Rejection::RegistrationNotFound)
    }
}
