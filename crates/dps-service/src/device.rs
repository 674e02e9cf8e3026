//! The device API, transport-agnostic: register, poll an operation, look up a registration.
//! HTTPS, MQTT and AMQP front ends all call these, so every rule is identical across them.

use dps_core::{EnrollmentStatus, Previous};
use dps_store::{RegistrationCommit, Store};
use dps_types::{
    AttestationKind, DeviceRegistrationState, EnrollmentGroupId, Etag, Operation, OperationId,
    RegistrationId, RegistrationRecord, RegistrationStatus, Rejection, Timestamp,
};
use serde_json::Value;

use crate::auth::Matched;
use crate::config::ScopeConfig;
use crate::env::{random_guid, random_hex};
use crate::hubs::{HubAuth, HubDevice, HubError, HubRegistry};
use crate::{Service, meter, store_err};

/// A device's credential as presented on the wire.
#[derive(Debug, Clone, Copy)]
pub enum DeviceCredential<'a> {
    /// A SAS token (`Authorization` header, MQTT password, SASL PLAIN password).
    Sas(&'a str),
    /// Nothing (X.509 devices authenticate in TLS; not supported yet).
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
                    operation: self.operation(operation_id, &rid, state, group_id, now),
                    meter: Some(meter::DEVICE_REGISTRATION),
                }
            } else {
                let record = self
                    .assign(scope, &rid, &matched, &req, previous, state)
                    .await?;
                let op = self.operation(operation_id, &rid, record.state.clone(), group_id, now);
                RegistrationCommit {
                    record: Some(record),
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
        now: Timestamp,
    ) -> Operation {
        Operation {
            operation_id,
            registration_id: rid.clone(),
            status: state.status,
            registration_state: state,
            enrollment_group_id,
            attestation: AttestationKind::SymmetricKey,
            created: now,
        }
    }

    /// Allocation, reprovisioning and the hub write. Failures become a `failed` record.
    async fn assign(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        matched: &Matched,
        req: &RegisterRequest<'_>,
        previous: Option<RegistrationRecord>,
        mut state: DeviceRegistrationState,
    ) -> Result<RegistrationRecord, Rejection> {
        // The attempt's time is already on the state.
        let now = state
            .last_updated_date_time_utc
            .unwrap_or_else(|| self.clock.now());
        let (policy_view, reprovision, capabilities, twin, device_id, auth, group_id) =
            match matched {
                Matched::Individual(e) => {
                    let s = e.attestation.symmetric_key().cloned().unwrap_or_default();
                    let auth = s.primary_key.clone().map(|primary| HubAuth::SymmetricKey {
                        primary,
                        secondary: s.secondary_key.clone(),
                    });
                    (
                        e.policy(),
                        e.reprovision_policy,
                        e.capabilities,
                        e.initial_twin.clone(),
                        e.effective_device_id(),
                        auth,
                        None,
                    )
                }
                Matched::Group(g, keys) => {
                    let auth = keys[0].clone().map(|primary| HubAuth::SymmetricKey {
                        primary,
                        secondary: keys[1].clone(),
                    });
                    (
                        g.policy(),
                        g.reprovision_policy,
                        g.capabilities,
                        g.initial_twin.clone(),
                        rid.to_string(),
                        auth,
                        Some(g.enrollment_group_id.clone()),
                    )
                }
            };
        state.created_date_time_utc = Some(
            previous
                .as_ref()
                .and_then(|p| p.state.created_date_time_utc)
                .unwrap_or(now),
        );
        state.etag = Some(Etag::new(random_guid(&*self.entropy)));
        state.device_id = Some(device_id.clone());
        let mut record = RegistrationRecord {
            state,
            enrollment_group_id: group_id,
            attestation: AttestationKind::SymmetricKey,
            initial_hub: previous.as_ref().and_then(|p| p.initial_hub.clone()),
        };
        let policy = policy_view
            .allocation_policy
            .unwrap_or(scope.allocation_policy);
        let named = policy_view.named_hubs();
        let proposed = match scope.hubs.allocate(policy, &named, rid.as_str()) {
            Ok(h) => h,
            Err(e) => return Ok(failed(record, 400_208, e.to_string())),
        };
        let prev = previous
            .as_ref()
            .and_then(|p| match (&p.state.status, &p.state.assigned_hub) {
                (RegistrationStatus::Assigned, Some(hub)) => Some(Previous {
                    hub,
                    initial_hub: p.initial_hub.as_ref(),
                    substatus: p.state.substatus,
                }),
                _ => None,
            });
        let decision = dps_core::reprovision(prev, reprovision, req.legacy_api, &proposed);
        let Some(auth) = auth else {
            return Ok(failed(
                record,
                500_001,
                "the enrollment has no symmetric key".into(),
            ));
        };
        let device = HubDevice {
            hub: decision.hub.clone(),
            device_id,
            registration_id: rid.clone(),
            auth,
            capabilities,
            initial_twin: twin,
            reset_twin: decision.reset_data,
            previous_hub: prev.map(|p| p.hub.clone()).filter(|h| *h != decision.hub),
        };
        if let Err(e) = self.hubs.provision(device).await {
            let code = match e {
                HubError::Unauthorized(_) => 400_209,
                _ => 500_002,
            };
            return Ok(failed(record, code, e.to_string()));
        }
        record.state.status = RegistrationStatus::Assigned;
        record.state.assigned_hub = Some(decision.hub.clone());
        record.state.substatus = Some(decision.substatus);
        // Without custom allocation the device's own payload is returned to it.
        record.state.payload = req.payload.clone().filter(|p| !p.is_null());
        record.initial_hub.get_or_insert(decision.hub);
        Ok(record)
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
            .operation(&scope.id_scope, operation_id)
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

fn failed(mut record: RegistrationRecord, code: u32, message: String) -> RegistrationRecord {
    record.state.status = RegistrationStatus::Failed;
    record.state.error_code = Some(code);
    record.state.error_message = Some(message);
    record.state.assigned_hub = None;
    record.state.substatus = None;
    record
}
