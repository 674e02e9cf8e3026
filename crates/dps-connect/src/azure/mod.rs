//! The `azure-iothub` connector: Azure IoT Hub's identity registry REST API (`api-version`
//! 2021-04-12 by default), authorised with SAS tokens minted from the hub's connection string
//! (a policy with RegistryWrite).
//!
//! Provisioning follows hub-registries.md §A8: `PUT /devices/{id}` without `If-Match` creates
//! the identity; `409 DeviceAlreadyExists` turns it into GET + `PUT` with `If-Match: "<etag>"`
//! (re-read on `412`, at most three rounds), keeping the fields DPS does not own. The twin is
//! then written: `PATCH /twins/{id}` on a new identity, `PUT /twins/{id}` (replace) when the
//! device's data is reset or migrated. Migration reads `GET /devices/{id}` and
//! `GET /twins/{id}`; removal is `DELETE /devices/{id}` with `If-Match: "*"`. Keys and the
//! `Authorization` header are never logged or put in errors.

mod client;
mod connection_string;
mod identity;

use std::sync::Arc;

use dps_service::{HubDevice, HubDeviceState, HubError, HubRegistry};
use dps_types::HubHostName;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::retry::RetryPolicy;
use client::{Client, path};
pub use connection_string::{ConnectionStringError, HubConnectionString};

/// The registry API version sent by default.
pub const DEFAULT_API_VERSION: &str = "2021-04-12";

/// How rounds of GET + conditional PUT are tried when the identity changes under us.
const UPDATE_ROUNDS: usize = 3;

/// Configuration of one Azure IoT hub.
#[derive(Debug, Clone)]
pub struct AzureHubConfig {
    /// The hub's service connection string.
    pub connection_string: HubConnectionString,
    /// The base URL to call instead of `https://{HostName}` (a private endpoint, a test server).
    pub endpoint: Option<String>,
    /// The `api-version` query parameter.
    pub api_version: String,
    /// PEM certificates to trust instead of the platform's roots.
    pub trust_roots_pem: Option<Vec<u8>>,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
}

impl AzureHubConfig {
    /// Defaults for `connection_string`: the hub's own host, API 2021-04-12, platform roots.
    pub fn new(connection_string: HubConnectionString) -> Self {
        Self {
            connection_string,
            endpoint: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
            trust_roots_pem: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Why an Azure connector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzureConfigError {
    /// The trust roots are not valid PEM certificates.
    #[error("the hub's trust roots are not valid PEM certificates")]
    TrustRoots,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// A connector to one Azure IoT hub's identity registry.
#[derive(Debug, Clone)]
pub struct AzureHubRegistry {
    client: Arc<Client>,
}

impl AzureHubRegistry {
    /// Builds the connector (no request is made yet).
    pub fn new(cfg: AzureHubConfig) -> Result<Self, AzureConfigError> {
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.retry.timeout)
            .connect_timeout(cfg.retry.timeout)
            .user_agent(concat!("dps-rs/", env!("CARGO_PKG_VERSION")))
            .https_only(true);
        if let Some(pem) = &cfg.trust_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| AzureConfigError::TrustRoots)?;
            if certs.is_empty() {
                return Err(AzureConfigError::TrustRoots);
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| AzureConfigError::Client(e.to_string()))?;
        let base = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{}", cfg.connection_string.host_name));
        Ok(Self {
            client: Arc::new(Client {
                http,
                base: base.trim_end_matches('/').to_owned(),
                credential: cfg.connection_string,
                api_version: cfg.api_version,
                retry: cfg.retry,
            }),
        })
    }

    /// The hub's host name, from the connection string.
    pub fn host_name(&self) -> &str {
        &self.client.credential.host_name
    }

    /// Creates the identity, or updates it when it exists. Returns true when it was created.
    async fn upsert(&self, d: &HubDevice) -> Result<bool, HubError> {
        let p = path("devices", &d.device_id);
        let doc = identity::document(d, None)?;
        let created = self.client.call(Method::PUT, &p, None, Some(&doc)).await?;
        match created.status {
            StatusCode::OK | StatusCode::CREATED => return Ok(true),
            StatusCode::CONFLICT => {}
            _ => return Err(created.refusal("creating the device identity")),
        }
        for _ in 0..UPDATE_ROUNDS {
            let current = self.client.call(Method::GET, &p, None, None).await?;
            if current.status == StatusCode::NOT_FOUND {
                // Deleted in between: create it again.
                let again = self.client.call(Method::PUT, &p, None, Some(&doc)).await?;
                match again.status {
                    StatusCode::OK | StatusCode::CREATED => return Ok(true),
                    StatusCode::CONFLICT => continue,
                    _ => return Err(again.refusal("creating the device identity")),
                }
            }
            if current.status != StatusCode::OK {
                return Err(current.refusal("reading the device identity"));
            }
            let etag = current
                .body
                .get("etag")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(current.etag)
                .unwrap_or_else(|| "*".to_owned());
            let doc = identity::document(d, Some(&current.body))?;
            let updated = self
                .client
                .call(Method::PUT, &p, Some(&etag), Some(&doc))
                .await?;
            match updated.status {
                StatusCode::OK => return Ok(false),
                StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => continue,
                _ => return Err(updated.refusal("updating the device identity")),
            }
        }
        Err(HubError::Rejected(format!(
            "the identity of {} kept changing during {UPDATE_ROUNDS} update rounds",
            d.device_id
        )))
    }
}

impl HubRegistry for AzureHubRegistry {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        let created = self.upsert(&d).await?;
        let p = path("twins", &d.device_id);
        let body = identity::twin_body(d.initial_twin.as_ref());
        let r = if d.reset_twin && !created {
            self.client
                .call(Method::PUT, &p, Some("*"), Some(&body))
                .await?
        } else if d.initial_twin.is_some() && (created || d.reset_twin) {
            self.client
                .call(Method::PATCH, &p, Some("*"), Some(&body))
                .await?
        } else {
            return Ok(());
        };
        if r.status == StatusCode::OK {
            Ok(())
        } else {
            Err(r.refusal("writing the initial twin"))
        }
    }

    async fn fetch(
        &self,
        _hub: &HubHostName,
        device_id: &str,
    ) -> Result<Option<HubDeviceState>, HubError> {
        let identity = self
            .client
            .call(Method::GET, &path("devices", device_id), None, None)
            .await?;
        match identity.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(identity.refusal("reading the device identity")),
        }
        let twin = self
            .client
            .call(Method::GET, &path("twins", device_id), None, None)
            .await?;
        match twin.status {
            StatusCode::OK => Ok(Some(identity::device_state(&identity.body, &twin.body))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(twin.refusal("reading the device twin")),
        }
    }

    async fn remove(&self, _hub: &HubHostName, device_id: &str) -> Result<(), HubError> {
        let r = self
            .client
            .call(Method::DELETE, &path("devices", device_id), Some("*"), None)
            .await?;
        match r.status {
            StatusCode::OK | StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(r.refusal("deleting the device identity")),
        }
    }
}
