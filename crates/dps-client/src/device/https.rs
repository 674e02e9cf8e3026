//! Device registration over HTTPS: [`register_https`] drives a
//! [`RegistrationFlow`](super::flow::RegistrationFlow) with tokio
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

use std::time::Instant;

use dps_proto::http::DeviceRegistrationResult;
use dps_types::{IdScope, RegistrationId};

use super::flow::{FlowError, Request};
use super::options::{RegisterOptions, Signer, unix_now};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::{HttpRequest, JSON, Transport, segment};

/// Registers a device over HTTPS and waits for its assignment.
///
/// Returns the registration state (assigned hub, device ID, …) once the service reports
/// `assigned`. See [`Error::Registration`] for failures the service reported and
/// [`Error::UntrustedServer`] when the server's CA is not trusted.
pub async fn register_https(opts: RegisterOptions) -> Result<DeviceRegistrationResult, Error> {
    let endpoint = Endpoint::parse(opts.endpoint.trim())?;
    let (signer, mut flow) = opts.start()?;
    let transport = Transport::new(endpoint, opts.ca.as_ref(), opts.credential.identity())?;
    let device = Device {
        id_scope: opts.id_scope,
        registration_id: opts.registration_id,
        api_version: opts.api_version,
        signer,
    };
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
pub(crate) struct Device {
    pub(crate) id_scope: IdScope,
    pub(crate) registration_id: RegistrationId,
    pub(crate) api_version: String,
    pub(crate) signer: Signer,
}

impl Device {
    /// The HTTP request for a flow request, with a token valid from `now_unix` for the
    /// configured lifetime.
    pub(crate) fn request(&self, request: &Request, now_unix: u64) -> HttpRequest {
        let token = self.signer.token(now_unix);
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
        if let Some(token) = token {
            headers.push(("authorization", token));
        }
        HttpRequest {
            method,
            target,
            headers,
            body,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dps_attest::sas::{SasToken, SigningKey, verify_device};
    use dps_proto::http::DeviceRegistration;

    use crate::device::Credential;

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    fn device(rid: &str, credential: Credential) -> Device {
        let opts = RegisterOptions::new(
            "localhost",
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new(rid).unwrap(),
            credential,
        );
        let (signer, _) = opts.start().unwrap();
        Device {
            id_scope: opts.id_scope,
            registration_id: opts.registration_id,
            api_version: opts.api_version,
            signer,
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
}
