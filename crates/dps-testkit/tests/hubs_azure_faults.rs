//! Linked Azure IoT hubs that fail: a hub that refuses, one that rejects DPS's key, one that
//! hangs, and hubs that fail or vanish in the middle of a migration. Each ends the registration
//! `failed` with a clear error, and the stored record never claims a hub without the device.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod azure_hubs_fixture;

use std::time::{Duration, Instant};

use azure_hubs_fixture::*;
use dps_connect::{HubConnector, HubRouter};
use dps_service::Service;
use dps_store::MemoryStore;
use dps_testkit::azure_registry::Fault;
use dps_testkit::*;
use dps_types::{HubHostName, RegistrationStatus, Substatus};
use serde_json::json;

#[tokio::test]
async fn a_refusing_hub_fails_the_registration_without_a_record_claiming_it() {
    let f = Fixture::start().await;
    f.enroll(enrollment("ref-1", HUB_A, None), None).await;
    f.a.set_fault(Some(Fault::Refuse(403, "IotHubQuotaExceeded")), Some("PUT"));
    let op = f.register("ref-1", false).await;
    assert_eq!(op.status, RegistrationStatus::Failed);
    let s = &op.registration_state;
    assert_eq!(s.error_code, Some(500_002));
    let msg = s.error_message.as_deref().unwrap();
    assert!(
        msg.contains("IotHubQuotaExceeded") && msg.contains(HUB_A),
        "{msg}"
    );
    assert!(s.assigned_hub.is_none());
    assert!(f.a.device_ids().is_empty());
    let rec = f.record("ref-1").await;
    assert_eq!(
        (rec.status, rec.assigned_hub),
        (RegistrationStatus::Failed, None)
    );
    // The device retries once the hub accepts again.
    f.a.set_fault(None, None);
    assert_eq!(
        assigned(&f.register("ref-1", false).await),
        (HUB_A, Substatus::InitialAssignment)
    );
}

#[tokio::test]
async fn a_wrong_hub_key_is_dps_unauthorised_at_the_hub() {
    let f = Fixture::start().await;
    let cs = f.a.connection_string().replace(
        dps_testkit::azure_registry::POLICY_KEY,
        "d3Jvbmcta2V5LXdyb25nLWtleS0wMTIzNDU2Nzg5YWI=",
    );
    let mut cfg = dps_connect::AzureHubConfig::new(
        dps_connect::azure::HubConnectionString::parse(&cs).unwrap(),
    );
    cfg.endpoint = Some(f.a.endpoint());
    cfg.trust_roots_pem = Some(f.a.ca_pem().as_bytes().to_vec());
    let mut router = HubRouter::new();
    router.route(
        HubHostName::new(HUB_A).unwrap(),
        HubConnector::Azure(dps_connect::AzureHubRegistry::new(cfg).unwrap()),
    );
    let svc = Service::builder(MemoryStore::new(), router)
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .build();
    let f2 = Fixture { svc, ..f };
    f2.enroll(enrollment("key-1", HUB_A, None), None).await;
    let op = f2.register("key-1", false).await;
    assert_eq!(op.status, RegistrationStatus::Failed);
    assert_eq!(op.registration_state.error_code, Some(400_209));
    assert!(f2.a.requests().is_empty(), "nothing passed authorisation");
}

#[tokio::test]
async fn a_hanging_hub_times_out_within_the_configured_bounds() {
    let f = Fixture::start().await;
    f.enroll(enrollment("slow-1", HUB_A, None), None).await;
    f.a.set_fault(Some(Fault::Hang), None);
    let started = Instant::now();
    let op = f.register("slow-1", false).await;
    let took = started.elapsed();
    assert_eq!(op.status, RegistrationStatus::Failed);
    let msg = op.registration_state.error_message.clone().unwrap();
    assert!(msg.contains("timed out"), "{msg}");
    // Two attempts of 800 ms and a short backoff.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(f.a.requests().len(), 2, "one retry");
    assert_eq!(f.record("slow-1").await.status, RegistrationStatus::Failed);
}

#[tokio::test]
async fn hubs_failing_mid_migration_leave_the_device_where_it_is() {
    let f = Fixture::start().await;
    let e = f.enroll(enrollment("mid-1", HUB_A, None), None).await;
    f.register("mid-1", false).await;
    f.a.update_twin("mid-1", json!({"owner": "ops"}), json!({}));
    f.move_to(&e, HUB_B).await;

    // The new hub is down (503 on every attempt): the device stays on hub-a.
    f.b.set_fault(Some(Fault::Refuse(503, "ServiceUnavailable")), None);
    let op = f.register("mid-1", false).await;
    assert_eq!(op.status, RegistrationStatus::Failed);
    assert!(
        op.registration_state
            .error_message
            .as_deref()
            .unwrap()
            .contains(HUB_B)
    );
    let rec = f.record("mid-1").await;
    assert_eq!(
        (rec.status, rec.assigned_hub.as_ref().map(|h| h.as_str())),
        (RegistrationStatus::Assigned, Some(HUB_A)),
        "the record still knows where the device is"
    );
    assert!(f.a.device("mid-1").is_some() && f.b.device("mid-1").is_none());

    // The new hub accepts, the old one fails the removal: not done yet, nothing lost.
    f.b.set_fault(None, None);
    f.a.set_fault(Some(Fault::Refuse(500, "ServerError")), Some("DELETE"));
    let op = f.register("mid-1", false).await;
    assert_eq!(op.status, RegistrationStatus::Failed);
    let msg = op.registration_state.error_message.clone().unwrap();
    assert!(
        msg.contains("removing the device") && msg.contains(HUB_A),
        "{msg}"
    );
    assert_eq!(
        f.record("mid-1").await.assigned_hub.unwrap().as_str(),
        HUB_A
    );

    // Both healthy: the retry finishes the move, migrating hub-a's data.
    f.a.set_fault(None, None);
    let op = f.register("mid-1", false).await;
    assert_eq!(assigned(&op), (HUB_B, Substatus::DeviceDataMigrated));
    assert!(f.a.device("mid-1").is_none());
    assert_eq!(f.b.twin("mid-1").unwrap()["tags"]["owner"], "ops");

    // The old hub is gone altogether while reading the data to migrate.
    f.move_to(&e, HUB_A).await;
    f.b.stop();
    let op = f.register("mid-1", false).await;
    assert_eq!(op.status, RegistrationStatus::Failed);
    let msg = op.registration_state.error_message.clone().unwrap();
    assert!(
        msg.contains("reading the device's data") && msg.contains(HUB_B),
        "{msg}"
    );
    assert!(
        f.a.device("mid-1").is_none(),
        "nothing written to the new hub"
    );
    assert_eq!(
        f.record("mid-1").await.assigned_hub.unwrap().as_str(),
        HUB_B
    );
}

#[tokio::test]
async fn a_hub_that_throttles_once_is_retried() {
    let f = Fixture::start().await;
    f.enroll(enrollment("thr-1", HUB_A, None), None).await;
    f.a.set_fault_times(Fault::Refuse(429, "ThrottlingException"), Some("PUT"), 1);
    let op = f.register("thr-1", false).await;
    assert_eq!(assigned(&op), (HUB_A, Substatus::InitialAssignment));
    assert_eq!(
        f.a.requests(),
        [
            "PUT /devices/thr-1",
            "PUT /devices/thr-1",
            "PATCH /twins/thr-1"
        ]
    );
}
