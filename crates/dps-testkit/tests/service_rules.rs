//! The service's rules, driven through its library API with the memory store, a fake clock and
//! deterministic entropy: attestation, precedence, disabled enrollments, etags, masking,
//! authorisation, tenant isolation, allocation, reprovisioning, bulk, metering.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use dps_connect::InProcessHubRegistry;
use dps_service::admin::{BulkMode, Caller};
use dps_service::{DeviceCredential, RegisterRequest, Right, Service};
use dps_store::{MemoryStore, block_on_ready as run};
use dps_testkit::*;
use dps_types::{
    EnrollmentGroup, IndividualEnrollment, Operation, RegistrationStatus, Rejection, Substatus,
};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const LATER: u64 = 1_800_003_600;

type Svc = Service<MemoryStore, InProcessHubRegistry>;

fn owner() -> String {
    service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER)
}

fn put_enrollment(svc: &Svc, body: serde_json::Value) -> Result<IndividualEnrollment, Rejection> {
    let tok = owner();
    let id = body["registrationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let admin = svc.admin(
        Caller {
            host: Some(SERVICE_HOST),
            authorization: Some(&tok),
        },
        Right::EnrollmentWrite,
    )?;
    run(admin.put(&id, body, None))
}

fn put_group(svc: &Svc, body: serde_json::Value) -> EnrollmentGroup {
    let tok = owner();
    let id = body["enrollmentGroupId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    run(admin.put(&id, body, None)).unwrap()
}

fn register(svc: &Svc, scope: &str, rid: &str, token: &str) -> Result<Operation, Rejection> {
    run(svc.register(RegisterRequest {
        id_scope: scope,
        registration_id: rid,
        credential: DeviceCredential::Sas(token),
        payload: None,
        legacy_api: false,
        source: None,
    }))
}

fn dev1(svc: &Svc) {
    put_enrollment(
        svc,
        json!({"registrationId":"dev-1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":DEV1_KEY}}}),
    )
    .unwrap();
}

#[test]
fn individual_symmetric_key_device_is_assigned_and_recorded() {
    let clock = FakeClock::at_unix(NOW);
    let (svc, hubs) = fixture_service(clock.clone());
    dev1(&svc);
    let tok = device_token(SCOPE, "dev-1", DEV1_KEY, LATER);
    let op = register(&svc, SCOPE, "dev-1", &tok).unwrap();
    assert_eq!(op.status, RegistrationStatus::Assigned);
    let st = &op.registration_state;
    let hub = st.assigned_hub.as_ref().unwrap().to_string();
    assert!(
        hub == "hub-a.example.net" || hub == "hub-b.example.net",
        "{hub}"
    );
    assert_eq!(st.device_id.as_deref(), Some("dev-1"));
    assert_eq!(st.substatus, Some(Substatus::InitialAssignment));
    assert_eq!(st.created_date_time_utc.unwrap().unix_seconds(), NOW);
    // The hub got the identity with SAS auth.
    let d = hubs.device(&hub, "dev-1").expect("identity in the hub");
    assert_eq!(d.auth_kind, "sas");
    // The operation can be polled with the same token, by the same device only.
    let polled = run(svc.operation_status(
        SCOPE,
        "DEV-1",
        op.operation_id.as_str(),
        DeviceCredential::Sas(&tok),
    ))
    .unwrap();
    assert_eq!(polled, op);
    // Metering counted one device registration.
    let tok = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::ServiceConfig,
        )
        .unwrap();
    let counts = run(admin.operation_counts()).unwrap();
    assert_eq!(counts.get("deviceRegistration"), Some(&1));
    assert_eq!(counts.get("enrollmentWrite"), Some(&1));
}

#[test]
fn bad_credentials_are_refused() {
    let clock = FakeClock::at_unix(NOW);
    let (svc, _) = fixture_service(clock.clone());
    dev1(&svc);
    let wrong = device_token(SCOPE, "dev-1", GROUP_KEY, LATER);
    assert!(matches!(
        register(&svc, SCOPE, "dev-1", &wrong),
        Err(Rejection::Unauthorized(_))
    ));
    let other_id = device_token(SCOPE, "dev-2", DEV1_KEY, LATER);
    assert!(matches!(
        register(&svc, SCOPE, "dev-1", &other_id),
        Err(Rejection::Unauthorized(_))
    ));
    let unknown = device_token(SCOPE, "nobody", DEV1_KEY, LATER);
    assert!(matches!(
        register(&svc, SCOPE, "nobody", &unknown),
        Err(Rejection::Unauthorized(_))
    ));
    let expiring = device_token(SCOPE, "dev-1", DEV1_KEY, clock.unix() + 5);
    assert!(register(&svc, SCOPE, "dev-1", &expiring).is_ok());
    clock.advance_secs(5);
    assert!(matches!(
        register(&svc, SCOPE, "dev-1", &expiring),
        Err(Rejection::Unauthorized(_))
    ));
    assert!(matches!(
        register(&svc, SCOPE, "dev-1", "garbage"),
        Err(Rejection::Unauthorized(_))
    ));
    let none = run(svc.register(RegisterRequest {
        id_scope: SCOPE,
        registration_id: "dev-1",
        credential: DeviceCredential::None,
        payload: None,
        legacy_api: false,
        source: None,
    }));
    assert!(matches!(none, Err(Rejection::Unauthorized(_))));
    assert_eq!(
        register(&svc, "0ne99999999", "dev-1", &expiring).unwrap_err(),
        Rejection::ScopeNotFound
    );
    assert!(matches!(
        register(&svc, SCOPE, "bad id!", &expiring),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn group_members_register_with_derived_keys_and_disabled_entries_block() {
    let (svc, _) = fixture_service(FakeClock::at_unix(NOW));
    put_group(
        &svc,
        json!({"enrollmentGroupId":"group-1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":GROUP_KEY}}}),
    );
    let tok = group_device_token(SCOPE, "dev-group-1", GROUP_KEY, LATER);
    let op = register(&svc, SCOPE, "dev-group-1", &tok).unwrap();
    assert_eq!(op.status, RegistrationStatus::Assigned);
    assert_eq!(
        op.enrollment_group_id.as_ref().map(|g| g.as_str()),
        Some("group-1")
    );
    let again = register(&svc, SCOPE, "dev-group-1", &tok).unwrap();
    assert_eq!(
        again.registration_state.assigned_hub,
        op.registration_state.assigned_hub
    );
    // A disabled individual enrollment blocks this one member, even with its group key.
    put_enrollment(
        &svc,
        json!({"registrationId":"dev-group-1","provisioningStatus":"disabled","attestation":{"type":"symmetricKey"}}),
    )
    .unwrap();
    assert_eq!(
        register(&svc, SCOPE, "dev-group-1", &tok).unwrap().status,
        RegistrationStatus::Disabled
    );
    // Other members are unaffected.
    let tok2 = group_device_token(SCOPE, "dev-group-2", GROUP_KEY, LATER);
    assert_eq!(
        register(&svc, SCOPE, "dev-group-2", &tok2).unwrap().status,
        RegistrationStatus::Assigned
    );
    // A disabled group refuses all members.
    let tok_owner = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok_owner),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let mut g: serde_json::Value =
        serde_json::to_value(run(admin.get::<EnrollmentGroup>("group-1")).unwrap()).unwrap();
    g["provisioningStatus"] = json!("disabled");
    let etag = g["etag"].as_str().unwrap().to_owned();
    run(admin.put::<EnrollmentGroup>("group-1", g, Some(&etag))).unwrap();
    assert_eq!(
        register(&svc, SCOPE, "dev-group-2", &tok2).unwrap().status,
        RegistrationStatus::Disabled
    );
    // Registration records of the group's members can be listed.
    let reader = service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER);
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&reader),
            },
            Right::RegistrationStatusRead,
        )
        .unwrap();
    let page = run(admin.query_registrations("group-1", None, 10)).unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|s| s.registration_id.to_string())
        .collect();
    assert_eq!(ids, ["dev-group-1", "dev-group-2"]);
}

#[test]
fn etags_conflicts_and_preconditions() {
    let (svc, _) = fixture_service(FakeClock::at_unix(NOW));
    let body = json!({"registrationId":"e1","attestation":{"type":"symmetricKey"}});
    let created = put_enrollment(&svc, body.clone()).unwrap();
    assert!(matches!(
        put_enrollment(&svc, body.clone()),
        Err(Rejection::Conflict(_))
    ));
    let tok = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let etag = created.etag.clone().unwrap().quoted();
    assert_eq!(
        run(admin.put::<IndividualEnrollment>("e1", body.clone(), Some("\"stale\""))).unwrap_err(),
        Rejection::PreconditionFailed
    );
    let updated = run(admin.put::<IndividualEnrollment>("e1", body.clone(), Some(&etag))).unwrap();
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.created_date_time_utc, created.created_date_time_utc);
    // The old etag no longer matches; `*` always does.
    assert_eq!(
        run(admin.put::<IndividualEnrollment>("e1", body.clone(), Some(&etag))).unwrap_err(),
        Rejection::PreconditionFailed
    );
    run(admin.put::<IndividualEnrollment>("e1", body.clone(), Some("*"))).unwrap();
    assert_eq!(
        run(admin.put::<IndividualEnrollment>(
            "absent",
            json!({"attestation":{"type":"symmetricKey"}}),
            Some("\"x\"")
        ))
        .unwrap_err(),
        Rejection::PreconditionFailed
    );
    assert_eq!(
        run(admin.delete::<IndividualEnrollment>("e1", Some("\"stale\""))).unwrap_err(),
        Rejection::PreconditionFailed
    );
    run(admin.delete::<IndividualEnrollment>("E1", None)).unwrap();
    assert_eq!(
        run(admin.delete::<IndividualEnrollment>("e1", None)).unwrap_err(),
        Rejection::EnrollmentNotFound
    );
    assert_eq!(
        run(admin.get::<EnrollmentGroup>("nope")).unwrap_err(),
        Rejection::GroupNotFound
    );
    // A body whose id differs from the path is refused.
    assert!(matches!(
        run(admin.put::<IndividualEnrollment>(
            "e2",
            json!({"registrationId":"e3","attestation":{"type":"symmetricKey"}}),
            None
        )),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn keys_are_generated_masked_and_kept() {
    let (svc, _) = fixture_service(FakeClock::at_unix(NOW));
    let created = put_enrollment(
        &svc,
        json!({"registrationId":"k1","attestation":{"type":"symmetricKey"}}),
    )
    .unwrap();
    let keys = created.attestation.symmetric_key().unwrap().clone();
    let primary = keys.primary_key.clone().unwrap();
    assert_eq!(primary.expose_base64().len(), 88, "64-byte keys");
    assert_ne!(keys.primary_key, keys.secondary_key);
    let tok = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let got = run(admin.get::<IndividualEnrollment>("k1")).unwrap();
    let json = serde_json::to_string(&got).unwrap();
    assert!(
        !json.contains(primary.expose_base64()),
        "GET leaked a key: {json}"
    );
    let page = run(admin.query::<IndividualEnrollment>(None, 10)).unwrap();
    assert!(
        !serde_json::to_string(&page.items)
            .unwrap()
            .contains(primary.expose_base64())
    );
    let att = run(admin.attestation::<IndividualEnrollment>("k1")).unwrap();
    assert_eq!(att.symmetric_key().unwrap(), &keys);
    // GET -> modify -> PUT round trip without keys keeps the keys.
    let mut body = serde_json::to_value(&got).unwrap();
    body["provisioningStatus"] = json!("disabled");
    let etag = got.etag.unwrap().quoted();
    let after = run(admin.put::<IndividualEnrollment>("k1", body, Some(&etag))).unwrap();
    assert_eq!(after.attestation.symmetric_key().unwrap(), &keys);
    // Invalid keys are refused.
    assert!(matches!(
        put_enrollment(
            &svc,
            json!({"registrationId":"k2","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"AAAA"}}})
        ),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn service_authorisation() {
    let clock = FakeClock::at_unix(NOW);
    let (svc, _) = fixture_service(clock.clone());
    let reader = service_token(SERVICE_HOST, READER, READER_KEY, LATER);
    let c = Caller {
        host: Some("localhost:8443"),
        authorization: Some(&reader),
    };
    assert!(svc.admin(c, Right::EnrollmentRead).is_ok());
    assert_eq!(
        svc.admin(c, Right::EnrollmentWrite).err(),
        Some(Rejection::Forbidden("EnrollmentWrite"))
    );
    let forged = service_token(SERVICE_HOST, OWNER, READER_KEY, LATER);
    let c = Caller {
        host: Some(SERVICE_HOST),
        authorization: Some(&forged),
    };
    assert!(matches!(
        svc.admin(c, Right::EnrollmentRead),
        Err(Rejection::Unauthorized(_))
    ));
    let unknown = service_token(SERVICE_HOST, "nobody", OWNER_KEY, LATER);
    let c = Caller {
        host: Some(SERVICE_HOST),
        authorization: Some(&unknown),
    };
    assert!(matches!(
        svc.admin(c, Right::EnrollmentRead),
        Err(Rejection::Unauthorized(_))
    ));
    let c = Caller {
        host: Some(SERVICE_HOST),
        authorization: None,
    };
    assert!(matches!(
        svc.admin(c, Right::EnrollmentRead),
        Err(Rejection::Unauthorized(_))
    ));
    let short = service_token(SERVICE_HOST, OWNER, OWNER_KEY, clock.unix() + 1);
    let c = Caller {
        host: Some(SERVICE_HOST),
        authorization: Some(&short),
    };
    assert!(svc.admin(c, Right::EnrollmentRead).is_ok());
    clock.advance_secs(1);
    assert!(matches!(
        svc.admin(c, Right::EnrollmentRead),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn tenants_never_see_each_other() {
    let hubs = InProcessHubRegistry::default();
    let svc: Svc = Service::builder(MemoryStore::new(), hubs)
        .scope(fixture_scope("0neAAAA0001", "dps-a.example.net"))
        .scope(fixture_scope("0neBBBB0002", "dps-b.example.net"))
        .clock(FakeClock::at_unix(NOW))
        .entropy(SeqEntropy::default())
        .build();
    let tok_a = service_token("dps-a.example.net", OWNER, OWNER_KEY, LATER);
    let tok_b = service_token("dps-b.example.net", OWNER, OWNER_KEY, LATER);
    let a = svc
        .admin(
            Caller {
                host: Some("dps-a.example.net"),
                authorization: Some(&tok_a),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    run(a.put::<IndividualEnrollment>(
        "dev-1",
        json!({"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":DEV1_KEY}}}),
        None,
    ))
    .unwrap();
    // Scope B's admin cannot see it, and scope A's token does not open scope B.
    let b = svc
        .admin(
            Caller {
                host: Some("dps-b.example.net"),
                authorization: Some(&tok_b),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    assert_eq!(
        run(b.get::<IndividualEnrollment>("dev-1")).unwrap_err(),
        Rejection::EnrollmentNotFound
    );
    assert!(
        run(b.query::<IndividualEnrollment>(None, 10))
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        svc.admin(
            Caller {
                host: Some("dps-b.example.net"),
                authorization: Some(&tok_a)
            },
            Right::EnrollmentRead
        ),
        Err(Rejection::Unauthorized(_))
    ));
    assert_eq!(
        svc.admin(
            Caller {
                host: Some("elsewhere.example.net"),
                authorization: Some(&tok_a)
            },
            Right::EnrollmentRead
        )
        .err(),
        Some(Rejection::ScopeNotFound)
    );
    // The device registers in scope A only; in scope B its key opens nothing.
    let dev_a = device_token("0neAAAA0001", "dev-1", DEV1_KEY, LATER);
    let op = register(&svc, "0neAAAA0001", "dev-1", &dev_a).unwrap();
    assert_eq!(op.status, RegistrationStatus::Assigned);
    let dev_b = device_token("0neBBBB0002", "dev-1", DEV1_KEY, LATER);
    assert!(matches!(
        register(&svc, "0neBBBB0002", "dev-1", &dev_b),
        Err(Rejection::Unauthorized(_))
    ));
    // A token for scope A is refused at scope B's path (audience), and operations do not cross.
    assert!(matches!(
        register(&svc, "0neBBBB0002", "dev-1", &dev_a),
        Err(Rejection::Unauthorized(_))
    ));
    let b_reg = svc
        .admin(
            Caller {
                host: Some("dps-b.example.net"),
                authorization: Some(&tok_b),
            },
            Right::RegistrationStatusRead,
        )
        .unwrap();
    assert_eq!(
        run(b_reg.registration("dev-1")).unwrap_err(),
        Rejection::RegistrationNotFound
    );
}

#[test]
fn static_allocation_and_reprovisioning() {
    let (svc, hubs) = fixture_service(FakeClock::at_unix(NOW));
    // A hub outside the allocation set can still be named statically.
    let e = put_enrollment(
        &svc,
        json!({"registrationId":"s1","allocationPolicy":"static","iotHubs":["hub-off.example.net"],
               "attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":DEV1_KEY}},
               "initialTwin":{"tags":{"line":7}}}),
    )
    .unwrap();
    let tok = device_token(SCOPE, "s1", DEV1_KEY, LATER);
    let op = register(&svc, SCOPE, "s1", &tok).unwrap();
    assert_eq!(
        op.registration_state.assigned_hub.unwrap().as_str(),
        "hub-off.example.net"
    );
    assert_eq!(
        hubs.device("hub-off.example.net", "s1")
            .unwrap()
            .twin
            .unwrap()
            .tags
            .unwrap()["line"],
        7
    );
    // Unlinked hubs are refused at write time.
    assert!(matches!(
        put_enrollment(
            &svc,
            json!({"registrationId":"s2","iotHubs":["nowhere.example.net"],"attestation":{"type":"symmetricKey"}})
        ),
        Err(Rejection::BadRequest(_))
    ));
    // Moving the enrollment to another hub migrates the device on its next registration.
    let tok_owner = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok_owner),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let mut body = serde_json::to_value(&e).unwrap();
    body["iotHubs"] = json!(["hub-a.example.net"]);
    run(admin.put::<IndividualEnrollment>("s1", body, Some("*"))).unwrap();
    let moved = register(&svc, SCOPE, "s1", &tok).unwrap();
    assert_eq!(
        moved.registration_state.assigned_hub.unwrap().as_str(),
        "hub-a.example.net"
    );
    assert_eq!(
        moved.registration_state.substatus,
        Some(Substatus::DeviceDataMigrated)
    );
    assert!(
        hubs.device("hub-off.example.net", "s1").is_none(),
        "left the old hub"
    );
    assert!(hubs.device("hub-a.example.net", "s1").is_some());
}

#[test]
fn bulk_items_fail_alone() {
    let (svc, _) = fixture_service(FakeClock::at_unix(NOW));
    dev1(&svc);
    let tok = owner();
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let items: Vec<_> = (0..200)
        .map(|i| json!({"registrationId": format!("bulk-{i}"), "attestation":{"type":"symmetricKey"}}))
        .chain([json!({"registrationId":"dev-1","attestation":{"type":"symmetricKey"}}), json!({"registrationId":"bad id"})])
        .collect();
    let failures = run(admin.bulk::<IndividualEnrollment>(BulkMode::Create, items)).unwrap();
    let ids: Vec<_> = failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["dev-1", "bad id"]);
    assert!(matches!(failures[0].rejection, Rejection::Conflict(_)));
    let page = run(admin.query::<IndividualEnrollment>(None, 1000)).unwrap();
    assert_eq!(page.items.len(), 201);
    let del: Vec<_> = (0..200)
        .map(|i| json!({"registrationId": format!("bulk-{i}")}))
        .collect();
    assert!(
        run(admin.bulk::<IndividualEnrollment>(BulkMode::Delete, del))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        run(admin.query::<IndividualEnrollment>(None, 1000))
            .unwrap()
            .items
            .len(),
        1
    );
}

#[test]
fn operations_belong_to_their_device() {
    let (svc, _) = fixture_service(FakeClock::at_unix(NOW));
    dev1(&svc);
    put_group(
        &svc,
        json!({"enrollmentGroupId":"g","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":GROUP_KEY}}}),
    );
    let tok1 = device_token(SCOPE, "dev-1", DEV1_KEY, LATER);
    let op = register(&svc, SCOPE, "dev-1", &tok1).unwrap();
    let tok2 = group_device_token(SCOPE, "dev-2", GROUP_KEY, LATER);
    let stolen = run(svc.operation_status(
        SCOPE,
        "dev-2",
        op.operation_id.as_str(),
        DeviceCredential::Sas(&tok2),
    ));
    assert_eq!(stolen.unwrap_err(), Rejection::OperationNotFound);
    let missing = run(svc.operation_status(SCOPE, "dev-1", "1.nope", DeviceCredential::Sas(&tok1)));
    assert_eq!(missing.unwrap_err(), Rejection::OperationNotFound);
    let status =
        run(svc.registration_status(SCOPE, "dev-1", DeviceCredential::Sas(&tok1))).unwrap();
    assert_eq!(status.status, RegistrationStatus::Assigned);
}
