//! A local stand-in for a custom-allocation webhook (an Azure Function): HTTPS on 127.0.0.1
//! with its own CA, answering every `POST` with the answer it was given and recording what it
//! received (path and query, body). The server stops when its [`WebhookServer`] is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use dps_testkit::webhook::WebhookServer;
//! use serde_json::json;
//!
//! let hook = WebhookServer::start(json!({"iotHubHostName": "hub-a.example.net"})).await;
//! let url = hook.url("/api/alloc?code=fn-key");
//! assert!(hook.requests().is_empty());
//! # let _ = url;
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::serve::Listener as _;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::tls_listener::TlsListener;

/// One request the webhook received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query, as sent.
    pub uri: String,
    /// The body, parsed (`Value::Null` when it was not JSON).
    pub body: Value,
}

#[derive(Debug)]
struct Inner {
    status: u16,
    answer: Value,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running webhook. Dropping it stops the server.
#[derive(Debug)]
pub struct WebhookServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl WebhookServer {
    /// Starts a webhook on 127.0.0.1 (a free port) answering `200` with `answer`.
    pub async fn start(answer: Value) -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (ca_pem, listener) = TlsListener::bind("webhook test CA", names).await;
        let addr = listener.local_addr().expect("local address");
        let state: Shared = Arc::new(Mutex::new(Inner {
            status: 200,
            answer,
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            ca_pem,
            state,
            task,
        }
    }

    /// `https://127.0.0.1:{port}{path_and_query}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://{}{path_and_query}", self.addr)
    }

    /// The CA certificate (PEM) that issued the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Answers from now on with `status` and `answer`.
    pub fn answer(&self, status: u16, answer: Value) {
        let mut st = lock(&self.state);
        st.status = status;
        st.answer = answer;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<Shared>,
    uri: Uri,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let mut st = lock(&state);
    st.received.push(Received {
        uri: uri.to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let status = StatusCode::from_u16(st.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        st.answer.to_string(),
    )
}
