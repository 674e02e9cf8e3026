//! Registration-ID patterns on enrollment groups (`registrationIdPattern`, an extension beyond
//! Azure DPS): which groups a device's registration tries, validation on write, and the round
//! trip through the service API (library calls and the real REST router).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dps_connect::InProcessHubRegistry;
use dps_service::admin::{Admin, Caller};
use dps_service::{DeviceCredential, RegisterRequest, Right, Service};
use dps_store::{MemoryStore, block_on_ready as run};
use dps_testkit::*;
use dps_types::{EnrollmentGroup, Operation, RegistrationStatus, Rejection};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const LATER: u64 = 4_000_000_000;
const SVC: &str = "?api-version=2021-10-01";

type Svc = Service<MemoryStore, InProcessHubRegistry>;

fn service() -> Svc {
    fixture_service(FakeClock::at_unix(1_800_000_000)).0
}

fn with_admin<T>(
    svc: &Svc,
    f: impl FnOnce(&Admin<'_, MemoryStore, InProcessHubRegistry>) -> T,
) -> T {
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
    f(&admin)
}

/// Writes a symmetric-key group with `GROUP_KEY` and the given pattern (if any).
fn put_group(svc: &Svc, id: &str, pattern: Option<&str>) -> Result<EnrollmentGroup, Rejection> {
    let mut body = json!({"attestation":{"type":"symmetricKey",
        "symmetricKey":{"primaryKey":GROUP_KEY,"secondaryKey":GROUP_KEY}}});
    if let Some(p) = pattern {
        body["registrationIdPattern"] = json!(p);
    }
    with_admin(svc, |a| run(a.put::<EnrollmentGroup>(id, body, Some("*"))))
}

fn register(svc: &Svc, rid: &str) -> Result<Operation, Rejection> {
    let token = group_device_token(SCOPE, rid, GROUP_KEY, LATER);
    run(svc.register(RegisterRequest {
        id_scope: SCOPE,
        registration_id: rid,
        credential: DeviceCredential::Sas(&token),
        payload: None,
        legacy_api: false,
        source: None,
    }))
}

/// The group a device was assigned through.
fn group_of(op: &Operation) -> &str {
    assert_eq!(op.status, RegistrationStatus::Assigned, "{op:?}");
    op.enrollment_group_id.as_ref().unwrap().as_str()
}

#[test]
fn a_device_is_matched_only_by_the_group_whose_pattern_it_matches() {
    // Same key in both groups: without patterns the first group in store order would win.
    let svc = service();
    put_group(&svc, "line-a", Some("line-a-*")).unwrap();
    put_group(&svc, "line-b", Some("LINE-B-*")).unwrap();
    assert_eq!(group_of(&register(&svc, "line-b-0001").unwrap()), "line-b");
    assert_eq!(group_of(&register(&svc, "Line-A-0001").unwrap()), "line-a");
    // A device no pattern admits is refused, although its key derives from both groups' key.
    assert!(matches!(
        register(&svc, "line-c-0001"),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn a_device_matching_no_pattern_still_tries_the_groups_without_one() {
    let svc = service();
    put_group(&svc, "a-patterned", Some("sensor-??")).unwrap();
    put_group(&svc, "b-open", None).unwrap();
    assert_eq!(
        group_of(&register(&svc, "sensor-01").unwrap()),
        "a-patterned"
    );
    assert_eq!(group_of(&register(&svc, "sensor-001").unwrap()), "b-open");
    assert_eq!(group_of(&register(&svc, "thermostat-9").unwrap()), "b-open");
}

#[test]
fn a_pattern_set_later_applies_to_re_registrations_at_once() {
    let svc = service();
    put_group(&svc, "fleet", None).unwrap();
    assert_eq!(group_of(&register(&svc, "truck-7").unwrap()), "fleet");
    // The device's record remembers the group; the group's new pattern excludes the device.
    put_group(&svc, "fleet", Some("car-*")).unwrap();
    assert!(matches!(
        register(&svc, "truck-7"),
        Err(Rejection::Unauthorized(_))
    ));
    put_group(&svc, "fleet", Some("truck-*")).unwrap();
    assert_eq!(group_of(&register(&svc, "truck-7").unwrap()), "fleet");
}

#[test]
fn a_bad_pattern_is_refused_on_write_with_the_reason() {
    let svc = service();
    for (bad, why) in [
        ("line a*", "contains ' '"),
        ("line/*", "contains '/'"),
        ("", "is empty"),
        ("line.", "ends with '.'"),
    ] {
        match put_group(&svc, "g", Some(bad)) {
            Err(Rejection::BadRequest(m)) => {
                assert!(
                    m.contains("registrationIdPattern") && m.contains(why),
                    "{m}"
                );
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    let body = json!({"attestation":{"type":"symmetricKey"},"registrationIdPattern":7});
    assert!(matches!(
        with_admin(&svc, |a| run(a.put::<EnrollmentGroup>("g", body, None))),
        Err(Rejection::BadRequest(_))
    ));
    assert!(matches!(
        with_admin(&svc, |a| run(a.get::<EnrollmentGroup>("g"))),
        Err(Rejection::GroupNotFound)
    ));
}

async fn send(app: &axum::Router, method: &str, uri: &str, body: String) -> (StatusCode, Value) {
    let tok = service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER);
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .header("authorization", tok)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_pattern_round_trips_through_the_rest_api_and_is_absent_unless_set() {
    let app = dps_server::router(service());
    let put = |id: &str, extra: Value| {
        let mut body = json!({"enrollmentGroupId": id, "attestation":{"type":"symmetricKey"}});
        if let Value::Object(m) = extra {
            body.as_object_mut().unwrap().extend(m);
        }
        (format!("/enrollmentGroups/{id}{SVC}"), body.to_string())
    };

    let (uri, body) = put("with", json!({"registrationIdPattern": "Plant-3-*"}));
    let (status, j) = send(&app, "PUT", &uri, body).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["registrationIdPattern"], "Plant-3-*");
    let (status, j) = send(&app, "GET", &uri, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["registrationIdPattern"], "Plant-3-*");

    let (uri, body) = put("without", json!({}));
    assert_eq!(send(&app, "PUT", &uri, body).await.0, StatusCode::OK);
    let (_, j) = send(&app, "GET", &uri, String::new()).await;
    assert_eq!(j["enrollmentGroupId"], "without");
    assert!(j.get("registrationIdPattern").is_none(), "{j}");

    let q = format!("/enrollmentGroups/query{SVC}");
    let (status, j) = send(&app, "POST", &q, r#"{"query":"*"}"#.into()).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    let patterns: Vec<&Value> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.get("registrationIdPattern").unwrap_or(&Value::Null))
        .collect();
    assert_eq!(patterns, [&json!("Plant-3-*"), &Value::Null]);

    // A bad pattern: 400 with Azure's error body, and nothing written.
    let (uri, body) = put("bad", json!({"registrationIdPattern": "plant 3*"}));
    let (status, j) = send(&app, "PUT", &uri, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{j}");
    assert_eq!(j["errorCode"], 400_004, "{j}");
    let msg = j["message"].as_str().unwrap_or_default();
    assert!(msg.contains("registrationIdPattern contains ' '"), "{j}");
    assert_eq!(
        send(&app, "GET", &uri, String::new()).await.0,
        StatusCode::NOT_FOUND
    );
}
