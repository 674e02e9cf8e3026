//! The custom-allocation webhook client: a [`CustomAllocator`] that POSTs Azure's
//! `AllocationRequest` to the enrollment's `customAllocationDefinition.webhookUrl` over HTTPS and
//! reads its `AllocationResponse`.
//!
//! Outcomes follow Azure's table: 200 is an answer (whose hub the service checks: 400208 when
//! missing); 401 is [`CustomAllocationError::Unauthorized`] (400209); 429 and 5xx, like
//! connection failures and timeouts, are retried on Azure's schedule (10 retries, 1 s apart at
//! first, 9 s more each time) within an overall budget; anything else, or a body that is not an
//! `AllocationResponse`, is [`CustomAllocationError::Failed`] (400207). Error texts never hold
//! the URL's query string, where the function key lives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dps_service::{
    BoxFuture, CustomAllocationError, CustomAllocationRequest, CustomAllocationResponse,
    CustomAllocator,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Largest response body read from a webhook.
const MAX_BODY: usize = 1 << 20;

/// Timeouts, retries and trust of a [`WebhookAllocator`].
#[derive(Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The webhook of enrollments without a `customAllocationDefinition` (when the scope's
    /// default policy is custom); `None` fails them with 400207.
    pub default_url: Option<String>,
    /// Budget of one attempt, connection included (default 30 s).
    pub timeout: Duration,
    /// Retries after a 429, a 5xx, a timeout or a connection failure (default 10).
    pub retries: u32,
    /// Wait before the first retry (default 1 s).
    pub retry_initial: Duration,
    /// Added to the wait before each further retry (default 9 s).
    pub retry_increment: Duration,
    /// Budget of the whole call, retries included: no retry starts after it, and the last
    /// attempt is cut short at it (default 60 s; the device waits on its registration request
    /// meanwhile, so Azure's full schedule of about 7 minutes does not fit).
    pub deadline: Duration,
    /// Trusted in addition to the platform's roots (e.g. a private CA).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Accepts `http://` webhooks (default false: only HTTPS).
    pub allow_http: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            default_url: None,
            timeout: Duration::from_secs(30),
            retries: 10,
            retry_initial: Duration::from_secs(1),
            retry_increment: Duration::from_secs(9),
            deadline: Duration::from_secs(60),
            extra_roots: Vec::new(),
            allow_http: false,
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("default_url", &self.default_url.as_deref().map(redact))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_initial", &self.retry_initial)
            .field("retry_increment", &self.retry_increment)
            .field("deadline", &self.deadline)
            .field("extra_roots", &self.extra_roots.len())
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl WebhookConfig {
    /// Adds the certificates of a PEM file's contents to the trusted roots.
    pub fn with_extra_roots_pem(mut self, pem: &[u8]) -> Result<Self, WebhookSetupError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebhookSetupError(format!("trust root: {e}")))?;
        if certs.is_empty() {
            return Err(WebhookSetupError(
                "trust root: no PEM CERTIFICATE block found".into(),
            ));
        }
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// The wait before retry `n` (0-based): `retry_initial + n * retry_increment`.
    pub fn retry_delay(&self, n: u32) -> Duration {
        self.retry_initial
            .saturating_add(self.retry_increment.saturating_mul(n))
    }
}

/// The webhook client could not be set up (bad trust root, TLS configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("custom allocation webhook client: {0}")]
pub struct WebhookSetupError(String);

/// Calls custom-allocation webhooks. Cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct WebhookAllocator {
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
}

impl WebhookAllocator {
    /// A client with `config`, trusting the platform's roots plus `config.extra_roots`.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookSetupError> {
        let setup = |e: &dyn fmt::Display| WebhookSetupError(e.to_string());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            config.extra_roots.iter().cloned(),
            provider.clone(),
        )
        .map_err(|e| setup(&e))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // The function key is in the URL: never follow it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dps-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    async fn call(
        &self,
        request: &CustomAllocationRequest,
    ) -> Result<CustomAllocationResponse, CustomAllocationError> {
        let url = request
            .definition
            .as_ref()
            .map(|d| d.webhook_url.as_str())
            .or(self.config.default_url.as_deref())
            .ok_or_else(|| failed("the enrollment has no customAllocationDefinition".into()))?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| failed(format!("bad webhook URL {}: {e}", redact(url))))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.config.allow_http => {}
            s => return Err(failed(format!("webhook URL scheme {s:?} is not https"))),
        }
        let body = serde_json::to_vec(request)
            .map_err(|e| failed(format!("cannot encode the request: {e}")))?;
        let start = tokio::time::Instant::now();
        let mut retry = 0;
        loop {
            // The last attempt gets what is left of the budget.
            let left = self.config.deadline.saturating_sub(start.elapsed());
            let limit = self.config.timeout.min(left).max(Duration::from_millis(1));
            let transient = match self.attempt(parsed.clone(), body.clone(), limit).await {
                Attempt::Done(result) => return result,
                Attempt::Transient(why) => why,
            };
            let wait = self.config.retry_delay(retry);
            if retry >= self.config.retries || start.elapsed() + wait >= self.config.deadline {
                return Err(failed(format!(
                    "{transient} (gave up after {} attempts in {} ms)",
                    retry + 1,
                    start.elapsed().as_millis()
                )));
            }
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    async fn attempt(&self, url: reqwest::Url, body: Vec<u8>, limit: Duration) -> Attempt {
        let sent = self
            .client
            .post(url)
            .timeout(limit)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Transient(format!("webhook unreachable: {}", e.without_url()));
            }
        };
        let status = response.status().as_u16();
        match status {
            200 => {}
            401 => {
                return Attempt::Done(Err(CustomAllocationError::Unauthorized(
                    "the webhook answered 401".into(),
                )));
            }
            429 | 500..=599 => {
                return Attempt::Transient(format!("the webhook answered {status}"));
            }
            _ => return Attempt::Done(Err(failed(format!("the webhook answered {status}")))),
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(c)) if bytes.len() + c.len() <= MAX_BODY => bytes.extend_from_slice(&c),
                Ok(Some(_)) => {
                    return Attempt::Done(Err(failed(format!(
                        "the webhook's answer exceeds {MAX_BODY} bytes"
                    ))));
                }
                Ok(None) => break,
                Err(e) => {
                    return Attempt::Transient(format!(
                        "reading the webhook's answer: {}",
                        e.without_url()
                    ));
                }
            }
        }
        let malformed = |e: &dyn fmt::Display| {
            failed(format!(
                "the webhook's answer is not an AllocationResponse: {e}"
            ))
        };
        // An object, not whatever else serde would accept for a struct (such as an array).
        let parsed = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v @ serde_json::Value::Object(_)) => {
                serde_json::from_value::<CustomAllocationResponse>(v).map_err(|e| malformed(&e))
            }
            Ok(_) => Err(malformed(&"not a JSON object")),
            Err(e) => Err(malformed(&e)),
        };
        Attempt::Done(parsed)
    }
}

enum Attempt {
    Done(Result<CustomAllocationResponse, CustomAllocationError>),
    Transient(String),
}

fn failed(why: String) -> CustomAllocationError {
    CustomAllocationError::Failed(why)
}

/// The URL without its query string (where the function key is).
fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?****"),
        None => url.to_owned(),
    }
}

impl CustomAllocator for WebhookAllocator {
    fn allocate<'a>(
        &'a self,
        request: &'a CustomAllocationRequest,
    ) -> BoxFuture<'a, Result<CustomAllocationResponse, CustomAllocationError>> {
        Box::pin(self.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_azures() {
        let c = WebhookConfig::default();
        assert_eq!(c.retries, 10);
        let waits: Vec<u64> = (0..4).map(|n| c.retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 10, 19, 28]);
        assert_eq!(redact("https://f/api/x?code=k"), "https://f/api/x?****");
        let dbg = format!(
            "{:?}",
            WebhookConfig {
                default_url: Some("https://f/api/x?code=k".into()),
                ..c
            }
        );
        assert!(!dbg.contains("code=k"), "{dbg}");
        assert!(
            WebhookConfig::default()
                .with_extra_roots_pem(b"nope")
                .is_err()
        );
    }
}
