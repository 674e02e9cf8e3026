//! dpsd configured with an `azure-iothub` linked hub (played by the local registry server of
//! dps-testkit, its connection string taken from the environment): a device registered through
//! dpsd exists in the hub's registry with its key and the enrollment's initial twin.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::Dpsd;
use dps_client::{Credential, RegisterOptions, ServiceClient, TrustedCa, register_https};
use dps_testkit::azure_registry::AzureRegistryServer;
use dps_testkit::{DEV1_KEY, OWNER, OWNER_KEY};
use dps_types::{IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus, Substatus};

const HUB: &str = "hub-a.example.net";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpsd_provisions_into_a_configured_azure_hub() {
    let hub = AzureRegistryServer::start(HUB).await;
    let dpsd = Dpsd::with_scope(
        "hubs",
        &format!(
            r#"
[[scope]]
id_scope = "0ne00000001"
service_host_name = "localhost"

[[scope.hub]]
host_name = "{HUB}"
kind = "azure-iothub"
connection_string_env = "DPSD_TEST_HUB_CONNECTION_STRING"
url = "{endpoint}"
trust_root = "hub-ca.pem"
timeout_ms = 3000
retries = 1
"#,
            endpoint = hub.endpoint()
        ),
        &[("hub-ca.pem", hub.ca_pem())],
        &[("DPSD_TEST_HUB_CONNECTION_STRING", hub.connection_string())],
    )
    .await;
    let (port, ca) = (dpsd.port, dpsd.ca.clone());

    let admin = ServiceClient::from_connection_string(
        &format!(
            "HostName=localhost:{port};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}"
        ),
        Some(TrustedCa::PemFile(ca.clone().into())),
    )
    .unwrap();
    let e: IndividualEnrollment = serde_json::from_value(serde_json::json!({
        "registrationId": "dpsd-az-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}},
        "initialTwin": {"tags": {"fleet": "north"}, "properties": {"desired": {"fw": "1.2"}}}
    }))
    .unwrap();
    admin.create_enrollment(&e).await.unwrap();
    let mut opts = RegisterOptions::new(
        format!("localhost:{port}"),
        IdScope::new("0ne00000001").unwrap(),
        RegistrationId::new("dpsd-az-1").unwrap(),
        Credential::SymmetricKey(DEV1_KEY.to_owned()),
    );
    opts.ca = Some(TrustedCa::PemFile(ca.into()));
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), register_https(opts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.state.status, RegistrationStatus::Assigned);
    assert_eq!(result.state.assigned_hub.unwrap().as_str(), HUB);
    assert_eq!(result.state.substatus, Some(Substatus::InitialAssignment));
    assert!(started.elapsed() < Duration::from_secs(20));
    let device = hub
        .device("dpsd-az-1")
        .expect("the identity exists in the hub");
    assert_eq!(
        device["authentication"]["symmetricKey"]["primaryKey"],
        DEV1_KEY
    );
    let twin = hub.twin("dpsd-az-1").unwrap();
    assert_eq!(twin["tags"]["fleet"], "north");
    assert_eq!(twin["properties"]["desired"]["fw"], "1.2");
    drop(dpsd);
}
