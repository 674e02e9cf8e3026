//! The MQTT 3.1.1 device endpoint (TLS, default port 8883), and the session that MQTT over
//! WebSocket reuses. The codec is `dps_proto::mqtt`; the rules are `dps-service`'s.

mod session;

use std::future::Future;
use std::sync::Arc;

use dps_service::{HubRegistry, Service};
use dps_store::Store;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use session::{CONNECT_TIMEOUT, MAX_IDLE, MAX_UNKNOWN_TOPICS, REFUSED_LINGER, WRITE_TIMEOUT};

use crate::{DRAIN_TIMEOUT, HANDSHAKE_TIMEOUT, Peer};

/// Most concurrent MQTT connections; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Serves MQTT over TLS on `listener` until `shutdown` completes, then stops accepting and gives
/// open sessions [`DRAIN_TIMEOUT`] to finish before closing them.
pub async fn serve_mqtt<S: Store, H: HubRegistry>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    svc: Service<S, H>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let mut sessions = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (tcp, addr) = match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sessions.len() >= MAX_CONNECTIONS {
                    tracing::warn!(peer = %addr, "mqtt connection limit reached; closing");
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                let (acceptor, svc) = (acceptor.clone(), svc.clone());
                sessions.spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let peer = Peer::of_tls(addr, &tls);
                    serve_stream(tls, &svc, peer).await;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        sessions.abort_all();
    }
    Ok(())
}

/// Runs one MQTT session over any byte stream (TLS, or a WebSocket bridged to bytes).
pub(crate) async fn serve_stream<S: Store, H: HubRegistry, IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    svc: &Service<S, H>,
    peer: Peer,
) {
    let end = session::run(io, svc, peer).await;
    tracing::debug!(?end, "mqtt session ended");
}
