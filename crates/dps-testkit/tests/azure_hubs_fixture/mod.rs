//! Shared by the Azure linked-hub tests: two local registries (hub-a, hub-b) behind a service
//! with the fixture scope, and helpers to enroll, move and register a device.

#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_connect::{HubConnector, HubRouter, RetryPolicy};
use dps_service::admin::Caller;
use dps_service::{DeviceCredential, RegisterRequest, Right, Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::azure_registry::AzureRegistryServer;
use dps_testkit::*;
use dps_types::{HubHostName, IndividualEnrollment, Operation, RegistrationStatus, Substatus};
use serde_json::{Value, json};

pub const HUB_A: &str = "hub-a.example.net";
pub const HUB_B: &str = "hub-b.example.net";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn quick() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_millis(800),
        retries: 1,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

/// Two Azure registries (hub-a, hub-b) behind a service with the fixture scope.
pub struct Fixture {
    pub a: AzureRegistryServer,
    pub b: AzureRegistryServer,
    pub svc: Service<MemoryStore, HubRouter>,
}

impl Fixture {
    pub async fn start() -> Self {
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

    pub async fn enroll(&self, body: Value, if_match: Option<&str>) -> IndividualEnrollment {
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
    pub async fn move_to(&self, e: &IndividualEnrollment, hub: &str) {
        let mut body = serde_json::to_value(e).unwrap();
        body["iotHubs"] = json!([hub]);
        self.enroll(body, Some("*")).await;
    }

    pub async fn register(&self, rid: &str, legacy_api: bool) -> Operation {
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
    pub async fn record(&self, rid: &str) -> dps_types::DeviceRegistrationState {
        let tok = device_token(SCOPE, rid, DEV1_KEY, now() + 3600);
        self.svc
            .registration_status(SCOPE, rid, DeviceCredential::Sas(&tok))
            .await
            .unwrap()
    }
}

/// An enrollment on `hub` with an initial twin and, when given, a reprovision policy.
pub fn enrollment(rid: &str, hub: &str, policy: Option<(bool, bool)>) -> Value {
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

pub fn assigned(op: &Operation) -> (&str, Substatus) {
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
