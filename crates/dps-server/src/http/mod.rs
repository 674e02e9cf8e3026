//! The HTTPS request handler: one entry point that decodes the route with `dps-proto`, reads
//! the body within its limit, calls the service, and writes JSON or Azure's error body.

mod device;
mod service;
mod ws;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dps_proto::WireError;
use dps_proto::http::{MAX_BODY_BYTES, Method, Route, route};
use dps_service::{HubRegistry, Service};
use dps_store::Store;
use dps_types::Rejection;
use serde::Serialize;

/// The axum router serving both APIs (plain HTTP; [`crate::serve`] adds TLS).
pub fn router<S: Store, H: HubRegistry>(svc: Service<S, H>) -> Router {
    Router::new().fallback(handle::<S, H>).with_state(svc)
}

/// What a handler produced: status, JSON body (or none) and extra headers.
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Self, Rejection> {
        let body = serde_json::to_vec(value).map_err(|_| Rejection::Internal)?;
        Ok(Self {
            status,
            body: Some(body),
            headers: Vec::new(),
        })
    }
    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

const JSON: &str = "application/json; charset=utf-8";

fn finish(reply: Reply, tracking_id: &str) -> Response {
    let mut resp = match reply.body {
        Some(b) => (
            reply.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            b,
        )
            .into_response(),
        None => reply.status.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tracking_id) {
        h.insert("x-ms-request-id", v);
    }
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn error_response<S: Store, H: HubRegistry>(
    svc: &Service<S, H>,
    r: &Rejection,
    tracking_id: &str,
) -> Response {
    let w = WireError::from_rejection(r);
    let status = StatusCode::from_u16(w.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = match Reply::json(status, &w.body(tracking_id, svc.now())) {
        Ok(r) => r,
        Err(_) => Reply::empty(status),
    };
    reply = reply.header("x-ms-error-code", w.error_code.to_string());
    if let Some(s) = w.retry_after {
        reply = reply.header("retry-after", s.to_string());
    }
    finish(reply, tracking_id)
}

/// Request parts the handlers need, decoded once.
pub(crate) struct Ctx<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: Bytes,
    /// The connection's client (address, TLS certificates).
    pub peer: crate::Peer,
}

impl Ctx<'_> {
    pub(crate) fn header(&self, name: &str) -> Result<Option<&str>, Rejection> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(Some)
                .map_err(|_| Rejection::BadRequest(format!("header {name} is not visible ASCII"))),
        }
    }
    pub(crate) fn json_body(&self) -> Result<serde_json::Value, Rejection> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Rejection::BadRequest("a JSON body is required".into()));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Rejection::BadRequest(format!("invalid JSON body: {e}")))
    }
}

fn body_limit(r: &Route) -> usize {
    match r {
        Route::Bulk { .. } => dps_proto::http::service::MAX_BULK_BODY_BYTES,
        _ => MAX_BODY_BYTES,
    }
}

fn check_content_type(headers: &HeaderMap, body: &Bytes) -> Result<(), Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok(()),
        Some(ct) if ct.to_ascii_lowercase().contains("json") => Ok(()),
        Some(_) => Err(Rejection::UnsupportedMediaType),
    }
}

async fn handle<S: Store, H: HubRegistry>(
    State(svc): State<Service<S, H>>,
    req: Request,
) -> Response {
    if ws::is_mqtt_upgrade(&req) {
        return ws::upgrade(svc, req).await;
    }
    let tracking_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match dispatch(&svc, req).await {
        Ok(reply) => {
            tracing::debug!(%method, %path, status = reply.status.as_u16(), "request");
            finish(reply, &tracking_id)
        }
        Err(r) => {
            match &r {
                Rejection::Unauthorized(reason) => {
                    tracing::info!(%method, %path, %tracking_id, %reason, "unauthorized");
                }
                Rejection::Internal | Rejection::Unavailable => {
                    tracing::error!(%method, %path, %tracking_id, rejection = %r, "request failed");
                }
                _ => {
                    tracing::debug!(%method, %path, %tracking_id, rejection = %r, "request refused")
                }
            }
            error_response(&svc, &r, &tracking_id)
        }
    }
}

async fn dispatch<S: Store, H: HubRegistry>(
    svc: &Service<S, H>,
    req: Request,
) -> Result<Reply, Rejection> {
    let (parts, body) = req.into_parts();
    let route = route(Method::parse(parts.method.as_str()), parts.uri.path())?;
    let limit = body_limit(&route);
    let body = read_body(body, limit).await?;
    check_content_type(&parts.headers, &body)?;
    let ctx = Ctx {
        headers: &parts.headers,
        query: parts.uri.query(),
        body,
        peer: parts
            .extensions
            .get::<crate::Peer>()
            .cloned()
            .unwrap_or_default(),
    };
    if route.is_device() {
        device::handle(svc, route, &ctx).await
    } else {
        let host = parts.uri.host().map(str::to_owned);
        service::handle(svc, route, &ctx, host.as_deref()).await
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Rejection> {
    let read = tokio::time::timeout(crate::BODY_TIMEOUT, axum::body::to_bytes(body, limit));
    match read.await {
        Err(_) => Err(Rejection::BadRequest(
            "the request body did not arrive in time".into(),
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            // The only error to_bytes reports for a well-formed stream is the length limit.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(Rejection::PayloadTooLarge)
            } else {
                Err(Rejection::BadRequest(
                    "the request body could not be read".into(),
                ))
            }
        }
    }
}
