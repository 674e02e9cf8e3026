//! The device API, transport-agnostic: register, poll an operation, look up a registration.
//! HTTPS, MQTT and AMQP front ends all call these, so every rule is identical across them.

use dps_attest::sas::{self, SasError, SasToken, SigningKey};
use dps_core::{EnrollmentStatus, Previous};
use dps_store::{RegistrationCommit, Store};
use dps_types::{
    AttestationKind, AttestationMechanism, DeviceRegistrationState, EnrollmentGroup,
    EnrollmentGroupId, Etag, IndividualEnrollment, Operation, OperationId, RegistrationId,
    RegistrationRecord, RegistrationStatus, Rejection, SymmetricKey, Timestamp,
};
use serde_json::Value;

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

/// Which enrollment authenticated a device.
enum Matched {
    Individual(Box<IndividualEnrollment>),
    Group(Box<EnrollmentGroup>, [Option<SymmetricKey>; 2]),
}

fn unauthorized(e: SasError) -> Rejection {
    Rejection::Unauthorized(e.to_string())
}

fn keys_of(a: &AttestationMechanism) -> Vec<SigningKey> {
    a.symmetric_key()
        .map(|s| {
            s.keys()
                .filter_map(|k| SigningKey::from_base64(k.expose_base64()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Symmetric-key groups with their decoded primary and secondary keys.
pub(crate) type PreparedGroups = Vec<(EnrollmentGroup, [Option<SigningKey>; 2])>;

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Authenticates a device: its individual enrollment if one exists (enabled or not), else
    /// the first symmetric-key group whose derived key verifies the token.
    async fn authenticate(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        credential: DeviceCredential<'_>,
        hint: Option<&EnrollmentGroupId>,
    ) -> Result<Matched, Rejection> {
        let DeviceCredential::Sas(text) = credential else {
            return Err(Rejection::Unauthorized("no credential presented".into()));
        };
        let token = SasToken::parse(text).map_err(unauthorized)?;
        let now = self.now_unix();
        // Expiry and audience first, so a bad token costs no key lookups.
        match sas::verify_device(&token, scope.id_scope.as_str(), rid.as_str(), &[], now) {
            Err(SasError::SignatureMismatch) => {}
            Err(e) => return Err(unauthorized(e)),
            Ok(_) => return Err(Rejection::Unauthorized("no keys".into())),
        }
        let individual = self
            .store
            .enrollment(&scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        if let Some(e) = individual {
            let keys = keys_of(&e.attestation);
            if keys.iter().any(|k| token.verify_signature(k)) {
                return Ok(Matched::Individual(Box::new(e)));
            }
            // A disabled individual enrollment also blocks a group member signing with its
            // group-derived key; an enabled one is the only way in for that ID.
            if e.provisioning_status == dps_types::ProvisioningStatus::Disabled
                && self.find_group(scope, rid, &token, hint).await?.is_some()
            {
                return Ok(Matched::Individual(Box::new(e)));
            }
            return Err(Rejection::Unauthorized(format!(
                "signature does not match individual enrollment {}",
                e.registration_id
            )));
        }
        match self.find_group(scope, rid, &token, hint).await? {
            Some(m) => Ok(m),
            None => Err(Rejection::Unauthorized(format!(
                "no enrollment of scope {} accepts {rid}",
                scope.id_scope
            ))),
        }
    }

    /// Finds the symmetric-key group whose key, derived for `rid`, signed the token. The group
    /// of the device's previous registration (`hint`) is tried first, then every group's
    /// primary key, then every secondary key, so the common cases cost one or a few HMACs.
    async fn find_group(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        token: &SasToken<'_>,
        hint: Option<&EnrollmentGroupId>,
    ) -> Result<Option<Matched>, Rejection> {
        let prepared = self.group_keys(scope).await?;
        let hinted = hint.and_then(|h| {
            prepared.iter().position(|(g, _)| {
                g.enrollment_group_id
                    .as_str()
                    .eq_ignore_ascii_case(h.as_str())
            })
        });
        let order = hinted
            .into_iter()
            .flat_map(|i| [(i, 0), (i, 1)])
            .chain((0..prepared.len()).map(|i| (i, 0)))
            .chain((0..prepared.len()).map(|i| (i, 1)));
        for (i, slot) in order {
            let (g, keys) = &prepared[i];
            let Some(group_key) = &keys[slot] else {
                continue;
            };
            if token.verify_signature(&sas::derive_device_key(group_key, rid.as_str())) {
                let mut pair = [None, None];
                for (out, k) in pair.iter_mut().zip(keys.iter()) {
                    *out = k.as_ref().and_then(|k| {
                        SymmetricKey::new(&sas::derive_device_key(k, rid.as_str()).to_base64()).ok()
                    });
                }
                return Ok(Some(Matched::Group(Box::new(g.clone()), pair)));
            }
        }
        Ok(None)
    }

    /// The scope's symmetric-key groups with their keys decoded, rebuilt only when the store
    /// hands out a new snapshot (so it is never stale).
    async fn group_keys(
        &self,
        scope: &ScopeConfig,
    ) -> Result<std::sync::Arc<PreparedGroups>, Rejection> {
        let snapshot = self
            .store
            .groups_snapshot(&scope.id_scope)
            .await
            .map_err(store_err)?;
        let key = scope.id_scope.key();
        let mut cache = self
            .group_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((snap, prepared)) = cache.get(&key)
            && std::sync::Arc::ptr_eq(snap, &snapshot)
        {
            return Ok(prepared.clone());
        }
        let prepared: std::sync::Arc<PreparedGroups> = std::sync::Arc::new(
            snapshot
                .iter()
                .filter_map(|g| {
                    let sk = g.attestation.symmetric_key()?;
                    let decode = |k: &Option<SymmetricKey>| {
                        k.as_ref()
                            .and_then(|k| SigningKey::from_base64(k.expose_base64()).ok())
                    };
                    Some((
                        g.clone(),
                        [decode(&sk.primary_key), decode(&sk.secondary_key)],
                    ))
                })
                .collect(),
        );
        cache.insert(key, (snapshot, prepared.clone()));
        Ok(prepared)
    }

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
