//! One round trip on Mosquitto's dynamic-security control topic, and the broker's connection
//! settings.

use std::sync::Arc;
use std::time::Duration;

use dps_service::HubError;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::retry::{Attempt, RetryPolicy};

const REQUEST: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";

/// Why a broker configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MosquittoConfigError {
    /// Not `mqtt://host:port` or `mqtts://host:port`.
    #[error("the broker URL must be mqtt://host[:port] or mqtts://host[:port]")]
    Url,
    /// The trust roots are not valid PEM certificates.
    #[error("the broker's trust roots are not valid PEM certificates")]
    TrustRoots,
    /// rustls refused the TLS settings.
    #[error("cannot build the broker's TLS settings: {0}")]
    Tls(String),
}

/// How to reach and administer one broker.
#[derive(Clone)]
pub struct MosquittoConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS settings (`mqtts://`), `None` for plain TCP (loopback only, please).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The admin client's username (a dynsec client allowed on the control topics).
    pub username: String,
    /// Its password.
    pub password: String,
    /// Devices get `<topic_root>/<device id>/#`.
    pub topic_root: String,
    /// Timeouts and retries of one control round trip.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for MosquittoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MosquittoConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("username", &self.username)
            .field("topic_root", &self.topic_root)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl MosquittoConfig {
    /// A configuration for `url` (`mqtt://host[:port]`, default 1883, or `mqtts://host[:port]`,
    /// default 8883) with this admin account. For `mqtts`, `trust_roots_pem` replaces the
    /// platform's roots when given.
    pub fn new(
        url: &str,
        username: &str,
        password: &str,
        trust_roots_pem: Option<&[u8]>,
    ) -> Result<Self, MosquittoConfigError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(MosquittoConfigError::Url);
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| MosquittoConfigError::Url)?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(MosquittoConfigError::Url);
        }
        let tls = if tls {
            Some(Arc::new(client_config(trust_roots_pem)?))
        } else {
            None
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            username: username.to_owned(),
            password: password.to_owned(),
            topic_root: "devices".to_owned(),
            retry: RetryPolicy::default(),
        })
    }
}

fn client_config(pem: Option<&[u8]>) -> Result<rustls::ClientConfig, MosquittoConfigError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let tls_err = |e: rustls::Error| MosquittoConfigError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let Some(pem) = pem else {
        return Ok(builder
            .with_platform_verifier()
            .map_err(tls_err)?
            .with_no_client_auth());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| MosquittoConfigError::TrustRoots)?;
        roots
            .add(cert)
            .map_err(|_| MosquittoConfigError::TrustRoots)?;
    }
    if roots.is_empty() {
        return Err(MosquittoConfigError::TrustRoots);
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Sends `commands` (each tagged with correlation data `dps-<n>-<i>`) and returns the
/// responses carrying the tag, retrying per the configuration.
pub(super) async fn run(
    cfg: &MosquittoConfig,
    n: u64,
    mut commands: Vec<Value>,
) -> Result<Vec<Value>, HubError> {
    let tag = format!("dps-{}-{n}", std::process::id());
    for (i, c) in commands.iter_mut().enumerate() {
        if let Value::Object(m) = c {
            m.insert("correlationData".into(), json!(format!("{tag}-{i}")));
        }
    }
    let payload = json!({ "commands": commands }).to_string();
    let what = format!("{}:{} {REQUEST}", cfg.host, cfg.port);
    cfg.retry
        .run(&what, || attempt(cfg, &tag, &payload, &what))
        .await
}

async fn attempt(
    cfg: &MosquittoConfig,
    tag: &str,
    payload: &str,
    what: &str,
) -> Attempt<Vec<Value>> {
    let mut opts = MqttOptions::new(format!("{tag}-admin"), cfg.host.clone(), cfg.port);
    opts.set_credentials(cfg.username.clone(), cfg.password.clone())
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some(tls) = &cfg.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut events) = AsyncClient::new(opts, 8);
    let result = loop {
        let event = match events.poll().await {
            Ok(ev) => ev,
            Err(ConnectionError::ConnectionRefused(code)) => {
                break match code {
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                        Attempt::Done(Err(HubError::Unauthorized(format!(
                            "{what}: the broker refused the admin account ({code:?})"
                        ))))
                    }
                    _ => Attempt::Retry(
                        HubError::Unavailable(format!("{what}: connection refused ({code:?})")),
                        None,
                    ),
                };
            }
            Err(e) => {
                break Attempt::Retry(HubError::Unavailable(format!("{what}: {e}")), None);
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(_))
                if client.subscribe(RESPONSE, QoS::AtMostOnce).await.is_err() =>
            {
                break Attempt::Retry(
                    HubError::Unavailable(format!("{what}: connection closed")),
                    None,
                );
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    break Attempt::Done(Err(HubError::Unauthorized(format!(
                        "{what}: the admin account may not subscribe to {RESPONSE}"
                    ))));
                }
                if client
                    .publish(REQUEST, QoS::AtMostOnce, false, payload.as_bytes().to_vec())
                    .await
                    .is_err()
                {
                    break Attempt::Retry(
                        HubError::Unavailable(format!("{what}: connection closed")),
                        None,
                    );
                }
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == RESPONSE => {
                if let Some(responses) = ours(&p.payload, tag) {
                    break Attempt::Done(Ok(responses));
                }
            }
            _ => {}
        }
    };
    let _ = client.try_disconnect();
    result
}

/// The responses of a response payload when they carry `tag`.
fn ours(payload: &[u8], tag: &str) -> Option<Vec<Value>> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let responses = v.get("responses")?.as_array()?;
    let mine = responses.iter().any(|r| {
        r.get("correlationData")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix(tag))
            .and_then(|c| c.strip_prefix('-'))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    });
    mine.then(|| responses.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = MosquittoConfig::new("mqtt://127.0.0.1:1999", "a", "p", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls.is_none()),
            ("127.0.0.1", 1999, true)
        );
        let d = MosquittoConfig::new("mqtt://broker", "a", "p", None).unwrap();
        assert_eq!(d.port, 1883);
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://h:port",
            "mqtts://h",
            "mqtts://h:1",
        ] {
            let r = MosquittoConfig::new(bad, "a", "p", Some(b"not pem"));
            assert!(r.is_err(), "{bad}");
        }
        assert!(!format!("{c:?}").contains("\"p\""), "no password in Debug");
    }

    #[test]
    fn only_tagged_responses_are_ours() {
        let p = br#"{"responses":[{"command":"createClient","correlationData":"dps-1-2-0"}]}"#;
        assert!(ours(p, "dps-1-2").is_some());
        assert!(ours(p, "dps-1-20").is_none());
        assert!(ours(p, "dps-1").is_none());
        assert!(ours(b"junk", "dps-1-2").is_none());
    }
}
