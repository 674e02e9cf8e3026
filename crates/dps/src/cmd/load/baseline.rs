//! The same-run baseline: a minimal HTTPS server on the stack dpsd uses (hyper-util's
//! HTTP/1.1 + h2 server over tokio-rustls, aws-lc-rs, the TLS settings of
//! `dps_server::tls::server_config`: TLS 1.2 and 1.3, ALPN h2 and http/1.1, an ECDSA P-256
//! server certificate issued by a CA, as dpsd's development certificate, a client certificate
//! requested but not required and its handshake signature checked) that answers every
//! request with one fixed JSON body: a registration that is already `assigned`. X.509 devices
//! thus present their certificates to it as to dpsd; checking their chain against an
//! enrollment is dpsd's work, not the stack's.
//!
//! Driven by the same client code and connection mode as the real run, one baseline
//! "registration" is exactly one request (plus, per device, one handshake), so the real run's
//! rate divided by the baseline's says how close dpsd comes to what this machine's TLS and
//! HTTP stack can do at all.
//!
//! The server runs on its own tokio runtime (its own threads, as dpsd has its own process)
//! and stops when [`Baseline`] is stopped or dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The body of every answer: an assigned registration, so a device's flow ends after one
/// request.
pub const BODY: &str = r#"{"operationId":"baseline","status":"assigned","registrationState":{"registrationId":"baseline","createdDateTimeUtc":"2026-01-01T00:00:00Z","assignedHub":"hub.example.net","deviceId":"baseline","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-01-01T00:00:00Z","etag":"\"baseline\""}}"#;

/// A running baseline server.
pub struct Baseline {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// The PEM of the CA that issued its certificate.
    pub ca_pem: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Baseline {
    /// Starts the server on 127.0.0.1:0 with `threads` worker threads.
    pub fn start(threads: usize) -> Result<Self> {
        let (ca_pem, config) = tls().context("building the baseline server's TLS")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("baseline")
            .enable_all()
            .build()
            .context("starting the baseline server's runtime")?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        runtime.spawn(serve(listener, TlsAcceptor::from(config)));
        Ok(Self {
            addr,
            ca_pem,
            runtime: Some(runtime),
        })
    }

    /// Stops the server, without waiting for open connections.
    pub fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A CA and a server certificate for localhost, 127.0.0.1 and ::1 (ECDSA P-256, as dpsd's
/// development certificate), and the server configuration dpsd would build from them.
fn tls() -> Result<(String, Arc<rustls::ServerConfig>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let leaf = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?;
    // As dps_server::tls::server_config.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let verifier = Arc::new(AnyClientCert(provider.signature_verification_algorithms));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca_cert.pem(), Arc::new(cfg)))
}

/// As dpsd's `DeferredClientAuth`: asks for a client certificate, accepts a connection
/// without one and any chain, and verifies the handshake signature (the client holds the key).
#[derive(Debug)]
struct AnyClientCert(WebPkiSupportedAlgorithms);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The accept loop, as dps_server::serve without graceful shutdown: TLS handshake, then
/// hyper-util's automatic HTTP/1.1 or h2 server with the same timeouts.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .max_concurrent_streams(256);
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async {
                // Read the body, as dpsd does, before answering.
                let _ = req.into_body().collect().await;
                let mut resp = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
                );
                Ok::<_, std::convert::Infallible>(resp)
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
