//! Custom allocation end to end: dps-server on 127.0.0.1:0 over a service whose scope's policy
//! is custom, a local HTTPS webhook with its own CA, and a device registering over HTTPS with
//! dps-client. The device gets the webhook's hub and payload; the hub identity gets its twin.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use dps_client::{Credential, RegisterOptions, ServiceClient, TrustedCa, register_https};
use dps_connect::InProcessHubRegistry;
use dps_connect::webhook::{WebhookAllocator, WebhookConfig};
use dps_service::{Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::webhook::WebhookServer;
use dps_testkit::*;
use dps_types::{
    AllocationPolicy, IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// A CA and a server certificate for localhost / 127.0.0.1: (CA PEM, chain PEM, key PEM).
fn pki(name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gets_the_webhooks_hub_twin_and_payload_over_https() {
    let hook = WebhookServer::start(json!({
        "iotHubHostName": "hub-off.example.net",
        "initialTwin": {"tags": {"chosenBy": "webhook"}, "properties": {"desired": {"mode": "eco"}}},
        "payload": {"greeting": "hello from the webhook"}
    }))
    .await;
    let url = hook.url("/api/alloc?code=fn-key");
    let mut scope = fixture_scope(SCOPE, SERVICE_HOST);
    scope.allocation_policy = AllocationPolicy::Custom;
    let mut wc = WebhookConfig::default()
        .with_extra_roots_pem(hook.ca_pem().as_bytes())
        .unwrap();
    wc.default_url = Some(url.clone());
    scope.custom_allocator = Some(Arc::new(WebhookAllocator::new(wc).unwrap()));
    let hubs = InProcessHubRegistry::default();
    let svc = Service::builder(MemoryStore::new(), hubs.clone())
        .scope(scope)
        .options(ServiceOptions {
            retry_after_secs: 1,
            ..ServiceOptions::default()
        })
        .build();
    let (ca, chain, key) = pki("dps CA");
    let tls = dps_server::tls::server_config(chain.as_bytes(), key.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dps_server::serve(listener, tls, svc, async {
        let _ = stopped.await;
    }));
    let trusted = || Some(TrustedCa::Pem(ca.clone().into_bytes()));

    // Two devices: one relying on the scope's webhook, one whose enrollment names it.
    let admin = ServiceClient::from_connection_string(
        &format!(
            "HostName=localhost:{port};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}"
        ),
        trusted(),
    )
    .unwrap();
    for (rid, def) in [
        ("webhook-dev-1", Value::Null),
        (
            "webhook-dev-2",
            json!({"webhookUrl": url, "apiVersion": "2021-10-01"}),
        ),
    ] {
        let mut e = json!({
            "registrationId": rid,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}},
            "initialTwin": {"tags": {"chosenBy": "enrollment"}}
        });
        if !def.is_null() {
            e["allocationPolicy"] = json!("custom");
            e["customAllocationDefinition"] = def;
        }
        let e: IndividualEnrollment = serde_json::from_value(e).unwrap();
        admin.create_enrollment(&e).await.unwrap();

        let mut opts = RegisterOptions::new(
            format!("localhost:{port}"),
            IdScope::new(SCOPE).unwrap(),
            RegistrationId::new(rid).unwrap(),
            Credential::SymmetricKey(DEV1_KEY.to_owned()),
        );
        opts.ca = trusted();
        opts.payload = Some(json!({"firmware": "2.1"}));
        let result = tokio::time::timeout(Duration::from_secs(30), register_https(opts))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.state.status, RegistrationStatus::Assigned, "{rid}");
        assert_eq!(
            result.state.assigned_hub.as_ref().map(|h| h.as_str()),
            Some("hub-off.example.net")
        );
        assert_eq!(
            result.state.payload,
            Some(json!({"greeting": "hello from the webhook"}))
        );
        let twin = hubs
            .device("hub-off.example.net", rid)
            .unwrap()
            .twin
            .unwrap();
        assert_eq!(twin.tags.unwrap()["chosenBy"], "webhook");

        let body = hook.requests().last().cloned().unwrap().body;
        assert_eq!(body["deviceRuntimeContext"]["registrationId"], rid);
        assert_eq!(
            body["deviceRuntimeContext"]["payload"],
            json!({"firmware": "2.1"})
        );
        assert_eq!(body["linkedHubs"].as_array().unwrap().len(), 3);
        assert_eq!(body["individualEnrollment"]["registrationId"], rid);
        assert!(!body.to_string().contains(DEV1_KEY));
    }
    assert_eq!(hook.requests().len(), 2);
    assert!(
        hook.requests()
            .iter()
            .all(|r| r.uri == "/api/alloc?code=fn-key")
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
