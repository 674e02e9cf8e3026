//! Allocation inside the engine: the effective policy (enrollment over scope), the enrollment's
//! hub subset, and the prepared [`dps_alloc::HubSet`] of the scope.

use dps_store::Store;
use dps_types::RegistrationId;

use crate::Service;
use crate::assign::{Allocation, EnrollmentView, Failure};
use crate::config::ScopeConfig;
use crate::device::RegisterRequest;
use crate::hubs::HubRegistry;

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Picks the device's hub. Azure's 400208 when no hub is eligible.
    pub(crate) async fn allocate(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        view: &EnrollmentView<'_>,
        _req: &RegisterRequest<'_>,
    ) -> Result<Allocation, Failure> {
        let policy = view
            .policy
            .allocation_policy
            .unwrap_or(scope.allocation_policy);
        let named = view.policy.named_hubs();
        let hub = scope
            .hubs
            .allocate(policy, &named, rid.as_str())
            .map_err(|e| Failure::new(400_208, e.to_string()))?;
        Ok(Allocation {
            hub,
            initial_twin: None,
            payload: None,
        })
    }
}
