//! The HTTPS transports against a tiny in-test HTTPS server with a private CA: what goes on
//! the wire, how answers are read, and how TLS failures are reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dps_attest::sas::{SasToken, SigningKey, verify_device, verify_service};
use dps_client::device::flow::FlowError;
use dps_client::{Credential, Error, RegisterOptions, ServiceClient, TrustedCa, register_https};
use dps_types::{Etag, IdScope, IndividualEnrollment, RegistrationId};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DEVICE_KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
const SERVICE_KEY: &str = "c2VydmljZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";

/// A request as the server saw it (header names lower-cased).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost that it signed.
struct Pki {
    ca_pem: String,
    server: rustls::ServerConfig,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dps-client test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server,
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// Serves HTTPS on 127.0.0.1:0, one request per connection, recording every request.
async fn serve(
    server: rustls::ServerConfig,
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, log) = (acceptor.clone(), handler.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(req) = read_request(&mut tls).await else {
                    return;
                };
                let r = handler(&req);
                log.lock().unwrap().push(req);
                let mut out = format!(
                    "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    r.status,
                    r.body.len()
                );
                if !r.body.is_empty() {
                    out.push_str("content-type: application/json; charset=utf-8\r\n");
                }
                for (n, v) in &r.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&r.body);
                let _ = tls.write_all(out.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (endpoint, seen)
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Seen> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn register_options(endpoint: &str, ca: Option<TrustedCa>) -> RegisterOptions {
    let mut opts = RegisterOptions::new(
        endpoint,
        IdScope::new("0ne00000001").unwrap(),
        RegistrationId::new("dev-1").unwrap(),
        Credential::SymmetricKey(DEVICE_KEY.into()),
    );
    opts.ca = ca;
    // Keep the test fast: honour a Retry-After of 0.
    opts.flow.min_retry_after = Duration::ZERO;
    opts
}

const ASSIGNED: &str = r#"{"operationId":"5.abc.def","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment","etag":"\"e1\""}}"#;

#[tokio::test]
async fn device_registers_over_https_with_a_private_ca() {
    let pki = pki();
    let (endpoint, seen) = serve(pki.server, |req| match req.method.as_str() {
        "PUT" => Reply {
            status: 202,
            headers: vec![("retry-after", "0".into())],
            body: r#"{"operationId":"5.abc.def","status":"assigning"}"#.into(),
        },
        _ if seen_polls(req) => reply(200, ASSIGNED),
        _ => reply(404, ""),
    })
    .await;
    let ca = TrustedCa::Pem(pki.ca_pem.into_bytes());
    let mut opts = register_options(&endpoint, Some(ca));
    opts.payload = Some(serde_json::json!({"modelId": "dtmi:com:example:Thermostat;1"}));
    let result = register_https(opts).await.unwrap();
    assert_eq!(
        result.state.assigned_hub.as_ref().unwrap().as_str(),
        "hub-a.example.net"
    );
    assert_eq!(result.state.device_id.as_deref(), Some("dev-1"));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (put, get) = (&seen[0], &seen[1]);
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.target,
        "/0ne00000001/registrations/dev-1/register?api-version=2021-06-01"
    );
    assert_eq!(
        put.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        put.body,
        br#"{"registrationId":"dev-1","payload":{"modelId":"dtmi:com:example:Thermostat;1"}}"#
    );
    assert_eq!(get.method, "GET");
    assert_eq!(
        get.target,
        "/0ne00000001/registrations/dev-1/operations/5.abc.def?api-version=2021-06-01"
    );
    let key = SigningKey::from_base64(DEVICE_KEY).unwrap();
    for req in [put, get] {
        let token = SasToken::parse(req.header("authorization").unwrap()).unwrap();
        assert_eq!(token.key_name(), Some("registration"));
        let now = token.expiry() - 3600;
        assert_eq!(
            verify_device(&token, "0ne00000001", "dev-1", &[&key], now),
            Ok(0)
        );
    }
}

fn seen_polls(req: &Seen) -> bool {
    req.method == "GET" && req.target.contains("/operations/")
}

#[tokio::test]
async fn device_rejection_carries_the_azure_error() {
    let pki = pki();
    let (endpoint, _) = serve(pki.server, |_| {
        reply(
            401,
            r#"{"errorCode":401002,"trackingId":"t-9","message":"Unauthorized","timestampUtc":"2020-04-10T05:24:22.4718526Z"}"#,
        )
    })
    .await;
    let ca = TrustedCa::Pem(pki.ca_pem.into_bytes());
    let err = register_https(register_options(&endpoint, Some(ca)))
        .await
        .unwrap_err();
    let Error::Registration(FlowError::Rejected {
        status,
        error_code,
        message,
        tracking_id,
    }) = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (
            *status,
            *error_code,
            message.as_str(),
            tracking_id.as_deref()
        ),
        (401, Some(401_002), "Unauthorized", Some("t-9"))
    );
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_untrusted() {
    let server = pki();
    let other = pki();
    let (endpoint, seen) = serve(server.server, |_| reply(200, ASSIGNED)).await;
    let err = register_https(register_options(
        &endpoint,
        Some(TrustedCa::Pem(other.ca_pem.into_bytes())),
    ))
    .await
    .unwrap_err();
    assert!(err.is_untrusted_server(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the server certificate of {endpoint} is not trusted")
    );
    // Without a CA option the platform roots do not know the test CA either.
    let err = register_https(register_options(&endpoint, None))
        .await
        .unwrap_err();
    assert!(err.is_untrusted_server(), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let started = std::time::Instant::now();
    let err = register_https(register_options(&endpoint, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn service_client_requests_and_errors() {
    let pki = pki();
    let (endpoint, seen) = serve(pki.server, |req| {
        let path = req.target.split('?').next().unwrap_or_default();
        match (req.method.as_str(), path) {
            ("PUT", "/enrollments/dev-1") => {
                let mut e: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                e["etag"] = "\"e2\"".into();
                e["attestation"]["symmetricKey"] = serde_json::json!({
                    "primaryKey": DEVICE_KEY, "secondaryKey": DEVICE_KEY});
                reply(200, &e.to_string())
            }
            ("GET", "/enrollments/missing") => reply(
                404,
                r#"{"errorCode":404201,"trackingId":"t-1","message":"Enrollment not found","timestampUtc":"2023-01-17T01:23:45.1234567Z"}"#,
            ),
            ("DELETE", "/enrollments/dev-1") => reply(204, ""),
            ("POST", "/enrollments/dev-1/attestationmechanism") => reply(
                200,
                &format!(r#"{{"type":"symmetricKey","symmetricKey":{{"primaryKey":"{DEVICE_KEY}"}}}}"#),
            ),
            ("POST", "/enrollments/query") => match req.header("x-ms-continuation") {
                None => Reply {
                    status: 200,
                    headers: vec![
                        ("x-ms-continuation", "page-2".into()),
                        ("x-ms-item-type", "Enrollment".into()),
                    ],
                    body: r#"[{"registrationId":"a","attestation":{"type":"symmetricKey"}}]"#.into(),
                },
                Some(_) => reply(
                    200,
                    r#"[{"registrationId":"b","attestation":{"type":"symmetricKey"}}]"#,
                ),
            },
            ("GET", "/metering/operations") => reply(
                200,
                r#"{"idScope":"0ne00000001","operations":{"register":2},"total":2}"#,
            ),
            _ => reply(405, "nope"),
        }
    })
    .await;
    let port = endpoint.rsplit(':').next().unwrap();
    let client = ServiceClient::from_connection_string(
        &format!(
            "HostName=localhost:{port};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={SERVICE_KEY}"
        ),
        Some(TrustedCa::Pem(pki.ca_pem.into_bytes())),
    )
    .unwrap();

    let enrollment: IndividualEnrollment = serde_json::from_str(
        r#"{"registrationId":"dev-1","attestation":{"type":"symmetricKey"},"iotHubs":["hub-a.example.net"]}"#,
    )
    .unwrap();
    let created = client.create_enrollment(&enrollment).await.unwrap();
    assert_eq!(created.etag, Some(Etag::new("e2")));
    let updated = client.update_enrollment(&created).await.unwrap();
    assert_eq!(updated.registration_id.as_str(), "dev-1");
    client.update_enrollment(&enrollment).await.unwrap();

    let err = client
        .get_enrollment(&RegistrationId::new("missing").unwrap())
        .await
        .unwrap_err();
    let Error::Service {
        status,
        error_code,
        message,
        tracking_id,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (
            *status,
            *error_code,
            message.as_str(),
            tracking_id.as_deref()
        ),
        (404, Some(404_201), "Enrollment not found", Some("t-1"))
    );

    let id = RegistrationId::new("dev-1").unwrap();
    client.delete_enrollment(&id, None).await.unwrap();
    client
        .delete_enrollment(&id, Some(&Etag::new("e2")))
        .await
        .unwrap();
    let att = client.enrollment_attestation(&id).await.unwrap();
    assert_eq!(
        att.symmetric_key()
            .unwrap()
            .primary_key
            .as_ref()
            .unwrap()
            .expose_base64(),
        DEVICE_KEY
    );
    let (page, next) = client.query_enrollments(Some(1), None).await.unwrap();
    assert_eq!((page.len(), next.as_deref()), (1, Some("page-2")));
    let all = client.list_enrollments().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.registration_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let ops = client.operations().await.unwrap();
    assert_eq!(ops["total"], 2);

    let seen = seen.lock().unwrap().clone();
    let summary: Vec<(String, String, Option<&str>)> = seen
        .iter()
        .map(|r| (r.method.clone(), r.target.clone(), r.header("if-match")))
        .collect();
    let q = "?api-version=2021-10-01";
    let want: Vec<(String, String, Option<&str>)> = [
        ("PUT", "/enrollments/dev-1", None),
        ("PUT", "/enrollments/dev-1", Some("\"e2\"")),
        ("PUT", "/enrollments/dev-1", Some("*")),
        ("GET", "/enrollments/missing", None),
        ("DELETE", "/enrollments/dev-1", None),
        ("DELETE", "/enrollments/dev-1", Some("\"e2\"")),
        ("POST", "/enrollments/dev-1/attestationmechanism", None),
        ("POST", "/enrollments/query", None),
        ("POST", "/enrollments/query", None),
        ("POST", "/enrollments/query", None),
        ("GET", "/metering/operations", None),
    ]
    .into_iter()
    .map(|(m, p, i)| (m.to_owned(), format!("{p}{q}"), i))
    .collect();
    assert_eq!(summary, want);

    // Bodies and headers.
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["iotHubs"][0], "hub-a.example.net");
    assert!(seen[6].body.is_empty() && seen[6].header("content-type").is_none());
    assert_eq!(seen[7].body, br#"{"query":"SELECT *"}"#);
    assert_eq!(seen[7].header("x-ms-max-item-count"), Some("1"));
    assert_eq!(seen[7].header("x-ms-continuation"), None);
    assert_eq!(seen[9].header("x-ms-continuation"), Some("page-2"));
    let key = SigningKey::from_base64(SERVICE_KEY).unwrap();
    for req in &seen {
        let token = SasToken::parse(req.header("authorization").unwrap()).unwrap();
        assert_eq!(token.audience().unwrap(), "localhost");
        assert_eq!(token.key_name(), Some("provisioningserviceowner"));
        let now = token.expiry() - 3600;
        assert_eq!(verify_service(&token, "localhost", &[&key], now), Ok(0));
    }
}
