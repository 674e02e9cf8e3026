//! Both REST APIs through the real router (no TLS, no socket): success shapes that the official
//! SDKs rely on, and malformed input of every kind, which must get a 4xx Azure error body and
//! never a panic.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use dps_testkit::*;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const LATER: u64 = 4_000_000_000;
const DEV: &str = "?api-version=2019-03-31";
const SVC: &str = "?api-version=2021-10-01";

fn app() -> Router {
    let (svc, _) = fixture_service(FakeClock::at_unix(1_800_000_000));
    dps_server::router(svc)
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

fn owner() -> String {
    service_token(SERVICE_HOST, OWNER, OWNER_KEY, LATER)
}

const CT: (&str, &str) = ("content-type", "application/json; charset=utf-8");

/// Every refusal carries Azure's error body, and errorCode / 1000 equals the status.
fn assert_azure_error(r: &Resp, status: u16, code: u32) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    assert_eq!(j["errorCode"], code, "{j}");
    assert!(
        j["trackingId"].as_str().is_some_and(|t| !t.is_empty()),
        "{j}"
    );
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    assert!(
        j["timestampUtc"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{j}"
    );
    assert_eq!(r.header("x-ms-error-code"), Some(code.to_string().as_str()));
    assert_eq!(r.header("x-ms-request-id"), j["trackingId"].as_str());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .contains("application/json")
    );
}

async fn enroll_dev1(app: &Router) {
    let tok = owner();
    let body = json!({"registrationId":"dev-1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":DEV1_KEY}}});
    let r = send(
        app,
        "PUT",
        &format!("/enrollments/dev-1{SVC}"),
        &[("authorization", &tok), CT],
        body.to_string(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn device_register_and_poll_have_the_sdk_shapes() {
    let app = app();
    enroll_dev1(&app).await;
    let tok = device_token(SCOPE, "dev-1", DEV1_KEY, LATER);
    let auth = [("authorization", tok.as_str()), CT];
    let r = send(
        &app,
        "PUT",
        &format!("/{SCOPE}/registrations/dev-1/register{DEV}"),
        &auth,
        r#"{"registrationId":"dev-1","payload":{"modelId":"dtmi:example:thermostat;1","custom":42}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let j = r.json();
    assert_eq!(j["status"], "assigning");
    let op = j["operationId"].as_str().unwrap().to_owned();
    // The Node SDK polls with a GET carrying a "{}" body.
    let r = send(
        &app,
        "GET",
        &format!("/{SCOPE}/registrations/dev-1/operations/{op}{DEV}"),
        &auth,
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["status"], "assigned");
    assert_eq!(j["operationId"], op.as_str());
    let st = &j["registrationState"];
    assert_eq!(st["registrationId"], "dev-1");
    assert_eq!(st["deviceId"], "dev-1");
    assert_eq!(st["substatus"], "initialAssignment");
    assert!(st["assignedHub"].as_str().unwrap().starts_with("hub-"));
    for t in ["createdDateTimeUtc", "lastUpdatedDateTimeUtc"] {
        let v = st[t].as_str().unwrap();
        assert_eq!(v.len(), "2022-08-31T22:02:50.5163352Z".len(), "{t}: {v}");
    }
    assert!(st["etag"].as_str().is_some());
    // The device's payload comes back to it (no custom allocation rewrote it).
    assert_eq!(
        st["payload"],
        json!({"modelId":"dtmi:example:thermostat;1","custom":42})
    );
    // Python sends `{"payload": null, ...}`; the registration status lookup answers the record.
    let r = send(
        &app,
        "POST",
        &format!("/{SCOPE}/registrations/dev-1{DEV}"),
        &auth,
        r#"{"payload": null, "registrationId": "dev-1"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "assigned");
    // Every api-version of today's SDKs is accepted.
    for v in [
        "2017-11-15",
        "2018-11-01",
        "2021-06-01",
        "2025-07-01-preview",
    ] {
        let r = send(
            &app,
            "PUT",
            &format!("/{SCOPE}/registrations/dev-1/register?api-version={v}"),
            &auth,
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{v}");
    }
}

#[tokio::test]
async fn device_api_rejects_malformed_input() {
    let app = app();
    enroll_dev1(&app).await;
    let tok = device_token(SCOPE, "dev-1", DEV1_KEY, LATER);
    let auth = [("authorization", tok.as_str()), CT];
    let reg = format!("/{SCOPE}/registrations/dev-1/register");
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}{DEV}"), &auth, "{not json").await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}{DEV}"), &auth, "[1]").await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("{reg}{DEV}"),
            &auth,
            vec![0xff, 0xfe, 0x00],
        )
        .await,
        400,
        400_004,
    );
    let big = format!(
        r#"{{"registrationId":"dev-1","payload":"{}"}}"#,
        "x".repeat(97 * 1024)
    );
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}{DEV}"), &auth, big).await,
        413,
        413_001,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("{reg}?api-version=1999-01-01"),
            &auth,
            "{}",
        )
        .await,
        400,
        400_001,
    );
    assert_azure_error(&send(&app, "PUT", &reg, &auth, "{}").await, 400, 400_001);
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}?api-version=%zz"), &auth, "{}").await,
        400,
        400_001,
    );
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}?api-version=%ff"), &auth, "{}").await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("/{SCOPE}/registrations/%ff%fe/register{DEV}"),
            &auth,
            "{}",
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("{reg}{DEV}"),
            &auth,
            r#"{"registrationId":"dev-2"}"#,
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(&app, "PUT", &format!("{reg}{DEV}"), &[CT], "{}").await,
        401,
        401_002,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("{reg}{DEV}"),
            &[("authorization", "SharedAccessSignature sr=&&"), CT],
            "{}",
        )
        .await,
        401,
        401_002,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("{reg}{DEV}"),
            &[
                ("authorization", tok.as_str()),
                ("content-type", "text/plain"),
            ],
            "hi",
        )
        .await,
        415,
        415_001,
    );
    assert_azure_error(
        &send(&app, "GET", &format!("{reg}{DEV}"), &auth, "").await,
        405,
        405_001,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("/0ne99999999/registrations/dev-1/register{DEV}"),
            &auth,
            "{}",
        )
        .await,
        404,
        404_001,
    );
    assert_azure_error(
        &send(
            &app,
            "GET",
            &format!("/{SCOPE}/registrations/dev-1/operations/1.nope{DEV}"),
            &auth,
            "",
        )
        .await,
        404,
        404_203,
    );
    assert_azure_error(
        &send(&app, "GET", "/nothing/here/at/all/today", &auth, "").await,
        404,
        404_000,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("/{SCOPE}/registrations/bad%20id/register{DEV}"),
            &auth,
            "{}",
        )
        .await,
        400,
        400_004,
    );
}

#[tokio::test]
async fn service_api_crud_query_and_paging() {
    let app = app();
    let tok = owner();
    let auth = [("authorization", tok.as_str()), CT];
    for i in 0..5 {
        let body = json!({"attestation":{"type":"symmetricKey"}});
        let r = send(
            &app,
            "PUT",
            &format!("/enrollments/e-{i}{SVC}"),
            &auth,
            body.to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let j = r.json();
        assert_eq!(j["registrationId"], format!("e-{i}"));
        assert_eq!(
            j["attestation"]["symmetricKey"]["primaryKey"]
                .as_str()
                .unwrap()
                .len(),
            88
        );
        assert!(j["etag"].as_str().unwrap().starts_with('"'));
    }
    // Paging: 2 + 2 + 1, continuation absent on the last page.
    let mut cont: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut h = vec![
            ("authorization", tok.as_str()),
            CT,
            ("x-ms-max-item-count", "2"),
        ];
        if let Some(c) = cont.as_deref() {
            h.push(("x-ms-continuation", c));
        }
        let r = send(
            &app,
            "POST",
            &format!("/enrollments/query{SVC}"),
            &h,
            r#"{"query":"*"}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-ms-item-type"), Some("Enrollment"));
        for e in r.json().as_array().unwrap() {
            assert!(
                e["attestation"]["symmetricKey"].get("primaryKey").is_none(),
                "query leaked keys"
            );
            seen.push(e["registrationId"].as_str().unwrap().to_owned());
        }
        cont = r.header("x-ms-continuation").map(str::to_owned);
        if cont.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["e-0", "e-1", "e-2", "e-3", "e-4"]);
    // Node's lower-case path for groups.
    let body = json!({"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"}});
    assert_eq!(
        send(
            &app,
            "PUT",
            &format!("/enrollmentGroups/g1{SVC}"),
            &auth,
            body.to_string()
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = send(
        &app,
        "POST",
        &format!("/enrollmentgroups/g1/attestationmechanism{SVC}"),
        &[("authorization", tok.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["type"], "symmetricKey");
    assert!(r.json()["symmetricKey"]["primaryKey"].is_string());
    // Bulk with more than Azure's 10 items.
    let items: Vec<_> = (0..50)
        .map(|i| json!({"registrationId": format!("b-{i}"), "attestation":{"type":"symmetricKey"}}))
        .collect();
    let r = send(
        &app,
        "POST",
        &format!("/enrollments{SVC}"),
        &auth,
        json!({"mode":"create","enrollments":items}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"isSuccessful": true, "errors": []}));
    let r = send(&app, "POST", &format!("/enrollments{SVC}"), &auth, json!({"mode":"create","enrollments":[{"registrationId":"b-1","attestation":{"type":"symmetricKey"}}]}).to_string()).await;
    assert_eq!(r.json()["isSuccessful"], false);
    assert_eq!(r.json()["errors"][0]["registrationId"], "b-1");
    assert_eq!(r.json()["errors"][0]["errorCode"], 409_201);
    // Delete, then 404.
    let r = send(
        &app,
        "DELETE",
        &format!("/enrollments/e-0{SVC}"),
        &[("authorization", tok.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_azure_error(
        &send(
            &app,
            "GET",
            &format!("/enrollments/e-0{SVC}"),
            &[("authorization", tok.as_str())],
            "",
        )
        .await,
        404,
        404_201,
    );
    assert_azure_error(
        &send(
            &app,
            "GET",
            &format!("/enrollmentGroups/nope{SVC}"),
            &[("authorization", tok.as_str())],
            "",
        )
        .await,
        404,
        404_204,
    );
    assert_azure_error(
        &send(
            &app,
            "GET",
            &format!("/registrations/nope{SVC}"),
            &[("authorization", tok.as_str())],
            "",
        )
        .await,
        404,
        404_202,
    );
    // Metering is readable and counted every write.
    let r = send(
        &app,
        "GET",
        &format!("/metering/operations{SVC}"),
        &[("authorization", tok.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["operations"]["enrollmentWrite"], 5 + 1 + 50 + 1);
}

#[tokio::test]
async fn service_api_rejects_malformed_input() {
    let app = app();
    let tok = owner();
    let auth = [("authorization", tok.as_str()), CT];
    let e = format!("/enrollments/e1{SVC}");
    assert_azure_error(&send(&app, "PUT", &e, &auth, "{").await, 400, 400_004);
    assert_azure_error(&send(&app, "PUT", &e, &auth, "").await, 400, 400_004);
    assert_azure_error(&send(&app, "PUT", &e, &auth, "[]").await, 400, 400_004);
    assert_azure_error(
        &send(&app, "PUT", &e, &auth, r#"{"attestation":{"type":"none"}}"#).await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &e,
            &auth,
            r#"{"attestation":{"type":"symmetricKey"},"allocationPolicy":"custom"}"#,
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &e,
            &auth,
            r#"{"attestation":{"type":"symmetricKey"},"registrationId":5}"#,
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(&app, "PUT", "/enrollments/e1", &auth, "{}").await,
        400,
        400_001,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            "/enrollments/e1?api-version=2099-01-01",
            &auth,
            "{}",
        )
        .await,
        400,
        400_001,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &e,
            &[CT],
            r#"{"attestation":{"type":"symmetricKey"}}"#,
        )
        .await,
        401,
        401_002,
    );
    let expired = service_token(SERVICE_HOST, OWNER, OWNER_KEY, 1_000);
    assert_azure_error(
        &send(&app, "GET", &e, &[("authorization", expired.as_str())], "").await,
        401,
        401_002,
    );
    let reader = service_token(SERVICE_HOST, READER, READER_KEY, LATER);
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &e,
            &[("authorization", reader.as_str()), CT],
            r#"{"attestation":{"type":"symmetricKey"}}"#,
        )
        .await,
        401,
        401_003,
    );
    assert_azure_error(&send(&app, "POST", &e, &auth, "{}").await, 405, 405_001);
    let q = format!("/enrollments/query{SVC}");
    assert_azure_error(
        &send(
            &app,
            "POST",
            &q,
            &[
                ("authorization", tok.as_str()),
                CT,
                ("x-ms-max-item-count", "lots"),
            ],
            "{}",
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "POST",
            &q,
            &[
                ("authorization", tok.as_str()),
                CT,
                ("x-ms-continuation", "%%%"),
            ],
            "{}",
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "POST",
            &q,
            &auth,
            r#"{"query":"SELECT id FROM enrollments WHERE 1=1"}"#,
        )
        .await,
        400,
        400_004,
    );
    let b = format!("/enrollments{SVC}");
    assert_azure_error(
        &send(
            &app,
            "POST",
            &b,
            &auth,
            r#"{"mode":"explode","enrollments":[]}"#,
        )
        .await,
        400,
        400_004,
    );
    let too_many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    assert_azure_error(
        &send(
            &app,
            "POST",
            &b,
            &auth,
            json!({"mode":"create","enrollments":too_many}).to_string(),
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &format!("/enrollments/a%2Fb{SVC}"),
            &auth,
            r#"{"attestation":{"type":"symmetricKey"}}"#,
        )
        .await,
        400,
        400_004,
    );
    assert_azure_error(
        &send(
            &app,
            "PUT",
            &e,
            &auth,
            format!(
                r#"{{"attestation":{{"type":"symmetricKey"}},"x":"{}"}}"#,
                "y".repeat(100_000)
            ),
        )
        .await,
        413,
        413_001,
    );
}
