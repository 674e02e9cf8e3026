//! Device registration over HTTPS: [`register_https`] drives a [`RegistrationFlow`] with tokio
//! and reqwest, sending requests exactly as the official SDKs do:
//!
//! ```text
//! PUT https://{host}/{idScope}/registrations/{registrationId}/register?api-version=2021-06-01
//! Authorization: SharedAccessSignature sr={idScope}%2Fregistrations%2F{registrationId}&sig=…&se=…&skn=registration
//! Content-Type: application/json; charset=utf-8
//! {"registrationId":"{registrationId}"[,"payload":…]}
//!
//! GET https://{host}/{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=2021-06-01
//! Authorization: (a fresh token, same form)
//! ```
//!
//! Path segments are percent-encoded. Connection failures (DNS, refused, untrusted certificate)
//! end the registration at once; failures after connecting (timeouts, resets) are retried by
//! the flow like a `503`.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dps_attest::sas::{SigningKey, derive_device_key, generate_token};
use dps_proto::http::DeviceRegistrationResult;
use dps_types::{IdScope, RegistrationId};
use serde_json::Value;

use super::flow::{FlowConfig, FlowError, RegistrationFlow, Request};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::{HttpRequest, JSON, Transport, TrustedCa, segment};

/// The device API version sent by default.
pub const DEFAULT_DEVICE_API_VERSION: &str = "2021-06-01";

/// The `skn` of device tokens, as the C and .NET SDKs send it.
const DEVICE_KEY_NAME: &str = "registration";

/// How the device proves its identity. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The device's own base64 key (individual enrollment, or an already derived group key).
    SymmetricKey(String),
    /// The enrollment group's base64 key; the device key is derived from it as
    /// `HMAC-SHA256(groupKey, registrationId)`.
    GroupKey(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SymmetricKey(_) => f.write_str("SymmetricKey(<redacted>)"),
            Self::GroupKey(_) => f.write_str("GroupKey(<redacted>)"),
        }
    }
}

impl Credential {
    /// The key that signs this device's tokens.
    fn signing_key(&self, registration_id: &RegistrationId) -> Result<SigningKey, Error> {
        match self {
            Self::SymmetricKey(b64) => {
                SigningKey::from_base64(b64.trim()).map_err(|_| Error::InvalidKey)
            }
            Self::GroupKey(b64) => {
                let group = SigningKey::from_base64(b64.trim()).map_err(|_| Error::InvalidKey)?;
                Ok(derive_device_key(&group, registration_id.as_str()))
            }
        }
    }
}

/// What [`register_https`] needs. Build with [`RegisterOptions::new`], then adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// `host[:port]` of the device endpoint (port 443 when omitted), e.g.
    /// `global.azure-devices-provisioning.net` or `localhost:8443`.
    pub endpoint: String,
    /// The ID scope.
    pub id_scope: IdScope,
    /// The registration ID.
    pub registration_id: RegistrationId,
    /// The device's credential.
    pub credential: Credential,
    /// Custom allocation payload (`payload` of the register body).
    pub payload: Option<Value>,
    /// CA certificates to trust instead of the platform roots.
    pub ca: Option<TrustedCa>,
    /// `api-version` query parameter ([`DEFAULT_DEVICE_API_VERSION`]).
    pub api_version: String,
    /// Lifetime of each SAS token (3600 s).
    pub token_lifetime: Duration,
    /// Polling and retry tunables. When `jitter_seed` is `None`, a random seed is picked.
    pub flow: FlowConfig,
}

impl RegisterOptions {
    /// Options with the defaults: no payload, platform roots, api-version `2021-06-01`, 1 h
    /// tokens, default flow tunables.
    pub fn new(
        endpoint: impl Into<String>,
        id_scope: IdScope,
        registration_id: RegistrationId,
        credential: Credential,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            id_scope,
            registration_id,
            credential,
            payload: None,
            ca: None,
            api_version: DEFAULT_DEVICE_API_VERSION.into(),
            token_lifetime: Duration::from_secs(3600),
            flow: FlowConfig::default(),
        }
    }
}

/// Registers a device over HTTPS and waits for its assignment.
///
/// Returns the registration state (assigned hub, device ID, …) once the service reports
/// `assigned`. See [`Error::Registration`] for failures the service reported and
/// [`Error::UntrustedServer`] when the server's CA is not trusted.
pub async fn register_https(opts: RegisterOptions) -> Result<DeviceRegistrationResult, Error> {
    let endpoint = Endpoint::parse(opts.endpoint.trim())?;
    let key = opts.credential.signing_key(&opts.registration_id)?;
    let transport = Transport::new(endpoint, opts.ca.as_ref())?;
    let mut config = opts.flow;
    if config.jitter_seed.is_none() {
        config.jitter_seed = Some(random_seed(&opts.registration_id));
    }
    let device = Device {
        id_scope: opts.id_scope.clone(),
        registration_id: opts.registration_id.clone(),
        api_version: opts.api_version,
        key,
        token_lifetime: opts.token_lifetime,
    };
    let mut flow =
        RegistrationFlow::with_config(opts.id_scope, opts.registration_id, opts.payload, config);
    // The last transport error, reported instead of "gave up" if the flow gives up on it.
    let mut last_transport_error = None;
    loop {
        if let Some(outcome) = flow.poll_outcome() {
            return match (outcome, last_transport_error) {
                (Err(FlowError::RetriesExhausted { .. }), Some(e)) => Err(e),
                (outcome, _) => outcome.map_err(Error::from),
            };
        }
        if let Some(request) = flow.poll_transmit(Instant::now()) {
            let http = device.request(&request, unix_now());
            match transport.send(http).await {
                Ok(resp) => {
                    last_transport_error = None;
                    flow.handle_response(resp.status, resp.retry_after, &resp.body, Instant::now());
                }
                Err(e @ Error::Transport { .. }) => {
                    last_transport_error = Some(e);
                    flow.handle_transport_error(Instant::now());
                }
                Err(e) => return Err(e),
            }
            continue;
        }
        match flow.poll_timeout() {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            // Not reachable with a correct flow: nothing due, nothing in flight, no outcome.
            None => {
                return Err(Error::Protocol {
                    what: "the registration flow stalled".into(),
                    source: None,
                });
            }
        }
    }
}

/// The device half of request building: everything but the transport.
struct Device {
    id_scope: IdScope,
    registration_id: RegistrationId,
    api_version: String,
    key: SigningKey,
    token_lifetime: Duration,
}

impl Device {
    /// The HTTP request for a flow request, with a token valid from `now_unix` for the
    /// configured lifetime.
    fn request(&self, request: &Request, now_unix: u64) -> HttpRequest {
        let resource = format!("{}/registrations/{}", self.id_scope, self.registration_id);
        let expiry = now_unix.saturating_add(self.token_lifetime.as_secs());
        let token = generate_token(&resource, &self.key, expiry, Some(DEVICE_KEY_NAME));
        let base = format!(
            "/{}/registrations/{}",
            segment(self.id_scope.as_str()),
            segment(self.registration_id.as_str())
        );
        let api = segment(&self.api_version);
        let mut headers = vec![("accept", "application/json".to_owned())];
        let (method, target, body) = match request {
            Request::Register { body } => {
                headers.push(("content-type", JSON.to_owned()));
                // Serialising a struct of strings and JSON values cannot fail.
                let body = serde_json::to_vec(body).unwrap_or_default();
                (
                    reqwest::Method::PUT,
                    format!("{base}/register?api-version={api}"),
                    Some(body),
                )
            }
            Request::Poll { operation_id } => (
                reqwest::Method::GET,
                format!(
                    "{base}/operations/{}?api-version={api}",
                    segment(operation_id)
                ),
                None,
            ),
        };
        headers.push(("authorization", token));
        HttpRequest {
            method,
            target,
            headers,
            body,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A per-process random seed (std's hash keys are randomly initialised), mixed with the
/// registration ID.
fn random_seed(registration_id: &RegistrationId) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(registration_id.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dps_attest::sas::{SasToken, verify_device};
    use dps_proto::http::DeviceRegistration;

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    fn device(rid: &str, credential: Credential) -> Device {
        let registration_id = RegistrationId::new(rid).unwrap();
        Device {
            id_scope: IdScope::new("0ne00000001").unwrap(),
            key: credential.signing_key(&registration_id).unwrap(),
            registration_id,
            api_version: DEFAULT_DEVICE_API_VERSION.into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn register_request_is_exactly_as_specified() {
        let d = device("dev-1", Credential::SymmetricKey(KEY.into()));
        let body = DeviceRegistration {
            registration_id: Some("dev-1".into()),
            payload: Some(serde_json::json!({"modelId": "dtmi:x;1"})),
            ..DeviceRegistration::default()
        };
        let req = d.request(&Request::Register { body }, 1_795_766_064);
        assert_eq!(req.method, reqwest::Method::PUT);
        assert_eq!(
            req.target,
            "/0ne00000001/registrations/dev-1/register?api-version=2021-06-01"
        );
        assert_eq!(
            header(&req, "content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(
            req.body.as_deref(),
            Some(&br#"{"registrationId":"dev-1","payload":{"modelId":"dtmi:x;1"}}"#[..])
        );
        let auth = header(&req, "authorization").unwrap();
        assert!(
            auth.starts_with("SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1&sig="),
            "{auth}"
        );
        assert!(auth.ends_with("&se=1795769664&skn=registration"), "{auth}");
        let token = SasToken::parse(auth).unwrap();
        let key = SigningKey::from_base64(KEY).unwrap();
        assert_eq!(
            verify_device(&token, "0ne00000001", "dev-1", &[&key], 1_795_766_064),
            Ok(0)
        );
    }

    #[test]
    fn poll_request_encodes_segments() {
        let d = device("dev:1", Credential::SymmetricKey(KEY.into()));
        let req = d.request(
            &Request::Poll {
                operation_id: "5.abc/def".into(),
            },
            0,
        );
        assert_eq!(req.method, reqwest::Method::GET);
        assert_eq!(
            req.target,
            "/0ne00000001/registrations/dev%3A1/operations/5.abc%2Fdef?api-version=2021-06-01"
        );
        assert_eq!(req.body, None);
        assert_eq!(header(&req, "content-type"), None);
        assert!(header(&req, "authorization").is_some());
    }

    #[test]
    fn group_key_is_derived_per_device() {
        // dps-device-protocol.md §6.4.
        let group = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
        let rid = RegistrationId::new("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
        let key = Credential::GroupKey(group.into())
            .signing_key(&rid)
            .unwrap();
        assert_eq!(
            key.to_base64(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
        assert!(matches!(
            Credential::SymmetricKey("not base64!".into()).signing_key(&rid),
            Err(Error::InvalidKey)
        ));
        assert!(!format!("{:?}", Credential::GroupKey(group.into())).contains(group));
    }
}
