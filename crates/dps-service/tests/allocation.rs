//! Allocation through the engine: policy precedence, the enrollment's hubs, hubs outside
//! allocation, source regions for lowest latency, the custom allocator's contract and error
//! codes, and the hub rules enforced when enrollments are written (single, group, bulk).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use dps_alloc::{Hub, HubSet, LatencyMap, LowestLatencyConfig, SourceRegions, Tolerance};
use dps_attest::sas::{SigningKey, derive_device_key, generate_token};
use dps_connect::InProcessHubRegistry;
use dps_service::admin::BulkMode;
use dps_service::{
    BoxFuture, CustomAllocationError, CustomAllocationRequest, CustomAllocationResponse,
    CustomAllocator, DeviceCredential, RegisterRequest, ScopeConfig, Service,
};
use dps_store::{MemoryStore, block_on_ready};
use dps_types::{
    AllocationPolicy, DeviceRegistrationState, EnrollmentGroup, HubHostName, IdScope,
    IndividualEnrollment, RegistrationStatus, Rejection,
};
use serde_json::{Value, json};

const SCOPE: &str = "0ne00000a11";
const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

/// Answers with a fixed result and remembers the requests it saw.
#[derive(Debug, Default)]
struct Scripted {
    answer: Mutex<Option<Result<CustomAllocationResponse, CustomAllocationError>>>,
    seen: Mutex<Vec<Value>>,
}

impl Scripted {
    fn answer(&self, a: Result<CustomAllocationResponse, CustomAllocationError>) {
        *self.answer.lock().unwrap() = Some(a);
    }
    fn last(&self) -> Value {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

impl CustomAllocator for Scripted {
    fn allocate<'a>(
        &'a self,
        req: &'a CustomAllocationRequest,
    ) -> BoxFuture<'a, Result<CustomAllocationResponse, CustomAllocationError>> {
        self.seen
            .lock()
            .unwrap()
            .push(serde_json::to_value(req).unwrap());
        let a = self.answer.lock().unwrap().clone().unwrap();
        Box::pin(async move { a })
    }
}

fn hub(name: &str, apply: bool, region: &str) -> Hub {
    Hub::new(HubHostName::new(name).unwrap(), 1, apply).with_region(region)
}

/// Hubs `eu-1`, `eu-2` (westeurope), `us-1` (eastus) and `off` (eastus, outside allocation).
fn scope(custom: Option<Arc<Scripted>>) -> ScopeConfig {
    let mut s = ScopeConfig::new(IdScope::new(SCOPE).unwrap(), "localhost");
    let latency =
        LatencyMap::new()
            .with("westeurope", "eastus", 80_000)
            .with("eastus", "westeurope", 80_000);
    s.hubs = HubSet::builder(vec![
        hub("eu-1.example.net", true, "westeurope"),
        hub("eu-2.example.net", true, "westeurope"),
        hub("us-1.example.net", true, "eastus"),
        hub("off.example.net", false, "eastus"),
    ])
    .lowest_latency(
        LowestLatencyConfig::new(latency)
            .with_tolerance(Tolerance::percent(10))
            .with_local_region("westeurope"),
    )
    .build();
    let mut regions = SourceRegions::new();
    regions.insert("198.51.100.0/24".parse().unwrap(), "eastus");
    s.source_regions = Arc::new(regions);
    s.custom_allocator = custom.map(|c| c as Arc<dyn CustomAllocator>);
    s
}

fn service(
    s: ScopeConfig,
) -> (
    Service<MemoryStore, InProcessHubRegistry>,
    InProcessHubRegistry,
) {
    let hubs = InProcessHubRegistry::default();
    (
        Service::builder(MemoryStore::new(), hubs.clone())
            .scope(s)
            .build(),
        hubs,
    )
}

fn enroll(svc: &Service<MemoryStore, InProcessHubRegistry>, rid: &str, extra: Value) {
    let mut body = json!({
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        "initialTwin": {"tags": {"from": "enrollment"}}
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let admin = svc.admin_for_scope(SCOPE).unwrap();
    block_on_ready(admin.put::<IndividualEnrollment>(rid, body, Some("*"))).unwrap();
}

fn register(
    svc: &Service<MemoryStore, InProcessHubRegistry>,
    rid: &str,
    source: Option<&str>,
    payload: Option<Value>,
) -> DeviceRegistrationState {
    let token = generate_token(
        &format!("{SCOPE}/registrations/{rid}"),
        &SigningKey::from_base64(KEY).unwrap(),
        4_000_000_000,
        None,
    );
    let op = block_on_ready(svc.register(RegisterRequest {
        id_scope: SCOPE,
        registration_id: rid,
        credential: DeviceCredential::Sas(&token),
        payload,
        legacy_api: false,
        source: source.map(|s| s.parse().unwrap()),
    }))
    .unwrap();
    op.registration_state
}

fn hub_of(state: &DeviceRegistrationState) -> &str {
    state.assigned_hub.as_ref().map_or("", |h| h.as_str())
}

#[test]
fn enrollment_policy_and_hubs_win_and_excluded_hubs_stay_static_only() {
    let (svc, _) = service(scope(None));
    for i in 0..40 {
        let rid = format!("dev-{i}");
        enroll(&svc, &rid, json!({}));
        let h = hub_of(&register(&svc, &rid, None, None)).to_owned();
        // Lowest latency is not the scope's policy: hashed spreads over all three participants.
        assert!(h != "off.example.net" && !h.is_empty(), "{rid} -> {h}");
    }
    enroll(
        &svc,
        "pinned",
        json!({"allocationPolicy": "static", "iotHubs": ["off.example.net"]}),
    );
    assert_eq!(
        hub_of(&register(&svc, "pinned", None, None)),
        "off.example.net"
    );
    // The legacy field alone works as static too.
    enroll(
        &svc,
        "legacy",
        json!({"allocationPolicy": "static", "iotHubHostName": "us-1.example.net"}),
    );
    assert_eq!(
        hub_of(&register(&svc, "legacy", None, None)),
        "us-1.example.net"
    );
    // A hashed enrollment restricted to hubs: only those, never the excluded one.
    enroll(
        &svc,
        "subset",
        json!({"iotHubs": ["us-1.example.net", "off.example.net"]}),
    );
    assert_eq!(
        hub_of(&register(&svc, "subset", None, None)),
        "us-1.example.net"
    );
}

#[test]
fn lowest_latency_measures_from_the_source_region_of_the_client_address() {
    let (svc, _) = service(scope(None));
    for i in 0..20 {
        let rid = format!("geo-{i}");
        enroll(&svc, &rid, json!({"allocationPolicy": "geoLatency"}));
        // No mapped source: this node's region (westeurope) ties the two European hubs.
        let local = register(&svc, &rid, Some("203.0.113.5"), None);
        assert!(
            hub_of(&local).starts_with("eu-"),
            "{rid}: {}",
            hub_of(&local)
        );
        // A client from the eastus block goes to the only participating eastus hub.
        let far = register(&svc, &rid, Some("198.51.100.7"), None);
        assert_eq!(hub_of(&far), "us-1.example.net");
    }
}

#[test]
fn a_custom_allocator_gets_azures_request_and_sets_hub_twin_and_payload() {
    let custom = Arc::new(Scripted::default());
    let (svc, hubs) = service(scope(Some(custom.clone())));
    custom.answer(Ok(CustomAllocationResponse {
        iot_hub_host_name: Some("OFF.example.net".into()),
        initial_twin: Some(serde_json::from_value(json!({"tags": {"from": "webhook"}})).unwrap()),
        payload: Some(json!({"welcome": true})),
    }));
    let def = json!({"webhookUrl": "https://f.example.net/api/a?code=s3cret", "apiVersion": "2021-10-01"});
    enroll(
        &svc,
        "c-1",
        json!({"allocationPolicy": "custom", "customAllocationDefinition": def}),
    );
    let st = register(&svc, "c-1", None, Some(json!({"fw": "1.2"})));
    assert_eq!(st.status, RegistrationStatus::Assigned);
    assert_eq!(hub_of(&st), "off.example.net");
    assert_eq!(st.payload, Some(json!({"welcome": true})));
    let dev = hubs.device("off.example.net", "c-1").unwrap();
    assert_eq!(dev.twin.unwrap().tags.unwrap()["from"], "webhook");
    let body = custom.last();
    assert_eq!(body["deviceRuntimeContext"]["registrationId"], "c-1");
    assert_eq!(body["deviceRuntimeContext"]["symmetricKey"], json!({}));
    assert_eq!(
        body["deviceRuntimeContext"]["payload"],
        json!({"fw": "1.2"})
    );
    assert!(
        body["deviceRuntimeContext"]
            .get("currentIotHubHostName")
            .is_none()
    );
    assert_eq!(body["linkedHubs"].as_array().unwrap().len(), 4);
    assert_eq!(body["individualEnrollment"]["registrationId"], "c-1");
    let text = body.to_string();
    assert!(!text.contains(KEY) && !text.contains("s3cret"), "{text}");

    // Re-registration: the current hub is reported; under "never reprovision" it is the only
    // hub offered.
    custom.answer(Ok(CustomAllocationResponse {
        iot_hub_host_name: Some("off.example.net".into()),
        ..CustomAllocationResponse::default()
    }));
    register(&svc, "c-1", None, None);
    let body = custom.last();
    assert_eq!(
        body["deviceRuntimeContext"]["currentIotHubHostName"],
        "off.example.net"
    );
    assert_eq!(body["deviceRuntimeContext"]["currentDeviceId"], "c-1");
    assert_eq!(body["linkedHubs"].as_array().unwrap().len(), 4);
    enroll(
        &svc,
        "c-1",
        json!({"allocationPolicy": "custom", "customAllocationDefinition": def,
        "reprovisionPolicy": {"updateHubAssignment": false, "migrateDeviceData": false}}),
    );
    register(&svc, "c-1", None, None);
    assert_eq!(custom.last()["linkedHubs"], json!(["off.example.net"]));
}

#[test]
fn custom_failures_map_to_azures_codes() {
    let custom = Arc::new(Scripted::default());
    let (svc, _) = service(scope(Some(custom.clone())));
    let def = json!({"webhookUrl": "https://f.example.net/api/a", "apiVersion": "2021-10-01"});
    enroll(
        &svc,
        "c-2",
        json!({"allocationPolicy": "custom", "customAllocationDefinition": def,
        "iotHubs": ["eu-1.example.net"]}),
    );
    let cases = [
        (
            Err(CustomAllocationError::Unauthorized("401".into())),
            400_209,
        ),
        (Err(CustomAllocationError::Failed("500".into())), 400_207),
        (Ok(CustomAllocationResponse::default()), 400_208),
        // A linked hub, but not among the enrollment's.
        (
            Ok(CustomAllocationResponse {
                iot_hub_host_name: Some("us-1.example.net".into()),
                ..CustomAllocationResponse::default()
            }),
            400_208,
        ),
    ];
    for (answer, code) in cases {
        custom.answer(answer);
        let st = register(&svc, "c-2", None, None);
        assert_eq!(st.status, RegistrationStatus::Failed);
        assert_eq!(st.error_code, Some(code));
        assert!(st.assigned_hub.is_none());
    }
    assert_eq!(custom.last()["linkedHubs"], json!(["eu-1.example.net"]));
    // No allocator configured at all.
    let (svc, _) = service(scope(None));
    enroll(
        &svc,
        "c-3",
        json!({"allocationPolicy": "custom", "customAllocationDefinition": def}),
    );
    assert_eq!(register(&svc, "c-3", None, None).error_code, Some(400_207));
}

#[test]
fn unlinked_hubs_and_hubless_static_are_refused_at_write_time() {
    let mut s = scope(None);
    s.allocation_policy = AllocationPolicy::Static;
    let (svc, _) = service(s);
    let admin = svc.admin_for_scope(SCOPE).unwrap();
    let att = json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}});
    let bad = |r: Result<IndividualEnrollment, Rejection>| matches!(r, Err(Rejection::BadRequest(m)) if m.contains("IoT hub"));
    for extra in [
        json!({"iotHubs": ["nowhere.example.net"]}),
        json!({"iotHubHostName": "nowhere.example.net"}),
        json!({"iotHubs": ["eu-1.example.net"], "iotHubHostName": "nowhere.example.net"}),
        // The scope's default is static: an enrollment without a hub cannot rely on it.
        json!({}),
        json!({"iotHubs": ["eu-1.example.net", "eu-2.example.net"]}),
    ] {
        let mut body = json!({"registrationId": "w-1", "attestation": att});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert!(
            bad(block_on_ready(
                admin.put::<IndividualEnrollment>("w-1", body, None)
            )),
            "{extra}"
        );
    }
    // Static to a hub outside allocation, or hashed over named hubs, is fine.
    let ok = json!({"registrationId": "w-2", "attestation": att, "iotHubs": ["off.example.net"]});
    block_on_ready(admin.put::<IndividualEnrollment>("w-2", ok, None)).unwrap();
    let ok = json!({"registrationId": "w-3", "attestation": att, "allocationPolicy": "hashed"});
    block_on_ready(admin.put::<IndividualEnrollment>("w-3", ok, None)).unwrap();

    let group =
        |hub: &str| json!({"enrollmentGroupId": "g-1", "attestation": att, "iotHubHostName": hub});
    let r = block_on_ready(admin.put::<EnrollmentGroup>("g-1", group("nowhere.example.net"), None));
    assert!(matches!(r, Err(Rejection::BadRequest(_))), "{r:?}");
    block_on_ready(admin.put::<EnrollmentGroup>("g-1", group("eu-2.example.net"), None)).unwrap();

    let failures = block_on_ready(admin.bulk::<IndividualEnrollment>(
        BulkMode::Create,
        vec![
            json!({"registrationId": "b-1", "attestation": att, "iotHubs": ["eu-1.example.net"]}),
            json!({"registrationId": "b-2", "attestation": att, "iotHubs": ["nowhere.example.net"]}),
        ],
    ))
    .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].id, "b-2");
    assert!(matches!(&failures[0].rejection, Rejection::BadRequest(m) if m.contains("nowhere")));
}

#[test]
fn group_members_reach_the_custom_allocator_with_the_group() {
    let custom = Arc::new(Scripted::default());
    let (svc, _) = service(scope(Some(custom.clone())));
    custom.answer(Ok(CustomAllocationResponse {
        iot_hub_host_name: Some("eu-2.example.net".into()),
        ..CustomAllocationResponse::default()
    }));
    let admin = svc.admin_for_scope(SCOPE).unwrap();
    let body = json!({"enrollmentGroupId": "grp", "allocationPolicy": "custom",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        "customAllocationDefinition": {"webhookUrl": "https://f.example.net/a", "apiVersion": "2021-10-01"}});
    block_on_ready(admin.put::<EnrollmentGroup>("grp", body, None)).unwrap();
    let derived = derive_device_key(&SigningKey::from_base64(KEY).unwrap(), "member-1");
    let token = generate_token(
        &format!("{SCOPE}/registrations/member-1"),
        &derived,
        4_000_000_000,
        None,
    );
    let op = block_on_ready(svc.register(RegisterRequest {
        id_scope: SCOPE,
        registration_id: "member-1",
        credential: DeviceCredential::Sas(&token),
        payload: None,
        legacy_api: false,
        source: None,
    }))
    .unwrap();
    assert_eq!(hub_of(&op.registration_state), "eu-2.example.net");
    let seen = custom.last();
    assert_eq!(seen["enrollmentGroup"]["enrollmentGroupId"], "grp");
    assert!(seen.get("individualEnrollment").is_none());
    assert!(!seen.to_string().contains(KEY));
}
