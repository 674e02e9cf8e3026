//! End to end over real TLS sockets: dps-server on 127.0.0.1:0, dps-client's service client
//! creating enrollments and its device flow registering over HTTPS, with a private CA.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use dps_client::{Credential, RegisterOptions, ServiceClient, TrustedCa, register_https};
use dps_connect::InProcessHubRegistry;
use dps_service::{Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::*;
use dps_types::{IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

struct Pki {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "e2e test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_client_and_device_flow_against_a_real_server() {
    let pki = pki();
    let hubs = InProcessHubRegistry::default();
    // Real clock here: the client mints tokens from the system time.
    let svc = Service::builder(MemoryStore::new(), hubs.clone())
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .options(ServiceOptions {
            retry_after_secs: 1,
            ..ServiceOptions::default()
        })
        .build();
    let tls =
        dps_server::tls::server_config(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dps_server::serve(listener, tls, svc, async {
        let _ = stopped.await;
    }));

    let ca = || Some(TrustedCa::Pem(pki.ca_pem.clone().into_bytes()));
    let cs = format!(
        "HostName=localhost:{port};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}"
    );
    let admin = ServiceClient::from_connection_string(&cs, ca()).unwrap();
    let e: IndividualEnrollment = serde_json::from_value(serde_json::json!({
        "registrationId": "e2e-dev-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}},
        "initialTwin": {"tags": {"e2e": true}}
    }))
    .unwrap();
    let created = admin.create_enrollment(&e).await.unwrap();
    assert!(created.etag.is_some());
    // Creating it again without an etag is a conflict.
    let again = admin.create_enrollment(&e).await.unwrap_err();
    assert_eq!(again.status(), Some(409));

    let endpoint = format!("localhost:{port}");
    let mut opts = RegisterOptions::new(
        endpoint.clone(),
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new("e2e-dev-1").unwrap(),
        Credential::SymmetricKey(DEV1_KEY.to_owned()),
    );
    opts.ca = ca();
    let result = tokio::time::timeout(Duration::from_secs(30), register_https(opts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.state.status, RegistrationStatus::Assigned);
    let hub = result.state.assigned_hub.clone().unwrap();
    assert_eq!(result.state.device_id.as_deref(), Some("e2e-dev-1"));
    let identity = hubs.device(hub.as_str(), "e2e-dev-1").unwrap();
    assert_eq!(identity.twin.unwrap().tags.unwrap()["e2e"], true);

    // The record is visible through the service API, and a wrong key is refused.
    let rec = admin
        .get_registration(&RegistrationId::new("e2e-dev-1").unwrap())
        .await
        .unwrap();
    assert_eq!(rec.assigned_hub, Some(hub));
    let mut bad = RegisterOptions::new(
        endpoint,
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new("e2e-dev-1").unwrap(),
        Credential::SymmetricKey(GROUP_KEY.to_owned()),
    );
    bad.ca = ca();
    let err = tokio::time::timeout(Duration::from_secs(30), register_https(bad))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");

    let ops = admin.operations().await.unwrap();
    assert_eq!(ops["operations"]["deviceRegistration"], 1);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
