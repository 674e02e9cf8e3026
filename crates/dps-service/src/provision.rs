//! Reprovisioning and the hub write: given the allocated hub and the device's previous
//! assignment, decide where it ends ([`dps_core::reprovision`]) and create its identity there.

use dps_core::{Assignment, Previous};
use dps_store::Store;
use dps_types::RegistrationId;

use crate::Service;
use crate::assign::{Allocation, EnrollmentView, Failure};
use crate::device::RegisterRequest;
use crate::hubs::{HubDevice, HubError, HubRegistry};

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Applies the reprovision policy and writes the identity to the hub it decides.
    pub(crate) async fn provision(
        &self,
        rid: &RegistrationId,
        view: EnrollmentView<'_>,
        allocation: &Allocation,
        prev: Option<Previous<'_>>,
        req: &RegisterRequest<'_>,
    ) -> Result<Assignment, Failure> {
        let decision =
            dps_core::reprovision(prev, view.reprovision, req.legacy_api, &allocation.hub);
        let Some(auth) = view.auth else {
            return Err(Failure::new(
                500_001,
                "the enrollment gives no credential for the hub identity",
            ));
        };
        let device = HubDevice {
            hub: decision.hub.clone(),
            device_id: view.device_id,
            registration_id: rid.clone(),
            auth,
            capabilities: view.capabilities,
            initial_twin: allocation.initial_twin.clone().or(view.initial_twin),
            reset_twin: decision.reset_data,
            previous_hub: prev.map(|p| p.hub.clone()).filter(|h| *h != decision.hub),
        };
        if let Err(e) = self.hubs.provision(device).await {
            let code = match e {
                HubError::Unauthorized(_) => 400_209,
                _ => 500_002,
            };
            return Err(Failure::new(code, e.to_string()));
        }
        Ok(decision)
    }
}
