//! What every device transport needs: the device's identity and credential
//! ([`RegisterOptions`], [`Credential`]), the choice of transport ([`Transport`]) and the one
//! entry point that honours it ([`register`]). The transports themselves are
//! [`register_https`](super::https::register_https) and
//! [`register_mqtt`](super::mqtt::register_mqtt).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_attest::sas::{SigningKey, derive_device_key, generate_token};
use dps_proto::http::DeviceRegistrationResult;
use dps_types::{IdScope, RegistrationId};
use serde_json::Value;

use super::flow::{FlowConfig, RegistrationFlow};
use crate::error::Error;
use crate::tls::{ClientIdentity, TrustedCa};

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
    /// An X.509 certificate (and its chain) with its private key, presented in TLS; no token
    /// is sent. The registration ID must be the certificate's subject CN.
    X509(ClientIdentity),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SymmetricKey(_) => f.write_str("SymmetricKey(<redacted>)"),
            Self::GroupKey(_) => f.write_str("GroupKey(<redacted>)"),
            Self::X509(id) => f.debug_tuple("X509").field(id).finish(),
        }
    }
}

impl Credential {
    /// The key that signs this device's tokens (`None` for X.509: no tokens).
    pub(crate) fn signing_key(
        &self,
        registration_id: &RegistrationId,
    ) -> Result<Option<SigningKey>, Error> {
        match self {
            Self::SymmetricKey(b64) => SigningKey::from_base64(b64.trim())
                .map(Some)
                .map_err(|_| Error::InvalidKey),
            Self::GroupKey(b64) => {
                let group = SigningKey::from_base64(b64.trim()).map_err(|_| Error::InvalidKey)?;
                Ok(Some(derive_device_key(&group, registration_id.as_str())))
            }
            Self::X509(_) => Ok(None),
        }
    }

    /// The TLS client identity, for X.509.
    pub(crate) fn identity(&self) -> Option<&ClientIdentity> {
        match self {
            Self::X509(id) => Some(id),
            _ => None,
        }
    }
}

/// The protocol that carries a registration. Both send the same requests and get the same
/// answers; MQTT keeps one connection open for the register request and every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// HTTPS (`PUT …/register`, `GET …/operations/{id}`), port 443 by default. The default when
    /// the `https` feature is on.
    #[cfg(feature = "https")]
    #[cfg_attr(feature = "https", default)]
    Https,
    /// MQTT 3.1.1 over TLS (`$dps/registrations/…` topics), port 8883 by default.
    #[cfg(feature = "mqtt")]
    #[cfg_attr(not(feature = "https"), default)]
    Mqtt,
}

impl Transport {
    /// The port dialled when the endpoint names none: 443 for HTTPS, 8883 for MQTT.
    pub fn default_port(self) -> u16 {
        match self {
            #[cfg(feature = "https")]
            Self::Https => 443,
            #[cfg(feature = "mqtt")]
            Self::Mqtt => super::mqtt::DEFAULT_PORT,
        }
    }
}

/// What [`register`] needs. Build with [`RegisterOptions::new`], then adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// `host[:port]` of the device endpoint (the [`Transport::default_port`] when omitted), e.g.
    /// `global.azure-devices-provisioning.net` or `localhost:8443`.
    pub endpoint: String,
    /// The ID scope.
    pub id_scope: IdScope,
    /// The registration ID.
    pub registration_id: RegistrationId,
    /// The device's credential.
    pub credential: Credential,
    /// Which protocol [`register`] uses (HTTPS unless only the `mqtt` feature is on).
    pub transport: Transport,
    /// Custom allocation payload (`payload` of the register body).
    pub payload: Option<Value>,
    /// CA certificates to trust instead of the platform roots.
    pub ca: Option<TrustedCa>,
    /// `api-version` query parameter, or MQTT user-name field ([`DEFAULT_DEVICE_API_VERSION`]).
    pub api_version: String,
    /// Lifetime of each SAS token (3600 s).
    pub token_lifetime: Duration,
    /// Polling and retry tunables. When `jitter_seed` is `None`, a random seed is picked.
    pub flow: FlowConfig,
}

impl RegisterOptions {
    /// Options with the defaults: the default [`Transport`], no payload, platform roots,
    /// api-version `2021-06-01`, 1 h tokens, default flow tunables.
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
            transport: Transport::default(),
            payload: None,
            ca: None,
            api_version: DEFAULT_DEVICE_API_VERSION.into(),
            token_lifetime: Duration::from_secs(3600),
            flow: FlowConfig::default(),
        }
    }

    /// The token signer and the flow, with a random jitter seed unless one was set.
    pub(crate) fn start(&self) -> Result<(Signer, RegistrationFlow), Error> {
        let key = self.credential.signing_key(&self.registration_id)?;
        let mut config = self.flow.clone();
        if config.jitter_seed.is_none() {
            config.jitter_seed = Some(random_seed(&self.registration_id));
        }
        let signer = Signer {
            resource: format!("{}/registrations/{}", self.id_scope, self.registration_id),
            key,
            lifetime: self.token_lifetime,
        };
        let flow = RegistrationFlow::with_config(
            self.id_scope.clone(),
            self.registration_id.clone(),
            self.payload.clone(),
            config,
        );
        Ok((signer, flow))
    }
}

/// Registers a device over `opts.transport` and waits for its assignment: the one entry point
/// for code that lets its user pick the protocol.
///
/// Returns the registration state (assigned hub, device ID, …) once the service reports
/// `assigned`. See [`Error::Registration`] for failures the service reported and
/// [`Error::UntrustedServer`] when the server's CA is not trusted.
pub async fn register(opts: RegisterOptions) -> Result<DeviceRegistrationResult, Error> {
    match opts.transport {
        #[cfg(feature = "https")]
        Transport::Https => super::https::register_https(opts).await,
        #[cfg(feature = "mqtt")]
        Transport::Mqtt => super::mqtt::register_mqtt(opts).await,
    }
}

/// Mints the device's SAS tokens: `sr={idScope}/registrations/{registrationId}`,
/// `skn=registration`.
pub(crate) struct Signer {
    resource: String,
    key: Option<SigningKey>,
    lifetime: Duration,
}

impl Signer {
    /// A token valid from `now_unix` for the configured lifetime; `None` for X.509 devices.
    pub(crate) fn token(&self, now_unix: u64) -> Option<String> {
        let expiry = now_unix.saturating_add(self.lifetime.as_secs());
        let key = self.key.as_ref()?;
        Some(generate_token(
            &self.resource,
            key,
            expiry,
            Some(DEVICE_KEY_NAME),
        ))
    }
}

/// Seconds since the Unix epoch, from the system clock (for token expiry only).
pub(crate) fn unix_now() -> u64 {
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

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn group_key_is_derived_per_device() {
        // dps-device-protocol.md §6.4.
        let group = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
        let rid = RegistrationId::new("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
        let key = Credential::GroupKey(group.into())
            .signing_key(&rid)
            .unwrap()
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

    #[test]
    fn signer_mints_device_tokens() {
        let opts = RegisterOptions::new(
            "localhost",
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("dev-1").unwrap(),
            Credential::SymmetricKey(KEY.into()),
        );
        let (signer, flow) = opts.start().unwrap();
        assert_eq!(flow.registration_id().as_str(), "dev-1");
        let token = signer.token(1_795_766_064).unwrap();
        assert!(
            token.ends_with("&se=1795769664&skn=registration"),
            "{token}"
        );
        let token = SasToken::parse(&token).unwrap();
        let key = SigningKey::from_base64(KEY).unwrap();
        assert_eq!(
            verify_device(&token, "0ne00000001", "dev-1", &[&key], 1_795_766_064),
            Ok(0)
        );
    }

    #[test]
    fn default_transport_and_ports() {
        #[cfg(feature = "https")]
        assert_eq!(Transport::default(), Transport::Https);
        #[cfg(feature = "https")]
        assert_eq!(Transport::Https.default_port(), 443);
        #[cfg(feature = "mqtt")]
        assert_eq!(Transport::Mqtt.default_port(), 8883);
    }
}
