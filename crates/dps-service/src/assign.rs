//! The second half of a registration, once the device is authenticated: what its enrollment
//! says ([`EnrollmentView`]), where it goes (allocation, `allocate.rs`), how it gets there
//! (reprovisioning and the hub write, `provision.rs`), all recorded in one
//! [`RegistrationRecord`]. Every failure here becomes a `failed` operation, not a rejection.

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
use crate::provision::previous_assignment;

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

/// What a registration attempt writes: the state the device's operation reports, and the record
/// to store (`None`: keep the stored one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub state: DeviceRegistrationState,
    pub record: Option<RegistrationRecord>,
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Allocation, reprovisioning and the hub write.
    ///
    /// A failure is reported to the device as a `failed` operation. It replaces the stored
    /// record only when that record proves no assignment: a device that is assigned keeps its
    /// record (hub, device ID, substatus), because its identity is still in that hub and the
    /// next attempt needs to know it, to migrate its data and to remove it there.
    pub(crate) async fn assign(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        matched: &Matched,
        req: &RegisterRequest<'_>,
        previous: Option<RegistrationRecord>,
        mut state: DeviceRegistrationState,
    ) -> Result<Outcome, Rejection> {
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
        let keeps_record = previous
            .as_ref()
            .is_some_and(|p| previous_assignment(p).is_some());
        let fail = |record: RegistrationRecord, f: Failure| {
            let record = failed(record, f);
            Outcome {
                state: record.state.clone(),
                record: (!keeps_record).then_some(record),
            }
        };
        let allocation = match self
            .allocate(scope, rid, matched, &view, req, previous.as_ref())
            .await
        {
            Ok(a) => a,
            Err(f) => return Ok(fail(record, f)),
        };
        let decision = match self
            .provision(rid, view, &allocation, previous.as_ref(), req)
            .await
        {
            Ok(d) => d,
            Err(f) => return Ok(fail(record, f)),
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
        Ok(Outcome {
            state: record.state.clone(),
            record: Some(record),
        })
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
