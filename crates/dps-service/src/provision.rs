//! Reprovisioning and the hub writes: given the allocated hub and the device's previous
//! assignment, decide where it ends ([`dps_core::reprovision`]), create its identity there (with
//! the enrollment's initial state, or the state migrated from its previous hub) and remove it
//! from the hub it left.
//!
//! Order of the hub calls for a device that moves: read its data from the old hub (migration
//! only), write the new hub, remove it from the old hub. Any error stops the sequence and fails
//! the registration; the previous assignment stays the device's record (see `assign.rs`), so the
//! device's retry starts the same move again, and every step is idempotent.

use dps_core::{Assignment, Previous};
use dps_store::Store;
use dps_types::{HubHostName, RegistrationId, RegistrationRecord, RegistrationStatus};

use crate::Service;
use crate::assign::{Allocation, EnrollmentView, Failure};
use crate::device::RegisterRequest;
use crate::hubs::{HubDevice, HubError, HubRegistry};

/// The assignment a registration record proves: a hub the device exists in, under this ID.
pub(crate) fn previous_assignment(record: &RegistrationRecord) -> Option<(Previous<'_>, &str)> {
    let s = &record.state;
    match (&s.status, &s.assigned_hub, &s.device_id) {
        (RegistrationStatus::Assigned, Some(hub), Some(device_id)) => Some((
            Previous {
                hub,
                initial_hub: record.initial_hub.as_ref(),
                substatus: s.substatus,
            },
            device_id.as_str(),
        )),
        _ => None,
    }
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Applies the reprovision policy and writes the identity to the hub it decides.
    pub(crate) async fn provision(
        &self,
        rid: &RegistrationId,
        view: EnrollmentView<'_>,
        allocation: &Allocation,
        previous: Option<&RegistrationRecord>,
        req: &RegisterRequest<'_>,
    ) -> Result<Assignment, Failure> {
        let prev = previous.and_then(previous_assignment);
        let decision = dps_core::reprovision(
            prev.map(|(p, _)| p),
            view.reprovision,
            req.legacy_api,
            &allocation.hub,
        );
        let Some(auth) = view.auth else {
            return Err(Failure::new(
                500_001,
                "the enrollment gives no credential for the hub identity",
            ));
        };
        // The identity the device leaves: another hub, or another device ID on the same hub.
        let old = prev
            .filter(|(p, id)| *p.hub != decision.hub || *id != view.device_id)
            .map(|(p, id)| (p.hub.clone(), id.to_owned()));
        let same_hub = prev.is_some_and(|(p, _)| *p.hub == decision.hub);
        // A custom allocator's initial twin counts only when the hub changes (§12.2).
        let enrollment_twin = if same_hub {
            view.initial_twin
        } else {
            allocation.initial_twin.clone().or(view.initial_twin)
        };
        let (capabilities, initial_twin) = match &old {
            Some((hub, id)) if !decision.reset_data => {
                match self.hubs.fetch(hub, id).await {
                    Ok(Some(state)) => (state.capabilities, Some(state.twin)),
                    // Nothing to migrate: the enrollment's initial state instead.
                    Ok(None) => (view.capabilities, enrollment_twin),
                    Err(e) => return Err(hub_failure(&e, hub, "reading the device's data")),
                }
            }
            _ => (view.capabilities, enrollment_twin),
        };
        let device = HubDevice {
            hub: decision.hub.clone(),
            device_id: view.device_id,
            registration_id: rid.clone(),
            auth,
            capabilities,
            initial_twin,
            reset_twin: decision.reset_data || old.is_some(),
            previous_hub: old.as_ref().map(|(h, _)| h.clone()),
        };
        if let Err(e) = self.hubs.provision(device).await {
            return Err(hub_failure(
                &e,
                &decision.hub,
                "creating the device identity",
            ));
        }
        if let Some((hub, id)) = &old
            && let Err(e) = self.hubs.remove(hub, id).await
        {
            return Err(hub_failure(
                &e,
                hub,
                &format!(
                    "removing the device from the hub it left (it was created in {}; \
                     register again to finish the move)",
                    decision.hub
                ),
            ));
        }
        Ok(decision)
    }
}

/// The recorded failure for a hub error: Azure's 400209 when DPS is unauthorised at the hub,
/// otherwise 500002; the message names the hub and the step.
fn hub_failure(e: &HubError, hub: &HubHostName, step: &str) -> Failure {
    let code = match e {
        HubError::Unauthorized(_) => 400_209,
        _ => 500_002,
    };
    Failure::new(code, format!("{e} ({hub}: {step})"))
}
