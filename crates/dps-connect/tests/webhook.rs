//! The webhook client against a local HTTPS server on 127.0.0.1 with its own CA: the request
//! it sends, and how each kind of answer maps to Azure's outcomes (success, 401, other 4xx,
//! 5xx and 429 retried on the schedule, timeouts, malformed answers, TLS trust).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_connect::webhook::{WebhookAllocator, WebhookConfig};
use dps_service::{
    CustomAllocationError, CustomAllocationRequest, CustomAllocator, DeviceRuntimeContext,
};
use dps_types::CustomAllocationDefinition;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One scripted answer: status, body, delay before answering.
type Answer = (u16, String, Duration);

/// An HTTPS server answering from a script (the last answer repeats) and recording requests.
struct Server {
    url: String,
    ca_pem: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(script: Vec<Answer>) -> Server {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (status, body, delay) = script[n.min(script.len() - 1)].clone();
            n += 1;
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let (head, req_body) = read_request(&mut s).await;
                seen.lock().unwrap().push((
                    head,
                    serde_json::from_slice(&req_body).unwrap_or(Value::Null),
                ));
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Server {
        url: format!("https://127.0.0.1:{port}/api/allocate?code=s3cret"),
        ca_pem: ca_cert.pem(),
        requests,
        task,
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&buf).into_owned(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return (head, buf[end + 4..].to_vec());
        }
    }
}

fn request(url: &str) -> CustomAllocationRequest {
    let mut ctx = DeviceRuntimeContext::new("dev-1");
    ctx.payload = Some(json!({"fw": "1.0"}));
    let mut r = CustomAllocationRequest::new(ctx, vec!["hub-a.example.net".into()]);
    r.definition = Some(CustomAllocationDefinition {
        webhook_url: url.into(),
        api_version: "2021-10-01".into(),
    });
    r
}

/// Fast retries for tests: 20 ms, then 10 ms more each time.
fn client(s: &Server, retries: u32, timeout_ms: u64) -> WebhookAllocator {
    let mut c = WebhookConfig::default()
        .with_extra_roots_pem(s.ca_pem.as_bytes())
        .unwrap();
    c.retries = retries;
    c.retry_initial = Duration::from_millis(20);
    c.retry_increment = Duration::from_millis(10);
    c.timeout = Duration::from_millis(timeout_ms);
    c.deadline = Duration::from_secs(20);
    WebhookAllocator::new(c).unwrap()
}

const OK: &str = r#"{"iotHubHostName":"hub-a.example.net","initialTwin":{"properties":{"desired":{"state":"ready"}},"tags":{"deviceType":"toaster"}},"payload":{"property1":"value1"}}"#;

#[tokio::test]
async fn a_200_answer_is_parsed_and_the_request_is_azures() {
    let s = server(vec![(200, OK.into(), Duration::ZERO)]).await;
    let r = client(&s, 0, 5_000)
        .allocate(&request(&s.url))
        .await
        .unwrap();
    assert_eq!(r.iot_hub_host_name.as_deref(), Some("hub-a.example.net"));
    assert_eq!(r.payload, Some(json!({"property1": "value1"})));
    let twin = r.initial_twin.unwrap();
    assert_eq!(twin.tags.unwrap()["deviceType"], "toaster");
    let reqs = s.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let (head, body) = &reqs[0];
    assert!(
        head.starts_with("post /api/allocate?code=s3cret http/1.1"),
        "{head}"
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        body,
        &json!({"deviceRuntimeContext": {"registrationId": "dev-1", "payload": {"fw": "1.0"}},
                "linkedHubs": ["hub-a.example.net"]})
    );
}

#[tokio::test]
async fn a_401_is_unauthorized_and_other_4xx_fail_without_retry() {
    for (status, unauthorized) in [(401, true), (400, false), (404, false), (302, false)] {
        let s = server(vec![(status, "{}".into(), Duration::ZERO)]).await;
        let e = client(&s, 3, 5_000)
            .allocate(&request(&s.url))
            .await
            .unwrap_err();
        assert_eq!(
            matches!(e, CustomAllocationError::Unauthorized(_)),
            unauthorized,
            "{status}: {e}"
        );
        assert_eq!(e.error_code(), if unauthorized { 400_209 } else { 400_207 });
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert_eq!(s.requests.lock().unwrap().len(), 1, "{status} was retried");
    }
}

#[tokio::test]
async fn server_errors_and_429_are_retried_on_the_schedule_until_an_answer() {
    let s = server(vec![
        (503, "{}".into(), Duration::ZERO),
        (429, "{}".into(), Duration::ZERO),
        (500, "{}".into(), Duration::ZERO),
        (200, OK.into(), Duration::ZERO),
    ])
    .await;
    let t = Instant::now();
    let r = client(&s, 10, 5_000)
        .allocate(&request(&s.url))
        .await
        .unwrap();
    assert_eq!(r.iot_hub_host_name.as_deref(), Some("hub-a.example.net"));
    assert_eq!(s.requests.lock().unwrap().len(), 4);
    // Waits of 20, 30 and 40 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );

    // Retries run out: 1 + 2 attempts, then 400207.
    let s = server(vec![(502, "{}".into(), Duration::ZERO)]).await;
    let e = client(&s, 2, 5_000)
        .allocate(&request(&s.url))
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), 400_207);
    assert!(
        e.to_string().contains("502") && e.to_string().contains("3 attempts"),
        "{e}"
    );
    assert_eq!(s.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_is_retried() {
    let s = server(vec![
        (200, OK.into(), Duration::from_secs(5)),
        (200, OK.into(), Duration::ZERO),
    ])
    .await;
    let t = Instant::now();
    let r = client(&s, 1, 300).allocate(&request(&s.url)).await.unwrap();
    assert!(r.iot_hub_host_name.is_some());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let s = server(vec![(200, OK.into(), Duration::from_secs(5))]).await;
    let e = client(&s, 0, 300)
        .allocate(&request(&s.url))
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), 400_207);
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[tokio::test]
async fn malformed_answers_untrusted_servers_and_plain_http_fail() {
    for body in ["not json", r#"{"iotHubHostName": 7}"#, "[]"] {
        let s = server(vec![(200, body.into(), Duration::ZERO)]).await;
        let e = client(&s, 3, 5_000)
            .allocate(&request(&s.url))
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), 400_207, "{body}");
        assert!(e.to_string().contains("AllocationResponse"), "{e}");
        assert_eq!(s.requests.lock().unwrap().len(), 1);
    }
    // An answer without a hub is still an answer (the service turns it into 400208).
    let s = server(vec![(200, "{}".into(), Duration::ZERO)]).await;
    let r = client(&s, 0, 5_000)
        .allocate(&request(&s.url))
        .await
        .unwrap();
    assert!(r.iot_hub_host_name.is_none());
    // Without the CA, the server is not trusted: no request reaches it.
    let mut c = WebhookConfig::default();
    c.retries = 0;
    let e = WebhookAllocator::new(c.clone())
        .unwrap()
        .allocate(&request(&s.url))
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), 400_207);
    assert_eq!(s.requests.lock().unwrap().len(), 1);
    let plain = request(&s.url.replace("https://", "http://"));
    let e = WebhookAllocator::new(c)
        .unwrap()
        .allocate(&plain)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not https"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[tokio::test]
async fn the_overall_budget_stops_retries_and_cuts_the_last_attempt() {
    let s = server(vec![(503, "{}".into(), Duration::ZERO)]).await;
    let mut c = WebhookConfig::default()
        .with_extra_roots_pem(s.ca_pem.as_bytes())
        .unwrap();
    c.retry_initial = Duration::from_millis(50);
    c.retry_increment = Duration::from_millis(50);
    c.deadline = Duration::from_millis(400);
    let t = Instant::now();
    let e = WebhookAllocator::new(c.clone())
        .unwrap()
        .allocate(&request(&s.url))
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), 400_207);
    // Attempts at about 0, 50, 150 and 300 ms; the next wait would end past 400 ms.
    let n = s.requests.lock().unwrap().len();
    assert!((2..=4).contains(&n), "{n} attempts");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A webhook slower than the whole budget is cut at the budget, not at the attempt timeout.
    let s = server(vec![(200, OK.into(), Duration::from_secs(10))]).await;
    let mut c = c.with_extra_roots_pem(s.ca_pem.as_bytes()).unwrap();
    c.timeout = Duration::from_secs(30);
    let t = Instant::now();
    let e = WebhookAllocator::new(c)
        .unwrap()
        .allocate(&request(&s.url))
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), 400_207);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
