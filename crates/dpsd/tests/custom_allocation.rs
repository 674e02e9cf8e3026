//! dpsd with a custom allocation policy (`[scope.custom_allocation]` naming a local HTTPS
//! webhook with its own CA) end to end: the device lands on the hub the webhook picked and gets
//! its payload; the webhook receives Azure's request (enrollment, device runtime context,
//! linked hubs) with its function key; an answer naming an unlinked hub fails the registration
//! with 400208 instead of assigning anything.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::Dpsd;
use dps_client::{
    Credential, Error, FlowError, RegisterOptions, ServiceClient, TrustedCa, register_https,
};
use dps_testkit::webhook::WebhookServer;
use dps_testkit::{DEV1_KEY, OWNER, OWNER_KEY};
use dps_types::{IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus};
use serde_json::json;

fn options(port: u16, ca: &str, rid: &str) -> RegisterOptions {
    let mut opts = RegisterOptions::new(
        format!("localhost:{port}"),
        IdScope::new("0ne00000C01").unwrap(),
        RegistrationId::new(rid).unwrap(),
        Credential::SymmetricKey(DEV1_KEY.to_owned()),
    );
    opts.ca = Some(TrustedCa::PemFile(ca.into()));
    opts.payload = Some(json!({"model": "thermo-2"}));
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpsd_assigns_the_hub_its_custom_allocation_webhook_picks() {
    let hook = WebhookServer::start(json!({
        "iotHubHostName": "hub-b.example.net",
        "initialTwin": {"tags": {"chosenBy": "webhook"}},
        "payload": {"site": "line-7"}
    }))
    .await;
    let dpsd = Dpsd::with_scope(
        "custom",
        &format!(
            r#"
[[scope]]
id_scope = "0ne00000C01"
service_host_name = "localhost"
allocation_policy = "custom"

[scope.custom_allocation]
url = "{url}"
trust_root = "webhook-ca.pem"
timeout_secs = 5
retries = 1
retry_initial_ms = 100

[[scope.hub]]
host_name = "hub-a.example.net"

[[scope.hub]]
host_name = "hub-b.example.net"
"#,
            url = hook.url("/api/allocate?code=fn-key-1")
        ),
        &[("webhook-ca.pem", hook.ca_pem())],
        &[],
    )
    .await;

    let admin = ServiceClient::from_connection_string(
        &format!(
            "HostName=localhost:{};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}",
            dpsd.port
        ),
        Some(TrustedCa::PemFile(dpsd.ca.clone().into())),
    )
    .unwrap();
    for rid in ["custom-dev-1", "custom-dev-2"] {
        let e: IndividualEnrollment = serde_json::from_value(json!({
            "registrationId": rid,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}}
        }))
        .unwrap();
        admin.create_enrollment(&e).await.unwrap();
    }

    let register = |rid: &str| {
        tokio::time::timeout(
            Duration::from_secs(30),
            register_https(options(dpsd.port, &dpsd.ca, rid)),
        )
    };
    let result = register("custom-dev-1").await.unwrap().unwrap();
    assert_eq!(result.state.status, RegistrationStatus::Assigned);
    assert_eq!(
        result.state.assigned_hub.as_ref().map(|h| h.as_str()),
        Some("hub-b.example.net")
    );
    assert_eq!(result.state.payload, Some(json!({"site": "line-7"})));

    let seen = hook.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/api/allocate?code=fn-key-1");
    let body = &seen[0].body;
    assert_eq!(
        body["deviceRuntimeContext"]["registrationId"],
        "custom-dev-1"
    );
    assert_eq!(
        body["deviceRuntimeContext"]["payload"],
        json!({"model": "thermo-2"})
    );
    assert_eq!(
        body["individualEnrollment"]["registrationId"],
        "custom-dev-1"
    );
    let mut linked: Vec<&str> = body["linkedHubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    linked.sort_unstable();
    assert_eq!(linked, ["hub-a.example.net", "hub-b.example.net"]);
    assert!(!body.to_string().contains(DEV1_KEY));

    // The webhook now names a hub that is not linked: the registration fails with 400208 and
    // the device's earlier assignment is untouched.
    hook.answer(200, json!({"iotHubHostName": "hub-z.example.net"}));
    match register("custom-dev-2").await.unwrap() {
        Err(Error::Registration(FlowError::Failed { error_code, .. })) => {
            assert_eq!(error_code, Some(400_208));
        }
        other => panic!("expected a failed registration, got {other:?}"),
    }
    let record = admin
        .get_registration(&RegistrationId::new("custom-dev-1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        record.assigned_hub.as_ref().map(|h| h.as_str()),
        Some("hub-b.example.net")
    );
    drop(dpsd);
}
