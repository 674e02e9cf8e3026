//! HTTPS plumbing shared by the device and service clients: request values that tests can
//! inspect, and one reqwest-backed sender that classifies failures.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::USER_AGENT;
use crate::endpoint::Endpoint;
use crate::error::{AzureErrorBody, Error};
use crate::tls::{ClientIdentity, TrustedCa, certificate_error};

/// `Content-Type` of every request with a body, as the Azure SDKs send it.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded, with
/// upper-case hex, so an ID can never add a path segment or a query.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment.
pub(crate) fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// An HTTP request as a plain value, so tests can check it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub(crate) method: reqwest::Method,
    /// Origin-form target: `/path?query`.
    pub(crate) target: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

/// The parts of a response the clients read.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    /// `Retry-After` in delta-seconds (an HTTP-date is ignored).
    pub(crate) retry_after: Option<Duration>,
    /// `x-ms-continuation`, absent when empty.
    pub(crate) continuation: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Azure error this (non-2xx) response carries.
    pub(crate) fn service_error(&self) -> Error {
        let e = AzureErrorBody::parse(&self.body);
        Error::Service {
            status: self.status,
            error_code: e.error_code,
            message: e.message,
            tracking_id: e.tracking_id,
        }
    }
}

/// A reqwest client bound to one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    endpoint: Endpoint,
}

impl Transport {
    pub(crate) fn new(
        endpoint: Endpoint,
        ca: Option<&TrustedCa>,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // DPS never redirects; a 3xx is reported, not followed with our token.
            .redirect(reqwest::redirect::Policy::none());
        if ca.is_some() || identity.is_some() {
            builder = builder.tls_backend_preconfigured(crate::tls::client_config(ca, identity)?);
        }
        let client = builder.build().map_err(|e| Error::Connect {
            host: endpoint.authority().to_owned(),
            source: e.into(),
        })?;
        Ok(Self { client, endpoint })
    }

    /// A client builder with the settings of [`Transport::new`] (user agent, timeouts, no
    /// redirects) and no TLS configuration yet, for callers that manage TLS and pooling
    /// themselves ([`crate::fleet`]).
    pub(crate) fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// A transport over a client built from [`Transport::builder`].
    pub(crate) fn with_client(endpoint: Endpoint, client: reqwest::Client) -> Self {
        Self { client, endpoint }
    }

    pub(crate) async fn send(&self, req: HttpRequest) -> Result<HttpResponse, Error> {
        let url = format!("https://{}{}", self.endpoint.authority(), req.target);
        let mut builder = self.client.request(req.method, url);
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let resp = builder.send().await.map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let continuation = header("x-ms-continuation");
        let body = resp.bytes().await.map_err(|e| self.classify(e))?.to_vec();
        Ok(HttpResponse {
            status,
            retry_after,
            continuation,
            body,
        })
    }

    fn classify(&self, e: reqwest::Error) -> Error {
        let host = self.endpoint.authority().to_owned();
        if let Some(tls) = certificate_error(&e) {
            // The rustls error says it all ("invalid peer certificate: UnknownIssuer"); the
            // reqwest and hyper layers around it add only noise.
            Error::UntrustedServer {
                host,
                source: tls.into(),
            }
        } else if e.is_connect() {
            Error::Connect {
                host,
                source: e.into(),
            }
        } else {
            Error::Transport {
                host,
                source: e.into(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(segment("dev-1.a_b~c"), "dev-1.a_b~c");
        assert_eq!(segment("a:b/c?d#e f%"), "a%3Ab%2Fc%3Fd%23e%20f%25");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
