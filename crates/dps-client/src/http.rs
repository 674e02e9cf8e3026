//! HTTPS plumbing shared by the device and service clients: endpoints, trusted CAs, request
//! values that tests can inspect, and one reqwest-backed sender that classifies failures.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::endpoint::Endpoint;
use crate::error::{AzureErrorBody, BoxError, Error};

/// `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("dps-client/", env!("CARGO_PKG_VERSION"));
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

/// CA certificates to trust instead of the platform's roots, for servers with a private CA
/// such as dpsd's self-signed dev CA (`<data_dir>/dev-ca.pem`). Like `curl --cacert`: when
/// given, only these roots are trusted.
#[derive(Clone, PartialEq, Eq)]
pub enum TrustedCa {
    /// A PEM file holding one or more `CERTIFICATE` blocks.
    PemFile(PathBuf),
    /// PEM text holding one or more `CERTIFICATE` blocks.
    Pem(Vec<u8>),
}

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Self::Pem(b) => write!(f, "Pem(<{} bytes>)", b.len()),
        }
    }
}

impl TrustedCa {
    fn origin(&self) -> String {
        match self {
            Self::PemFile(p) => p.display().to_string(),
            Self::Pem(_) => "memory".into(),
        }
    }

    /// Reads and parses the certificates.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let ca_error = |source: BoxError| Error::Ca {
            origin: self.origin(),
            source,
        };
        let file;
        let pem: &[u8] = match self {
            Self::PemFile(path) => {
                file = std::fs::read(path).map_err(|e| ca_error(e.into()))?;
                &file
            }
            Self::Pem(bytes) => bytes,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.into()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM CERTIFICATE block found".into()));
        }
        Ok(certs)
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certificates()? {
            roots.add(cert).map_err(|e| Error::Ca {
                origin: self.origin(),
                source: e.into(),
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Ca {
                origin: self.origin(),
                source: e.into(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
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
    pub(crate) fn new(endpoint: Endpoint, ca: Option<&TrustedCa>) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // DPS never redirects; a 3xx is reported, not followed with our token.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            builder = builder.tls_backend_preconfigured(ca.client_config()?);
        }
        let client = builder.build().map_err(|e| Error::Connect {
            host: endpoint.authority().to_owned(),
            source: e.into(),
        })?;
        Ok(Self { client, endpoint })
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

/// The rustls error, when somewhere in the chain rustls refused the server's certificate.
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) =
            err.downcast_ref::<rustls::Error>()
        {
            return Some(tls.clone());
        }
        // `io::Error::source` skips the error it wraps (and reqwest nests io errors), so step
        // into the wrapped error instead.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
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

    #[test]
    fn trusted_ca_errors() {
        let err = TrustedCa::Pem(b"not pem".to_vec())
            .certificates()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load the CA certificate from memory"
        );
        let err = TrustedCa::PemFile("/nonexistent/dev-ca.pem".into())
            .certificates()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load the CA certificate from /nonexistent/dev-ca.pem"
        );
        assert!(format!("{:?}", TrustedCa::Pem(vec![1, 2, 3])).contains("3 bytes"));
    }
}
