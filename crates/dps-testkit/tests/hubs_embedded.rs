//! The service's hub sequence with the in-process registry and injected faults: a failed hub
//! call fails the registration with the hub named in the message, and the stored record keeps
//! the assignment the device really has until a retry completes the move.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use dps_connect::HubCall;
use dps_service::admin::Caller;
use dps_service::{DeviceCredential, HubError, RegisterRequest, Right};
use dps_store::block_on_ready as run;
use dps_testkit::*;
use dps_types::{IndividualEnrollment, Operation, RegistrationStatus, Substatus};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const LATER: u64 = 1_800_003_600;

#[test]
fn faults_at_each_step_of_a_move_leave_the_device_where_it_is() {
    let (svc, hubs) = fixture_service(FakeClock::at_unix(NOW));
    let tok = service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER);
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let body = json!({"registrationId": "m1", "allocationPolicy": "static",
        "iotHubs": ["hub-a.example.net"], "initialTwin": {"tags": {"t": 1}},
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}}});
    let e: IndividualEnrollment = run(admin.put("m1", body, None)).unwrap();
    let dev = device_token(SCOPE, "m1", DEV1_KEY, LATER);
    let register = || -> Operation {
        run(svc.register(RegisterRequest {
            id_scope: SCOPE,
            registration_id: "m1",
            credential: DeviceCredential::Sas(&dev),
            payload: None,
            legacy_api: false,
            source: None,
        }))
        .unwrap()
    };
    let stored_hub = || {
        run(svc.registration_status(SCOPE, "m1", DeviceCredential::Sas(&dev)))
            .unwrap()
            .assigned_hub
            .map(|h| h.to_string())
    };
    assert_eq!(register().status, RegistrationStatus::Assigned);
    hubs.set_twin(
        "hub-a.example.net",
        "m1",
        serde_json::from_value(json!({"tags": {"t": 2}})).unwrap(),
    );
    let mut moved = serde_json::to_value(&e).unwrap();
    moved["iotHubs"] = json!(["hub-b.example.net"]);
    run(admin.put::<IndividualEnrollment>("m1", moved, Some("*"))).unwrap();

    for (hub, call, step) in [
        (
            "hub-a.example.net",
            HubCall::Fetch,
            "reading the device's data",
        ),
        (
            "hub-b.example.net",
            HubCall::Provision,
            "creating the device identity",
        ),
        ("hub-a.example.net", HubCall::Remove, "removing the device"),
    ] {
        hubs.clear_faults();
        hubs.inject_fault(hub, call, HubError::Unavailable("down".into()));
        let op = register();
        assert_eq!(op.status, RegistrationStatus::Failed, "{call:?}");
        let msg = op.registration_state.error_message.unwrap();
        assert!(msg.contains(hub) && msg.contains(step), "{msg}");
        assert_eq!(stored_hub().as_deref(), Some("hub-a.example.net"));
        assert!(hubs.device("hub-a.example.net", "m1").is_some());
    }
    hubs.clear_faults();
    let op = register();
    assert_eq!(
        op.registration_state.substatus,
        Some(Substatus::DeviceDataMigrated)
    );
    assert!(hubs.device("hub-a.example.net", "m1").is_none());
    let b = hubs.device("hub-b.example.net", "m1").unwrap();
    assert_eq!(b.twin.unwrap().tags.unwrap()["t"], 2);
    assert_eq!(stored_hub().as_deref(), Some("hub-b.example.net"));
}
