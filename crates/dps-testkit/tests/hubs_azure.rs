//! Linked Azure IoT hubs, played by the local registry server (`dps_testkit::azure_registry`):
//! a device provisions through dps-server into the registry with its credential, capabilities and
//! initial twin; each reprovision policy moves (or keeps) a device after its enrollment's hubs
//! changed; hubs that refuse, hang or go down mid-migration leave consistent records.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dps_client::{Credential, RegisterOptions, TrustedCa, register_https};
use dps_connect::{HubConnector, HubRouter, RetryPolicy};
use dps_service::admin::Caller;
use dps_service::{DeviceCredential, RegisterRequest, Right, Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::azure_registry::{AzureRegistryServer, Fault};
use dps_testkit::*;
use dps_types::{
    HubHostName, IdScope, IndividualEnrollment, Operation, RegistrationId, RegistrationStatus,
    Substatus,
};
use serde_json::{Value, json};

const HUB_A: &str = "hub-a.example.net";
const HUB_B: &str = "hub-b.example.net";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_millis(800),
        retries: 1,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

/// Two Azure registries (hub-a, hub-b) behind a service with the fixture scope.
struct Fixture {
    a: AzureRegistryServer,
    b: AzureRegistryServer,
    svc: Service<MemoryStore, HubRouter>,
}

impl Fixture {
    async fn start() -> Self {
        let a = AzureRegistryServer::start(HUB_A).await;
        let b = AzureRegistryServer::start(HUB_B).await;
        let mut router = HubRouter::new();
        for hub in [&a, &b] {
            router.route(
                HubHostName::new(hub.host_name()).unwrap(),
                HubConnector::Azure(hub.connector(quick())),
            );
        }
        let svc = Service::builder(MemoryStore::new(), router)
            .scope(fixture_scope(SCOPE, SERVICE_HOST))
            .options(ServiceOptions {
                retry_after_secs: 1,
                ..ServiceOptions::default()
            })
            .build();
        Self { a, b, svc }
    }

    async fn enroll(&self, body: Value, if_match: Option<&str>) -> IndividualEnrollment {
        let tok = service_token(SERVICE_HOST, OWNER, OWNER_KEY, now() + 3600);
        let id = body["registrationId"].as_str().unwrap().to_owned();
        let admin = self
            .svc
            .admin(
                Caller {
                    host: Some(SERVICE_HOST),
                    authorization: Some(&tok),
                },
                Right::EnrollmentWrite,
            )
            .unwrap();
        admin.put(&id, body, if_match).await.unwrap()
    }

    /// Points `rid`'s enrollment at `hub` only.
    async fn move_to(&self, e: &IndividualEnrollment, hub: &str) {
        let mut body = serde_json::to_value(e).unwrap();
        body["iotHubs"] = json!([hub]);
        self.enroll(body, Some("*")).await;
    }

    async fn register(&self, rid: &str, legacy_api: bool) -> Operation {
        let tok = device_token(SCOPE, rid, DEV1_KEY, now() + 3600);
        self.svc
            .register(RegisterRequest {
                id_scope: SCOPE,
                registration_id: rid,
                credential: DeviceCredential::Sas(&tok),
                payload: None,
                legacy_api,
                source: None,
            })
            .await
            .unwrap()
    }

    /// The stored record's public state.
    async fn record(&self, rid: &str) -> dps_types::DeviceRegistrationState {
        let tok = device_token(SCOPE, rid, DEV1_KEY, now() + 3600);
        self.svc
            .registration_status(SCOPE, rid, DeviceCredential::Sas(&tok))
            .await
            .unwrap()
    }
}

/// An enrollment on `hub` with an initial twin and, when given, a reprovision policy.
fn enrollment(rid: &str, hub: &str, policy: Option<(bool, bool)>) -> Value {
    let mut e = json!({
        "registrationId": rid, "allocationPolicy": "static", "iotHubs": [hub],
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}},
        "initialTwin": {"tags": {"site": "plant-7"},
                        "properties": {"desired": {"telemetryInterval": 30}}}
    });
    if let Some((update, migrate)) = policy {
        e["reprovisionPolicy"] =
            json!({"updateHubAssignment": update, "migrateDeviceData": migrate});
    }
    e
}

fn assigned(op: &Operation) -> (&str, Substatus) {
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    (
        op.registration_state
            .assigned_hub
            .as_ref()
            .unwrap()
            .as_str(),
        op.registration_state.substatus.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_provisions_through_dps_server_into_the_azure_registry() {
    let f = Fixture::start().await;
    let mut body = enrollment("e2e-az-1", HUB_A, None);
    body["capabilities"] = json!({"iotEdge": true});
    f.enroll(body, None).await;

    let pki = dps_testkit_pki();
    let tls = dps_server::tls::server_config(pki.1.as_bytes(), pki.2.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dps_server::serve(listener, tls, f.svc.clone(), async {
        let _ = stopped.await;
    }));
    let mut opts = RegisterOptions::new(
        format!("localhost:{port}"),
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new("e2e-az-1").unwrap(),
        Credential::SymmetricKey(DEV1_KEY.to_owned()),
    );
    opts.ca = Some(TrustedCa::Pem(pki.0.into_bytes()));
    let result = tokio::time::timeout(Duration::from_secs(30), register_https(opts.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.state.status, RegistrationStatus::Assigned);
    assert_eq!(result.state.assigned_hub.unwrap().as_str(), HUB_A);
    assert_eq!(result.state.substatus, Some(Substatus::InitialAssignment));

    // The identity: SAS with the enrollment's key, an edge device, enabled; and its twin.
    let device = f.a.device("e2e-az-1").unwrap();
    assert_eq!(device["authentication"]["type"], "sas");
    assert_eq!(
        device["authentication"]["symmetricKey"]["primaryKey"],
        DEV1_KEY
    );
    assert_eq!(device["capabilities"]["iotEdge"], true);
    assert_eq!(device["status"], "enabled");
    let twin = f.a.twin("e2e-az-1").unwrap();
    assert_eq!(twin["tags"]["site"], "plant-7");
    assert_eq!(twin["properties"]["desired"]["telemetryInterval"], 30);
    assert!(f.b.device_ids().is_empty());
    assert_eq!(
        f.a.requests(),
        ["PUT /devices/e2e-az-1", "PATCH /twins/e2e-az-1"]
    );

    // Registering again is idempotent: the identity is updated under its etag, the twin kept.
    f.a.update_twin("e2e-az-1", json!({"owner": "ops"}), json!({}));
    let again = tokio::time::timeout(Duration::from_secs(30), register_https(opts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.state.assigned_hub.unwrap().as_str(), HUB_A);
    assert_eq!(again.state.substatus, Some(Substatus::InitialAssignment));
    assert_eq!(f.a.device_ids(), ["e2e-az-1"]);
    assert_eq!(f.a.twin("e2e-az-1").unwrap()["tags"]["owner"], "ops");
    assert_eq!(
        f.a.requests()[2..],
        [
            "PUT /devices/e2e-az-1",
            "GET /devices/e2e-az-1",
            "PUT /devices/e2e-az-1"
        ]
    );
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}

/// (CA PEM, server chain PEM, server key PEM) for dps-server on localhost.
fn dps_testkit_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test]
async fn migrate_policy_carries_the_current_twin_to_the_new_hub() {
    let f = Fixture::start().await;
    let e = f
        .enroll(enrollment("mig-1", HUB_A, Some((true, true))), None)
        .await;
    assert_eq!(
        assigned(&f.register("mig-1", false).await),
        (HUB_A, Substatus::InitialAssignment)
    );
    f.a.update_twin("mig-1", json!({"owner": "ops"}), json!({"mode": "eco"}));
    f.move_to(&e, HUB_B).await;
    let op = f.register("mig-1", false).await;
    assert_eq!(assigned(&op), (HUB_B, Substatus::DeviceDataMigrated));
    let twin = f.b.twin("mig-1").unwrap();
    assert_eq!(
        (&twin["tags"]["owner"], &twin["tags"]["site"]),
        (&json!("ops"), &json!("plant-7"))
    );
    assert_eq!(twin["properties"]["desired"]["mode"], "eco");
    assert_eq!(
        f.b.device("mig-1").unwrap()["authentication"]["symmetricKey"]["primaryKey"],
        DEV1_KEY
    );
    assert!(f.a.device("mig-1").is_none(), "removed from the old hub");
    // Back to the first hub: reprovisionedToInitialAssignment, data migrated back.
    f.move_to(&e, HUB_A).await;
    let back = f.register("mig-1", false).await;
    assert_eq!(
        assigned(&back),
        (HUB_A, Substatus::ReprovisionedToInitialAssignment)
    );
    assert_eq!(f.a.twin("mig-1").unwrap()["tags"]["owner"], "ops");
    assert!(f.b.device("mig-1").is_none());
}

#[tokio::test]
async fn reset_policy_starts_the_new_hub_from_the_enrollment() {
    let f = Fixture::start().await;
    let e = f
        .enroll(enrollment("rst-1", HUB_A, Some((true, false))), None)
        .await;
    f.register("rst-1", false).await;
    f.a.update_twin("rst-1", json!({"owner": "ops"}), json!({"mode": "eco"}));
    f.move_to(&e, HUB_B).await;
    let op = f.register("rst-1", false).await;
    assert_eq!(assigned(&op), (HUB_B, Substatus::DeviceDataReset));
    let twin = f.b.twin("rst-1").unwrap();
    assert_eq!(twin["tags"], json!({"site": "plant-7"}));
    assert!(twin["properties"]["desired"].get("mode").is_none());
    assert!(f.a.device("rst-1").is_none(), "removed from the old hub");
    // Same hub again: the documented factory reset re-applies the initial twin in place.
    f.b.update_twin("rst-1", json!({"owner": "ops"}), json!({}));
    let same = f.register("rst-1", false).await;
    assert_eq!(assigned(&same), (HUB_B, Substatus::DeviceDataReset));
    assert_eq!(
        f.b.twin("rst-1").unwrap()["tags"],
        json!({"site": "plant-7"})
    );
}

#[tokio::test]
async fn never_policy_and_legacy_devices_stay_where_they_are() {
    let f = Fixture::start().await;
    let never = f
        .enroll(enrollment("nvr-1", HUB_A, Some((false, false))), None)
        .await;
    f.register("nvr-1", false).await;
    f.a.update_twin("nvr-1", json!({"owner": "ops"}), json!({}));
    f.move_to(&never, HUB_B).await;
    let op = f.register("nvr-1", false).await;
    assert_eq!(assigned(&op), (HUB_A, Substatus::InitialAssignment));
    assert_eq!(f.a.twin("nvr-1").unwrap()["tags"]["owner"], "ops");
    assert!(f.b.device_ids().is_empty());

    // No policy + a pre-2018-11 device API: sticky. The same device on a current API moves.
    let legacy = f.enroll(enrollment("old-1", HUB_A, None), None).await;
    f.register("old-1", true).await;
    f.move_to(&legacy, HUB_B).await;
    assert_eq!(
        assigned(&f.register("old-1", true).await),
        (HUB_A, Substatus::InitialAssignment)
    );
    assert_eq!(
        assigned(&f.register("old-1", false).await),
        (HUB_B, Substatus::DeviceDataMigrated)
    );
    assert!(f.a.device("old-1").is_none());
}

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
        azure_registry_key(),
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

fn azure_registry_key() -> &'static str {
    dps_testkit::azure_registry::POLICY_KEY
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
