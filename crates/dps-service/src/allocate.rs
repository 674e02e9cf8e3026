//! Allocation inside the engine: the effective policy (enrollment over scope), the enrollment's
//! hub subset, the request's source region, and either the scope's prepared
//! [`dps_alloc::HubSet`] or, for `custom`, its [`CustomAllocator`](crate::CustomAllocator).

use dps_alloc::Request;
use dps_store::Store;
use dps_types::{AllocationPolicy, RegistrationId, RegistrationRecord, RegistrationStatus};
use serde_json::Map;

use crate::Service;
use crate::assign::{Allocation, EnrollmentView, Failure};
use crate::auth::Matched;
use crate::config::ScopeConfig;
use crate::custom::{CustomAllocationRequest, DeviceRuntimeContext, mask_definition};
use crate::device::RegisterRequest;
use crate::hubs::HubRegistry;

/// Azure's `CustomAllocationIotHubNotSpecified`, also used when no built-in policy finds a hub.
const NO_HUB: u32 = 400_208;

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Picks the device's hub. Azure's 400208 when no hub is eligible; for `custom`, the
    /// allocator's failure (400207, 400209).
    pub(crate) async fn allocate(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        matched: &Matched,
        view: &EnrollmentView<'_>,
        req: &RegisterRequest<'_>,
        previous: Option<&RegistrationRecord>,
    ) -> Result<Allocation, Failure> {
        let policy = view
            .policy
            .allocation_policy
            .unwrap_or(scope.allocation_policy);
        let named = view.policy.named_hubs();
        if policy == AllocationPolicy::Custom {
            return self
                .allocate_custom(scope, rid, matched, view, req, previous, &named)
                .await;
        }
        let hubs = scope.current_hubs();
        let source = req.source.and_then(|ip| scope.source_regions.region_of(ip));
        let request = Request::new(policy, rid.as_str())
            .with_named(&named)
            .with_source_region(source);
        let hub = hubs
            .allocate_with(&request)
            .map_err(|e| Failure::new(NO_HUB, e.to_string()))?
            .host
            .clone();
        Ok(Allocation {
            hub,
            initial_twin: None,
            payload: None,
        })
    }

    /// Asks the scope's custom allocator, and checks its answer against the linked hubs.
    #[allow(clippy::too_many_arguments)]
    async fn allocate_custom(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        matched: &Matched,
        view: &EnrollmentView<'_>,
        req: &RegisterRequest<'_>,
        previous: Option<&RegistrationRecord>,
        named: &[&str],
    ) -> Result<Allocation, Failure> {
        let Some(allocator) = scope.custom_allocator.as_deref() else {
            return Err(Failure::new(
                400_207,
                "custom allocation is not configured for this ID scope",
            ));
        };
        // Every name must be linked, as for the built-in policies.
        if let Some(n) = named.iter().find(|n| scope.hubs.find(n).is_none()) {
            return Err(Failure::new(
                NO_HUB,
                format!("IoT hub {n} is not linked to this scope"),
            ));
        }
        let current = previous.and_then(|p| match (&p.state.status, &p.state.assigned_hub) {
            (RegistrationStatus::Assigned, Some(hub)) => Some((hub, p.state.device_id.clone())),
            _ => None,
        });
        // A device that may not move is offered its current hub only.
        let stays = current.is_some()
            && !view
                .reprovision
                .map_or(!req.legacy_api, |p| p.update_hub_assignment);
        let linked_hubs: Vec<String> = match current {
            Some((hub, _)) if stays => vec![hub.to_string()],
            _ if !named.is_empty() => named
                .iter()
                .filter_map(|n| scope.hubs.find(n))
                .map(|h| h.host.to_string())
                .collect(),
            _ => scope
                .hubs
                .hubs()
                .iter()
                .map(|h| h.host.to_string())
                .collect(),
        };
        let mut context = DeviceRuntimeContext::new(rid.as_str());
        if let Some((hub, device_id)) = &current {
            context.current_iot_hub_host_name = Some(hub.to_string());
            context.current_device_id = device_id.clone();
        }
        context.symmetric_key = Some(Map::new());
        context.payload = req.payload.clone().filter(|p| !p.is_null());
        let mut request = CustomAllocationRequest::new(context, linked_hubs);
        match matched {
            Matched::Individual(e) => {
                request.definition = e.custom_allocation_definition.clone();
                let mut e = (**e).clone();
                e.attestation = e.attestation.masked();
                mask_definition(&mut e.custom_allocation_definition);
                request.individual_enrollment = Some(e);
            }
            Matched::Group(g, _) => {
                request.definition = g.custom_allocation_definition.clone();
                let mut g = (**g).clone();
                g.attestation = g.attestation.masked();
                mask_definition(&mut g.custom_allocation_definition);
                request.enrollment_group = Some(g);
            }
        }
        let answer = allocator
            .allocate(&request)
            .await
            .map_err(|e| Failure::new(e.error_code(), e.to_string()))?;
        let Some(name) = answer
            .iot_hub_host_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        else {
            return Err(Failure::new(
                NO_HUB,
                "the custom allocation returned no iotHubHostName",
            ));
        };
        let hub = request
            .linked_hubs
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name.trim()))
            .and_then(|h| scope.hubs.find(h))
            .ok_or_else(|| {
                Failure::new(
                    NO_HUB,
                    format!(
                        "the custom allocation returned {name}, which is not among the linkedHubs"
                    ),
                )
            })?;
        Ok(Allocation {
            hub: hub.host.clone(),
            initial_twin: answer.initial_twin,
            payload: answer.payload,
        })
    }
}
