//! The `mqtt-broker` connector: a Mosquitto 2.0 broker with the dynamic-security plugin, driven
//! over MQTT on `$CONTROL/dynamic-security/v1` (hub-registries.md part B).
//!
//! Each device gets a broker client with username = client ID = device ID, a password derived
//! from its symmetric key ([`device_password`]: the device computes the same value, DPS never
//! hands out or stores it), and its own role `dps-device-<id>` allowing publish, subscribe and
//! receive on `<topic_root>/<id>/#` (dynsec has no `%c` substitution, so one role per device;
//! every ACL says `allow: true`; the role is added with `addClientRole` after `createClient`).
//! Re-provisioning resets the password and client-ID binding and re-enables the client, which
//! disconnects a connected device (the broker's rule). Removal deletes the client, then the role.
//! The broker has no twin: initial twins are not written and nothing is migrated from it.
//!
//! Each call opens one admin connection (clean session), subscribes to the response topic,
//! sends one tagged batch and waits for the response carrying its tag, within the configured
//! timeout and retries. The admin client must therefore not be bound to a client ID.

mod control;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use dps_attest::sas::SigningKey;
use dps_service::{HubAuth, HubDevice, HubError, HubRegistry};
use dps_types::{HubHostName, SymmetricKey};
use serde_json::{Value, json};

use crate::retry::RetryPolicy;
pub use control::{MosquittoConfig, MosquittoConfigError};

/// The password of `device_id`'s broker client on `hub`:
/// `base64(HMAC-SHA256(key, "{hub}/devices/{device_id}"))`, with the device's (derived) primary
/// key. Devices compute it the same way; the attestation key itself never reaches the broker.
pub fn device_password(key: &SymmetricKey, hub: &str, device_id: &str) -> String {
    let k = SigningKey::from_bytes(&key.decode());
    base64::engine::general_purpose::STANDARD
        .encode(k.sign(format!("{hub}/devices/{device_id}").as_bytes()))
}

/// A connector to one Mosquitto broker.
#[derive(Debug, Clone)]
pub struct MosquittoHubRegistry {
    cfg: Arc<MosquittoConfig>,
    seq: Arc<AtomicU64>,
}

/// Device IDs the broker cannot hold safely: wildcards, topic separators, NUL, `$` first.
fn check_device_id(id: &str) -> Result<(), HubError> {
    if id.is_empty()
        || id.starts_with('$')
        || id.contains(['+', '#', '/', '\0'])
        || id.len() > 65_535
    {
        return Err(HubError::Rejected(format!(
            "device ID {id:?} cannot be an MQTT broker client (no '+', '#', '/', NUL or leading '$')"
        )));
    }
    Ok(())
}

fn role(device_id: &str) -> String {
    format!("dps-device-{device_id}")
}

/// The `error` of a response, if any.
fn error_of(r: &Value) -> Option<&str> {
    r.get("error").and_then(Value::as_str)
}

/// Fails unless every response is a success or an error listed in `tolerated`.
fn expect(responses: &[Value], tolerated: &[&str], step: &str) -> Result<(), HubError> {
    for r in responses {
        if let Some(e) = error_of(r).filter(|e| !tolerated.contains(e)) {
            let cmd = r.get("command").and_then(Value::as_str).unwrap_or("?");
            return Err(HubError::Rejected(format!("{step}: {cmd}: {e}")));
        }
    }
    Ok(())
}

impl MosquittoHubRegistry {
    /// Builds the connector (no connection is made yet).
    pub fn new(cfg: MosquittoConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Timeouts and retries in use.
    pub fn retry(&self) -> RetryPolicy {
        self.cfg.retry
    }

    async fn control(&self, commands: Vec<Value>) -> Result<Vec<Value>, HubError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        control::run(&self.cfg, n, commands).await
    }
}

impl HubRegistry for MosquittoHubRegistry {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        check_device_id(&d.device_id)?;
        let key = match &d.auth {
            HubAuth::SymmetricKey { primary, .. } => primary,
            // A broker password needs a key: X.509 identities would need the broker's TLS client auth.
            other => {
                return Err(HubError::Rejected(format!(
                    "the mqtt-broker connector cannot create {} identities",
                    other.kind()
                )));
            }
        };
        let id = d.device_id.as_str();
        let password = device_password(key, d.hub.as_str(), id);
        let topic = format!("{}/{id}/#", self.cfg.topic_root);
        let acl = |t: &str| json!({"acltype": t, "topic": topic, "allow": true});
        let created = self
            .control(vec![
                json!({"command": "createRole", "rolename": role(id), "acls": [
                    acl("publishClientSend"), acl("subscribePattern"), acl("publishClientReceive")]}),
                json!({"command": "createClient", "username": id, "password": password,
                       "clientid": id}),
                json!({"command": "addClientRole", "username": id, "rolename": role(id)}),
            ])
            .await?;
        // 2.0.11 answers "Internal error" to addClientRole when the client already has the role.
        expect(
            &created,
            &[
                "Role already exists",
                "Client already exists",
                "Internal error",
            ],
            "creating the broker client",
        )?;
        let existed = created.iter().any(|r| {
            r.get("command").and_then(Value::as_str) == Some("createClient")
                && error_of(r) == Some("Client already exists")
        });
        if existed {
            let updated = self
                .control(vec![
                    json!({"command": "setClientPassword", "username": id, "password": password}),
                    json!({"command": "setClientId", "username": id, "clientid": id}),
                    json!({"command": "enableClient", "username": id}),
                ])
                .await?;
            expect(&updated, &[], "updating the broker client")?;
        }
        Ok(())
    }

    async fn remove(&self, _hub: &HubHostName, device_id: &str) -> Result<(), HubError> {
        if check_device_id(device_id).is_err() {
            // Such an ID was never created here: nothing to remove.
            return Ok(());
        }
        let r = self
            .control(vec![
                json!({"command": "deleteClient", "username": device_id}),
                json!({"command": "deleteRole", "rolename": role(device_id)}),
            ])
            .await?;
        expect(
            &r,
            &["Client not found", "Role not found"],
            "removing the broker client",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_derived_not_the_key() {
        let key = SymmetricKey::new("dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==").unwrap();
        let p = device_password(&key, "broker.example.net", "dev-1");
        assert_eq!(p.len(), 44);
        assert_ne!(p, key.expose_base64());
        assert_ne!(p, device_password(&key, "broker.example.net", "dev-2"));
        assert_eq!(p, device_password(&key, "broker.example.net", "dev-1"));
    }

    #[test]
    fn unsafe_device_ids_are_refused() {
        for bad in ["a/b", "a+b", "a#", "$sys", "", "a\0"] {
            assert!(check_device_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_device_id("dev-1.x_y").is_ok());
    }

    #[test]
    fn tolerated_errors() {
        let r = vec![
            json!({"command":"createRole","error":"Role already exists"}),
            json!({"command":"createClient"}),
        ];
        assert!(expect(&r, &["Role already exists"], "s").is_ok());
        assert_eq!(
            expect(&r, &[], "s"),
            Err(HubError::Rejected(
                "s: createRole: Role already exists".into()
            ))
        );
    }
}
