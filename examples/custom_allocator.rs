//! Custom allocation in Rust instead of a webhook: the embedding program implements
//! `dps_service::CustomAllocator` and installs it on a scope. Here devices that report a `site`
//! in their registration payload go to that site's hub; the others are spread by consistent
//! hashing over the hubs they may use. The answer can also replace the initial twin and carry a
//! payload back to the device, exactly as a webhook's `AllocationResponse` would.
//!
//! Run with `cargo run -p dps-service --example custom_allocator`.

use std::sync::Arc;

use dps_alloc::{Hub, HubSet};
use dps_attest::sas::{SigningKey, generate_token};
use dps_connect::InProcessHubRegistry;
use dps_service::{
    BoxFuture, CustomAllocationError, CustomAllocationRequest, CustomAllocationResponse,
    CustomAllocator, DeviceCredential, RegisterRequest, ScopeConfig, Service,
};
use dps_store::{MemoryStore, block_on_ready};
use dps_types::{AllocationPolicy, HubHostName, IdScope, IndividualEnrollment};
use serde_json::json;

const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

/// Site hubs are named `{site}-hub.example.net`.
#[derive(Debug)]
struct BySite {
    /// The same hubs as the scope, to hash among when the device names no known site.
    hubs: HubSet,
}

impl CustomAllocator for BySite {
    fn allocate<'a>(
        &'a self,
        req: &'a CustomAllocationRequest,
    ) -> BoxFuture<'a, Result<CustomAllocationResponse, CustomAllocationError>> {
        Box::pin(async move {
            let ctx = &req.device_runtime_context;
            let site = ctx
                .payload
                .as_ref()
                .and_then(|p| p.get("site"))
                .and_then(|s| s.as_str());
            let allowed = |name: &str| req.linked_hubs.iter().any(|h| h.eq_ignore_ascii_case(name));
            let hub = match site.map(|s| format!("{s}-hub.example.net")) {
                Some(h) if allowed(&h) => h,
                // Consistent with the built-in hashed policy over the allowed hubs.
                _ => self
                    .hubs
                    .hashed_among(&ctx.registration_id, |h| allowed(h.host.as_str()))
                    .map(|h| h.host.to_string())
                    .ok_or_else(|| CustomAllocationError::Failed("no hub allowed".into()))?,
            };
            Ok(CustomAllocationResponse {
                iot_hub_host_name: Some(hub.clone()),
                initial_twin: Some(
                    serde_json::from_value(json!({"tags": {"site": site}}))
                        .map_err(|e| CustomAllocationError::Failed(e.to_string()))?,
                ),
                payload: Some(json!({"assignedBy": "BySite", "hub": hub})),
            })
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = |n: &str| HubHostName::new(n).map(|h| Hub::new(h, 1, true));
    let hubs = HubSet::new(vec![
        hub("ams-hub.example.net")?,
        hub("nyc-hub.example.net")?,
        hub("sgp-hub.example.net")?,
    ]);
    let mut scope = ScopeConfig::new(IdScope::new("0ne00000001")?, "localhost");
    scope.hubs = hubs.clone();
    scope.allocation_policy = AllocationPolicy::Custom;
    scope.custom_allocator = Some(Arc::new(BySite { hubs }));
    let registry = InProcessHubRegistry::default();
    let svc = Service::builder(MemoryStore::new(), registry.clone())
        .scope(scope)
        .build();

    // The memory store, the in-process hub and this allocator answer at once, so no runtime
    // is needed to drive the futures here.
    let admin = svc.admin_for_scope("0ne00000001")?;
    for (rid, payload) in [
        ("sensor-1", json!({"site": "nyc"})),
        ("sensor-2", json!({})),
    ] {
        let body = json!({
            "registrationId": rid,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}
        });
        block_on_ready(admin.put::<IndividualEnrollment>(rid, body, None))?;
        let token = generate_token(
            &format!("0ne00000001/registrations/{rid}"),
            &SigningKey::from_base64(KEY)?,
            4_000_000_000,
            None,
        );
        let op = block_on_ready(svc.register(RegisterRequest {
            id_scope: "0ne00000001",
            registration_id: rid,
            credential: DeviceCredential::Sas(&token),
            payload: Some(payload),
            legacy_api: false,
            source: None,
        }))?;
        let state = op.registration_state;
        println!(
            "{rid}: {:?} on {} with payload {}",
            state.status,
            state
                .assigned_hub
                .map(|h| h.to_string())
                .unwrap_or_default(),
            state.payload.unwrap_or_default()
        );
    }
    // The device that named its site is there.
    assert!(registry.device("nyc-hub.example.net", "sensor-1").is_some());
    Ok(())
}
