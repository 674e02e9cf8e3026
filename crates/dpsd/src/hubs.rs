//! How dpsd reaches its linked hubs: the connector settings of a `[[scope.hub]]` and the
//! [`HubRouter`] built from them (one connector per hub host name).
//!
//! ```toml
//! [[scope.hub]]                      # the in-process registry (the default kind)
//! host_name = "dev-hub.localhost"
//!
//! [[scope.hub]]
//! host_name = "myhub.azure-devices.net"
//! kind = "azure-iothub"
//! connection_string_env = "MYHUB_CONNECTION_STRING"   # or connection_string = "HostName=…"
//! timeout_ms = 10000
//! retries = 2
//!
//! [[scope.hub]]
//! host_name = "broker.example.net"
//! kind = "mqtt-broker"
//! url = "mqtts://broker.example.net:8883"
//! username = "dps-rs"
//! password_env = "BROKER_ADMIN_PASSWORD"
//! trust_root = "broker-ca.pem"
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dps_connect::azure::HubConnectionString;
use dps_connect::{
    AzureHubConfig, AzureHubRegistry, HubConnector, HubRouter, InProcessHubRegistry,
    MosquittoConfig, MosquittoHubRegistry, RetryPolicy,
};
use dps_types::HubHostName;
use serde::{Deserialize, Serialize};

use crate::config::{Hub, Scope};
use crate::store::AnyStore;

/// The connector of a linked hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HubKind {
    /// The in-process registry (identities kept in memory and written through to the store).
    #[default]
    Embedded,
    /// An Azure IoT hub's identity registry.
    AzureIothub,
    /// A Mosquitto broker with the dynamic-security plugin.
    MqttBroker,
}

impl Hub {
    /// An in-process hub with weight 1 in allocation.
    pub fn embedded(host_name: &str) -> Self {
        Self {
            host_name: host_name.to_owned(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            region: None,
            kind: HubKind::Embedded,
            connection_string: None,
            connection_string_env: None,
            url: None,
            api_version: None,
            username: None,
            password: None,
            password_env: None,
            trust_root: None,
            timeout_ms: None,
            retries: None,
        }
    }

    fn retry(&self) -> RetryPolicy {
        let mut r = RetryPolicy::default();
        if let Some(ms) = self.timeout_ms {
            r.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = self.retries {
            r.retries = n;
        }
        r
    }

    /// A secret given inline or through an environment variable (exactly one of them).
    fn secret(&self, what: &str, inline: Option<&String>, env: Option<&String>) -> Result<String> {
        match (inline, env) {
            (Some(v), None) => Ok(v.clone()),
            (None, Some(var)) => std::env::var(var).with_context(|| {
                format!(
                    "hub {}: environment variable {var} ({what})",
                    self.host_name
                )
            }),
            (Some(_), Some(_)) => bail!(
                "hub {}: give {what} inline or through _env, not both",
                self.host_name
            ),
            (None, None) => bail!(
                "hub {}: {what} is required for kind {:?}",
                self.host_name,
                self.kind
            ),
        }
    }

    fn trust_root_pem(&self) -> Result<Option<Vec<u8>>> {
        self.trust_root
            .as_ref()
            .map(|p| {
                std::fs::read(p)
                    .with_context(|| format!("hub {}: reading {}", self.host_name, p.display()))
            })
            .transpose()
    }

    fn connector(&self, embedded: &InProcessHubRegistry) -> Result<HubConnector> {
        Ok(match self.kind {
            HubKind::Embedded => HubConnector::Embedded(embedded.clone()),
            HubKind::AzureIothub => {
                let cs = self.secret(
                    "connection_string",
                    self.connection_string.as_ref(),
                    self.connection_string_env.as_ref(),
                )?;
                let cs = HubConnectionString::parse(&cs)
                    .with_context(|| format!("hub {}: connection string", self.host_name))?;
                if !cs.host_name.eq_ignore_ascii_case(&self.host_name) {
                    bail!(
                        "hub {}: the connection string is for {}",
                        self.host_name,
                        cs.host_name
                    );
                }
                let mut cfg = AzureHubConfig::new(cs);
                cfg.endpoint = self.url.clone();
                if let Some(v) = &self.api_version {
                    cfg.api_version = v.clone();
                }
                cfg.trust_roots_pem = self.trust_root_pem()?;
                cfg.retry = self.retry();
                HubConnector::Azure(
                    AzureHubRegistry::new(cfg)
                        .with_context(|| format!("hub {}", self.host_name))?,
                )
            }
            HubKind::MqttBroker => {
                let url = self.url.as_deref().with_context(|| {
                    format!(
                        "hub {}: url (mqtt[s]://host:port) is required",
                        self.host_name
                    )
                })?;
                let user = self
                    .username
                    .as_deref()
                    .with_context(|| format!("hub {}: username is required", self.host_name))?;
                let password = self.secret(
                    "password",
                    self.password.as_ref(),
                    self.password_env.as_ref(),
                )?;
                let pem = self.trust_root_pem()?;
                let mut cfg = MosquittoConfig::new(url, user, &password, pem.as_deref())
                    .with_context(|| format!("hub {}", self.host_name))?;
                cfg.retry = self.retry();
                HubConnector::Mosquitto(MosquittoHubRegistry::new(cfg))
            }
        })
    }
}

/// The in-process registry for `embedded` hubs, journaled in `store`: it holds the stored
/// identities of every hub configured `embedded` (those of hubs no longer configured so stay
/// in the store, untouched) and writes every change through before answering.
pub async fn journaled_registry(
    scopes: &[Scope],
    store: &AnyStore,
) -> Result<InProcessHubRegistry> {
    let embedded: std::collections::HashSet<String> = scopes
        .iter()
        .flat_map(|s| &s.hubs)
        .filter(|h| h.kind == HubKind::Embedded)
        .map(|h| h.host_name.to_ascii_lowercase())
        .collect();
    let registry = InProcessHubRegistry::with_journal(Arc::new(store.clone()));
    let stored = store
        .hub_identities()
        .await
        .context("loading the identities of embedded hubs")?;
    let n = registry.restore(
        stored
            .into_iter()
            .filter(|id| embedded.contains(id.hub.as_str())),
    );
    if n > 0 {
        tracing::info!(identities = n, "embedded hub identities restored");
    }
    Ok(registry)
}

/// The router for every hub of every scope, with `embedded` hubs served by `embedded` (returned
/// with it). A hub named by several scopes must be configured the same way in each.
pub fn build_router(
    scopes: &[Scope],
    embedded: InProcessHubRegistry,
) -> Result<(HubRouter, InProcessHubRegistry)> {
    let mut router = HubRouter::new();
    let mut kinds = std::collections::HashMap::new();
    for h in scopes.iter().flat_map(|s| &s.hubs) {
        let host = HubHostName::new(&h.host_name)
            .with_context(|| format!("hub host_name {:?}", h.host_name))?;
        if let Some(k) = kinds.insert(host.clone(), h.kind)
            && k != h.kind
        {
            bail!("hub {} is configured with two kinds", h.host_name);
        }
        router.route(host, h.connector(&embedded)?);
    }
    Ok((router, embedded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hubs(toml_text: &str) -> Vec<Hub> {
        #[derive(Deserialize)]
        struct Doc {
            hub: Vec<Hub>,
        }
        toml::from_str::<Doc>(toml_text).unwrap().hub
    }

    fn scope(hubs: Vec<Hub>) -> Scope {
        let mut s: Scope = toml::from_str("id_scope = \"0ne00000001\"").unwrap();
        s.hubs = hubs;
        s
    }

    #[test]
    fn kinds_and_settings() {
        let h = hubs(
            r#"
[[hub]]
host_name = "dev-hub.localhost"

[[hub]]
host_name = "myhub.azure-devices.net"
kind = "azure-iothub"
connection_string = "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=ZHBzLXJzIGV4YW1wbGUgcG9saWN5IGtleSAzMmJ5dGU="
timeout_ms = 2500
retries = 4

[[hub]]
host_name = "broker.example.net"
kind = "mqtt-broker"
url = "mqtt://127.0.0.1:1884"
username = "dps-rs"
password = "secret"
"#,
        );
        assert_eq!(h[0].kind, HubKind::Embedded);
        assert_eq!(h[1].retry().timeout, Duration::from_millis(2500));
        assert_eq!(h[1].retry().retries, 4);
        let (router, _) = build_router(&[scope(h)], InProcessHubRegistry::default()).unwrap();
        let kind = |n: &str| {
            router
                .connector(&HubHostName::new(n).unwrap())
                .map(HubConnector::kind)
        };
        assert_eq!(kind("dev-hub.localhost"), Some("embedded"));
        assert_eq!(kind("myhub.azure-devices.net"), Some("azure-iothub"));
        assert_eq!(kind("broker.example.net"), Some("mqtt-broker"));
    }

    #[test]
    fn misconfigurations_are_refused() {
        let bad = [
            // A connection string for another hub.
            "[[hub]]\nhost_name = \"a.net\"\nkind = \"azure-iothub\"\nconnection_string = \"HostName=b.net;SharedAccessKeyName=p;SharedAccessKey=AAAA\"\n",
            // No connection string at all.
            "[[hub]]\nhost_name = \"a.net\"\nkind = \"azure-iothub\"\n",
            // An unset environment variable.
            "[[hub]]\nhost_name = \"a.net\"\nkind = \"azure-iothub\"\nconnection_string_env = \"DPSD_TEST_UNSET_VARIABLE_7f3a\"\n",
            // A broker without credentials, and one with a bad URL.
            "[[hub]]\nhost_name = \"b.net\"\nkind = \"mqtt-broker\"\nurl = \"mqtt://127.0.0.1:1\"\n",
            "[[hub]]\nhost_name = \"b.net\"\nkind = \"mqtt-broker\"\nurl = \"http://x\"\nusername = \"u\"\npassword = \"p\"\n",
        ];
        for text in bad {
            let err =
                build_router(&[scope(hubs(text))], InProcessHubRegistry::default()).unwrap_err();
            assert!(!format!("{err:#}").contains("AAAA"), "no secrets in errors");
        }
        assert!(toml::from_str::<Hub>("host_name = \"a\"\nkind = \"amqp\"\n").is_err());
        // The same hub under two kinds in two scopes.
        let a = hubs("[[hub]]\nhost_name = \"x.net\"\n");
        let b = hubs(
            "[[hub]]\nhost_name = \"x.net\"\nkind = \"mqtt-broker\"\nurl = \"mqtt://h:1\"\nusername = \"u\"\npassword = \"p\"\n",
        );
        assert!(build_router(&[scope(a), scope(b)], InProcessHubRegistry::default()).is_err());
    }

    fn device(hub: &str, id: &str) -> dps_service::HubDevice {
        dps_service::HubDevice {
            hub: HubHostName::new(hub).unwrap(),
            device_id: id.to_owned(),
            registration_id: dps_types::RegistrationId::new(id).unwrap(),
            auth: dps_service::HubAuth::CertificateAuthority,
            capabilities: dps_types::DeviceCapabilities::default(),
            initial_twin: None,
            reset_twin: true,
            previous_hub: None,
        }
    }

    /// Identities provisioned through the router of an `embedded` hub survive a restart: they
    /// are in the registry built over the reopened store, and a removed one stays removed.
    #[tokio::test]
    async fn embedded_identities_survive_a_restart() {
        use dps_service::HubRegistry;
        let dir = std::env::temp_dir().join(format!("dpsd-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dps.redb");
        let _ = std::fs::remove_file(&path);
        let scopes = [scope(hubs("[[hub]]\nhost_name = \"Dev-Hub.localhost\"\n"))];
        {
            let store = AnyStore::Embedded(dps_store_redb::RedbStore::open(&path).unwrap());
            let registry = journaled_registry(&scopes, &store).await.unwrap();
            assert!(registry.devices().is_empty());
            let (router, _) = build_router(&scopes, registry).unwrap();
            for id in ["dev-1", "dev-2"] {
                router
                    .provision(device("dev-hub.localhost", id))
                    .await
                    .unwrap();
            }
            router
                .provision(device("dev-hub.localhost", "dev-1"))
                .await
                .unwrap();
            let hub = HubHostName::new("dev-hub.localhost").unwrap();
            router.remove(&hub, "dev-2").await.unwrap();
        }
        let store = AnyStore::Embedded(dps_store_redb::RedbStore::open(&path).unwrap());
        let registry = journaled_registry(&scopes, &store).await.unwrap();
        let devices = registry.devices();
        assert_eq!(devices.len(), 1, "{devices:?}");
        assert_eq!(devices[0].device_id, "dev-1");
        assert_eq!(devices[0].hub.as_str(), "dev-hub.localhost");
        assert_eq!(devices[0].auth_kind, "certificateAuthority");
        assert_eq!(devices[0].writes, 2);
        // A hub no longer configured `embedded` gets none of its old identities.
        let other = [scope(hubs("[[hub]]\nhost_name = \"other.localhost\"\n"))];
        assert!(
            journaled_registry(&other, &store)
                .await
                .unwrap()
                .devices()
                .is_empty()
        );
        drop((registry, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
