//! MQTT over WebSocket on the HTTPS port: `GET /` or `/$iothub/websocket` with an upgrade to
//! the `mqtt` sub-protocol. Binary messages are bridged to the same MQTT session the TLS
//! listener runs, through an in-memory pipe.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts as _, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use dps_service::{HubRegistry, Service};
use dps_store::Store;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest WebSocket message accepted (one MQTT packet fits with room to spare).
pub const MAX_WS_MESSAGE: usize = 128 * 1024;

/// Whether `req` asks to upgrade one of the MQTT WebSocket paths.
pub(crate) fn is_mqtt_upgrade(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == Method::GET
        && (path == "/" || path.eq_ignore_ascii_case("/$iothub/websocket"))
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the upgrade (sub-protocol `mqtt`, any case) and runs the session on the socket.
pub(crate) async fn upgrade<S: Store, H: HubRegistry>(
    svc: Service<S, H>,
    req: Request,
) -> Response {
    let (mut parts, _) = req.into_parts();
    let peer = parts
        .extensions
        .get::<crate::Peer>()
        .cloned()
        .unwrap_or_default();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws
            .protocols(["mqtt", "MQTT"])
            .max_message_size(MAX_WS_MESSAGE)
            .on_upgrade(move |socket| bridge(socket, svc, peer))
            .into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn bridge<S: Store, H: HubRegistry>(
    socket: WebSocket,
    svc: Service<S, H>,
    peer: crate::Peer,
) {
    let (ours, theirs) = tokio::io::duplex(MAX_WS_MESSAGE);
    let session = tokio::spawn(async move { crate::mqtt::serve_stream(theirs, &svc, peer).await });
    let (mut from_session, mut to_session) = tokio::io::split(ours);
    let (mut sink, mut stream) = socket.split();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if to_session.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            n = from_session.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let chunk: Bytes = buf.split().freeze();
                    if sink.send(Message::Binary(chunk)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = sink.close().await;
    drop(to_session);
    let _ = session.await;
}
