//! The second half of a registration, once the device is authenticated: what its enrollment
//! says ([`EnrollmentView`]), where it goes (allocation, `allocate.rs`), how it gets there
//! (reprovisioning and the hub write, `provision.rs`), all recorded in one
//! [`RegistrationRecord`]. Every failure here becomes a `failed` record, not a rejection.

use dps_core::Previous;
use dps_store::Store;
use dps_types::{
    AttestationKind, DeviceCapabilities, DeviceRegistrationState, EnrollmentGroupId, Etag,
    InitialTwin, PolicyView, RegistrationId, RegistrationRecord, RegistrationStatus, Rejection,
    ReprovisionPolicy,
};

use crate::Service;
use crate::auth::Matched;
use crate::config::ScopeConfig;
use crate::device::RegisterRequest;
use crate::env::random_guid;
use crate::hubs::{HubAuth, HubRegistry};

/// A registration failure that is recorded: Azure's error code and the operator's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: u32,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the matched enrollment (individual, or group for this device) asks for.
pub(crate) struct EnrollmentView<'m> {
    pub policy: PolicyView<'m>,
    pub reprovision: Option<ReprovisionPolicy>,
    pub capabilities: DeviceCapabilities,
    pub initial_twin: Option<InitialTwin>,
    pub device_id: String,
    /// The credential the hub identity gets; `None` when the enrollment cannot give one.
    pub auth: Option<HubAuth>,
    pub group_id: Option<EnrollmentGroupId>,
    pub attestation: AttestationKind,
}

impl Matched {
    /// The enrollment's view for device `rid`.
    pub(crate) fn view(&self, rid: &RegistrationId) -> EnrollmentView<'_> {
        match self {
            Matched::Individual(e) => EnrollmentView {
                policy: e.policy(),
                reprovision: e.reprovision_policy,
                capabilities: e.capabilities,
                initial_twin: e.initial_twin.clone(),
                device_id: e.effective_device_id(),
                auth: self.hub_auth(),
                group_id: None,
                attestation: self.attestation_kind(),
            },
            Matched::Group(g, _) => EnrollmentView {
                policy: g.policy(),
                reprovision: g.reprovision_policy,
                capabilities: g.capabilities,
                initial_twin: g.initial_twin.clone(),
                device_id: rid.to_string(),
                auth: self.hub_auth(),
                group_id: Some(g.enrollment_group_id.clone()),
                attestation: self.attestation_kind(),
            },
        }
    }
}

/// Where allocation sends the device, and what a custom allocator added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Allocation {
    pub hub: dps_types::HubHostName,
    /// A custom allocator's replacement of the initial twin.
    pub initial_twin: Option<InitialTwin>,
    /// A custom allocator's payload for the device (otherwise the device's own is echoed).
    pub payload: Option<serde_json::Value>,
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Allocation, reprovisioning and the hub write. Failures become a `failed` record.
    pub(crate) async fn assign(
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
        let view = matched.view(rid);
        state.created_date_time_utc = Some(
            previous
                .as_ref()
                .and_then(|p| p.state.created_date_time_utc)
                .unwrap_or(now),
        );
        state.etag = Some(Etag::new(random_guid(&*self.entropy)));
        state.device_id = Some(view.device_id.clone());
        let mut record = RegistrationRecord {
            state,
            enrollment_group_id: view.group_id.clone(),
            attestation: view.attestation,
            initial_hub: previous.as_ref().and_then(|p| p.initial_hub.clone()),
        };
        let allocation = match self
            .allocate(scope, rid, matched, &view, req, previous.as_ref())
            .await
        {
            Ok(a) => a,
            Err(f) => return Ok(failed(record, f)),
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
        let decision = match self.provision(rid, view, &allocation, prev, req).await {
            Ok(d) => d,
            Err(f) => return Ok(failed(record, f)),
        };
        record.state.status = RegistrationStatus::Assigned;
        record.state.assigned_hub = Some(decision.hub.clone());
        record.state.substatus = Some(decision.substatus);
        // A custom allocator's payload wins; otherwise the device's own payload is returned.
        record.state.payload = allocation
            .payload
            .or_else(|| req.payload.clone())
            .filter(|p| !p.is_null());
        record.initial_hub.get_or_insert(decision.hub);
        Ok(record)
    }
}

/// Marks `record` failed with `f`.
pub(crate) fn failed(mut record: RegistrationRecord, f: Failure) -> RegistrationRecord {
    record.state.status = RegistrationStatus::Failed;
    record.state.error_code = Some(f.code);
    record.state.error_message = Some(f.message);
    record.state.assigned_hub = None;
    record.state.substatus = None;
    record
}
