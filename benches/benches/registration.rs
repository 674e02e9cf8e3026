//! A device registration through dps-service with the memory store and the in-process hub
//! registry: SAS verification, enrollment lookup, allocation, the hub write and the store
//! commit, without any network. The fake clock moves one second per registration, so the store
//! prunes operations older than an hour as a running server does and the benchmark measures a
//! steady state (not a table that grows by one operation per iteration). Also group lookup through the service with 1-10,000 groups, the
//! device belonging to the last one, and a first registration among 10,000 groups that each have
//! their own registration-ID pattern (`registrationIdPattern`, prefix `gNNNNN-`), to compare with
//! the same number of groups without patterns.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dps_connect::InProcessHubRegistry;
use dps_service::admin::Caller;
use dps_service::{DeviceCredential, RegisterRequest, Right, Service};
use dps_store::{MemoryStore, block_on_ready};
use dps_testkit::*;
use dps_types::{EnrollmentGroup, IndividualEnrollment, Operation, RegistrationStatus};
use serde_json::json;

const LATER: u64 = 4_000_000_000;

fn registration(c: &mut Criterion) {
    let clock = FakeClock::at_unix(1_800_000_000);
    let (svc, _) = fixture_service(clock.clone());
    let owner = service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER);
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&owner),
            },
            Right::EnrollmentWrite,
        )
        .expect("owner token");
    block_on_ready(admin.put::<IndividualEnrollment>(
        "dev-1",
        json!({"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":DEV1_KEY}}}),
        None,
    ))
    .expect("enrollment");
    let token = device_token(SCOPE, "dev-1", DEV1_KEY, LATER);
    c.bench_function("service/register_individual", |b| {
        b.iter(|| {
            clock.advance_secs(1);
            let op = block_on_ready(svc.register(RegisterRequest {
                id_scope: SCOPE,
                registration_id: "dev-1",
                credential: DeviceCredential::Sas(&token),
                payload: None,
                legacy_api: false,
                source: None,
            }))
            .expect("registers");
            assert_eq!(op.status, RegistrationStatus::Assigned);
            op
        })
    });

    // A re-registration tries the device's previous group first; a first registration of a
    // group member scans the groups (newest device every iteration, token minting included).
    // Re-registrations run first, while each store holds only the re-registering device, as
    // the individual row's store holds only dev-1: run after the first registrations, they
    // would also measure a store grown by hundreds of thousands of records.
    let mut fleets = Vec::new();
    for n in [1usize, 10, 100, 1000, 10_000] {
        let clock = FakeClock::at_unix(1_800_000_000);
        let (svc, _) = fixture_service(clock.clone());
        let admin = svc
            .admin(
                Caller {
                    host: Some(SERVICE_HOST),
                    authorization: Some(&owner),
                },
                Right::EnrollmentWrite,
            )
            .expect("owner token");
        for i in 0..n {
            // Distinct keys per group; the device's group sorts last.
            let key = dps_attest::sas::derive_device_key_base64(GROUP_KEY, &format!("group-{i}"))
                .expect("key");
            let body = json!({"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":key,"secondaryKey":key}}});
            block_on_ready(admin.put::<EnrollmentGroup>(&format!("group-{i:05}"), body, None))
                .expect("group");
        }
        let last_key =
            dps_attest::sas::derive_device_key_base64(GROUP_KEY, &format!("group-{}", n - 1))
                .expect("key");
        let token = group_device_token(SCOPE, "member-0", &last_key, LATER);
        register(&svc, "member-0", &token);
        fleets.push((n, svc, clock, last_key, token));
    }
    let mut g = c.benchmark_group("service/reregistration_group_member");
    for (n, svc, clock, _, token) in &fleets {
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| {
                clock.advance_secs(1);
                register(svc, "member-0", token)
            })
        });
    }
    g.finish();
    let mut first = c.benchmark_group("service/first_registration_group_member");
    for (n, svc, clock, last_key, _) in &fleets {
        let mut counter = 0u64;
        first.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| {
                clock.advance_secs(1);
                counter += 1;
                let rid = format!("member-{counter}");
                let token = group_device_token(SCOPE, &rid, last_key, LATER);
                register(svc, &rid, &token)
            })
        });
    }
    first.finish();

    // The same first registration with 10,000 groups, each admitting only its own prefix: the
    // device is a candidate for one group, found through the prepared prefix index.
    let n = 10_000usize;
    let clock = FakeClock::at_unix(1_800_000_000);
    let (svc, _) = fixture_service(clock.clone());
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&owner),
            },
            Right::EnrollmentWrite,
        )
        .expect("owner token");
    for i in 0..n {
        let key = dps_attest::sas::derive_device_key_base64(GROUP_KEY, &format!("group-{i}"))
            .expect("key");
        let body = json!({"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":key,"secondaryKey":key}},
            "registrationIdPattern": format!("g{i:05}-*")});
        block_on_ready(admin.put::<EnrollmentGroup>(&format!("group-{i:05}"), body, None))
            .expect("group");
    }
    let last_key =
        dps_attest::sas::derive_device_key_base64(GROUP_KEY, &format!("group-{}", n - 1))
            .expect("key");
    let mut counter = 0u64;
    let mut p = c.benchmark_group("service/first_registration_group_member_patterned");
    p.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
        b.iter(|| {
            clock.advance_secs(1);
            counter += 1;
            let rid = format!("g{:05}-{counter}", n - 1);
            let token = group_device_token(SCOPE, &rid, &last_key, LATER);
            register(&svc, &rid, &token)
        })
    });
    p.finish();
}

/// Registers `rid` with `token` and checks it was assigned.
fn register(svc: &Service<MemoryStore, InProcessHubRegistry>, rid: &str, token: &str) -> Operation {
    let op = block_on_ready(svc.register(RegisterRequest {
        id_scope: SCOPE,
        registration_id: rid,
        credential: DeviceCredential::Sas(token),
        payload: None,
        legacy_api: false,
        source: None,
    }))
    .expect("registers");
    assert_eq!(op.status, RegistrationStatus::Assigned);
    op
}

criterion_group!(benches, registration);
criterion_main!(benches);
