//! Network front ends of dps-rs: the HTTPS endpoint that serves both the device API
//! (`/{idScope}/registrations/…`) and the service API (`/enrollments/…`, `/enrollmentGroups/…`,
//! `/registrations/…`) of Azure DPS, over a [`dps_service::Service`].
//!
//! This crate owns sockets, TLS, HTTP parsing, body limits and logging of refusals; every
//! decision is the service's and every wire shape is `dps-proto`'s. Start from [`serve`], which
//! takes a bound listener, a TLS configuration ([`tls::server_config`]), the service and a
//! shutdown future:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dps_connect::InProcessHubRegistry;
//! use dps_service::{ScopeConfig, Service};
//! use dps_store::MemoryStore;
//! use dps_types::IdScope;
//!
//! let svc = Service::builder(MemoryStore::new(), InProcessHubRegistry::default())
//!     .scope(ScopeConfig::new(IdScope::new("0ne00000001")?, "localhost"))
//!     .build();
//! let tls = dps_server::tls::server_config(&std::fs::read("chain.pem")?, &std::fs::read("key.pem")?)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! dps_server::serve(listener, tls, svc, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod http;
pub mod mqtt;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dps_service::{HubRegistry, Service};
use dps_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use http::router;
pub use mqtt::serve_mqtt;

/// What the front end knows about the client of a connection: its address and the certificate
/// chain it presented in TLS (empty when it presented none). [`serve`] puts it in every
/// request's extensions; the device API uses it as the X.509 credential and the source address.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address.
    pub addr: Option<std::net::SocketAddr>,
    /// The presented chain, leaf first.
    pub certs: Arc<[rustls_pki_types::CertificateDer<'static>]>,
}

impl Peer {
    /// Reads the peer of an accepted TLS connection.
    pub fn of_tls<IO>(
        addr: std::net::SocketAddr,
        conn: &tokio_rustls::server::TlsStream<IO>,
    ) -> Self {
        let certs = conn
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        Self {
            addr: Some(addr),
            certs,
        }
    }
}

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTPS on `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// requests finish (up to [`DRAIN_TIMEOUT`]) and returns.
pub async fn serve<S: Store, H: HubRegistry>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    svc: Service<S, H>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let app = router(svc);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let client = Peer::of_tls(peer, &tls);
            let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                app,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(client.clone());
                    req
                },
            ));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // Slow or silent clients cannot hold a connection open forever.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .max_concurrent_streams(256);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
    }
    Ok(())
}
