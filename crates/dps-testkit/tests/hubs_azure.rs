//! Linked Azure IoT hubs, played by the local registry server (`dps_testkit::azure_registry`):
//! a device provisions through dps-server into the registry with its credential, capabilities and
//! initial twin, idempotently; each reprovision policy moves (or keeps) a device after its
//! enrollment's hubs changed, with the substatus, the new hub's identity and twin and the old
//! hub's removal checked.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod azure_hubs_fixture;

use std::time::Duration;

use azure_hubs_fixture::*;
use dps_client::{Credential, RegisterOptions, TrustedCa, register_https};
use dps_testkit::*;
use dps_types::{IdScope, RegistrationId, RegistrationStatus, Substatus};
use serde_json::json;

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
async fn group_members_get_their_derived_keys_in_the_hub() {
    let f = Fixture::start().await;
    let tok = service_token(SERVICE_HOST, OWNER, OWNER_KEY, now() + 3600);
    let admin = f
        .svc
        .admin(
            dps_service::admin::Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            dps_service::Right::EnrollmentWrite,
        )
        .unwrap();
    let body = json!({"enrollmentGroupId": "g1", "allocationPolicy": "static",
        "iotHubs": [HUB_B],
        "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": GROUP_KEY, "secondaryKey": DEV1_KEY}}});
    admin
        .put::<dps_types::EnrollmentGroup>("g1", body, None)
        .await
        .unwrap();
    let dev = group_device_token(SCOPE, "member-7", GROUP_KEY, now() + 3600);
    let op = f
        .svc
        .register(dps_service::RegisterRequest {
            id_scope: SCOPE,
            registration_id: "member-7",
            credential: dps_service::DeviceCredential::Sas(&dev),
            payload: None,
            legacy_api: false,
            source: None,
        })
        .await
        .unwrap();
    assert_eq!(assigned(&op), (HUB_B, Substatus::InitialAssignment));
    let keys = &f.b.device("member-7").unwrap()["authentication"]["symmetricKey"];
    let derived = |k: &str| dps_attest::sas::derive_device_key_base64(k, "member-7").unwrap();
    assert_eq!(keys["primaryKey"], derived(GROUP_KEY));
    assert_eq!(keys["secondaryKey"], derived(DEV1_KEY));
    assert_ne!(keys["primaryKey"], GROUP_KEY, "never the group key itself");
}
