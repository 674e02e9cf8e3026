//! dpsd's configuration file (TOML) and the development instance used when there is none.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub service: ServiceSection,
    #[serde(default, rename = "scope")]
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub allocation: crate::alloc_config::AllocationSection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Device + service REST API (TLS), and MQTT over WebSocket.
    pub https: SocketAddr,
    /// MQTT over TLS (8883 by convention). Without a config file: `127.0.0.1:8883`.
    #[serde(default)]
    pub mqtt: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            https: SocketAddr::from(([127, 0, 0, 1], 8443)),
            mqtt: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// PostgreSQL connection URL (`kind = "postgres"`).
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL schema holding dps-rs's tables (default `dps`).
    #[serde(default)]
    pub schema: Option<String>,
    /// PostgreSQL pool size (default 16).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// TLS to PostgreSQL: `disable` (default), `require` (encrypted, certificate not checked)
    /// or `verify-full` (needs `ssl_ca_file`).
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PEM file of the CA certificates that `sslmode = "verify-full"` trusts.
    #[serde(default)]
    pub ssl_ca_file: Option<PathBuf>,
}

impl Storage {
    /// The PostgreSQL TLS mode of `sslmode` / `ssl_ca_file`.
    pub fn pg_tls(&self) -> anyhow::Result<dps_store_pg::PgTls> {
        dps_store_pg::PgTls::from_mode(
            self.sslmode.as_deref().unwrap_or("disable"),
            self.ssl_ca_file.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("[storage] {e}"))
    }
}

fn default_kind() -> String {
    "embedded".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./dps-data")
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            kind: default_kind(),
            data_dir: default_data_dir(),
            url: None,
            schema: None,
            max_connections: None,
            sslmode: None,
            ssl_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Retry-After sent with `assigning` answers, seconds.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
}

fn default_retry_after() -> u32 {
    2
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            retry_after_secs: default_retry_after(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub id_scope: String,
    #[serde(default = "default_host")]
    pub service_host_name: String,
    #[serde(default = "default_policy")]
    pub allocation_policy: String,
    #[serde(default, rename = "hub")]
    pub hubs: Vec<Hub>,
    #[serde(default, rename = "policy")]
    pub policies: Vec<Policy>,
    #[serde(default, rename = "ca", skip_serializing_if = "Vec::is_empty")]
    pub cas: Vec<crate::ca::ScopeCaConfig>,
    #[serde(default)]
    pub custom_allocation: Option<crate::alloc_config::CustomAllocationSection>,
}

fn default_host() -> String {
    "localhost".into()
}
fn default_policy() -> String {
    "hashed".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub host_name: String,
    #[serde(default = "one")]
    pub allocation_weight: u32,
    #[serde(default = "yes")]
    pub apply_allocation_policy: bool,
    /// The hub's region, for lowest latency.
    #[serde(default)]
    pub region: Option<String>,
    /// The connector (`embedded`, `azure-iothub`, `mqtt-broker`) and its settings: crate::hubs.
    #[serde(default)]
    pub kind: crate::hubs::HubKind,
    #[serde(default)]
    pub connection_string: Option<String>,
    #[serde(default)]
    pub connection_string_env: Option<String>,
    /// Azure: the registry endpoint to call instead of `https://{host_name}`; broker: its URL.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub trust_root: Option<PathBuf>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub primary_key: String,
    #[serde(default)]
    pub secondary_key: Option<String>,
    pub rights: Vec<String>,
}

impl Config {
    /// Reads a config file; relative paths in it are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.storage.data_dir);
        if let Some(t) = cfg.tls.as_mut() {
            rebase(&mut t.cert);
            rebase(&mut t.key);
        }
        cfg.scopes
            .iter_mut()
            .flat_map(|s| s.cas.iter_mut())
            .for_each(|c| c.rebase(base));
        crate::alloc_config::rebase(&mut cfg, base);
        for h in cfg.scopes.iter_mut().flat_map(|s| s.hubs.iter_mut()) {
            h.trust_root.iter_mut().for_each(rebase);
        }
        if cfg.scopes.is_empty() {
            bail!("{}: at least one [[scope]] is required", path.display());
        }
        Ok(cfg)
    }
}

/// The generated, persisted scope of a development instance.
pub fn dev_scope(data_dir: &Path) -> Result<Scope> {
    let path = data_dir.join("dev-scope.toml");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return toml::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let mut id = [0u8; 4];
    rand::fill(&mut id);
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let scope = Scope {
        id_scope: format!("0ne{:08X}", u32::from_be_bytes(id)),
        service_host_name: default_host(),
        allocation_policy: default_policy(),
        hubs: vec![Hub::embedded("dev-hub.localhost")],
        cas: Vec::new(),
        policies: vec![Policy {
            name: "provisioningserviceowner".into(),
            primary_key: base64::engine::general_purpose::STANDARD.encode(key),
            secondary_key: None,
            rights: [
                "ServiceConfig",
                "EnrollmentRead",
                "EnrollmentWrite",
                "RegistrationStatusRead",
                "RegistrationStatusWrite",
            ]
            .map(String::from)
            .to_vec(),
        }],
        custom_allocation: None,
    };
    crate::devca::write_private(&path, toml::to_string(&scope)?.as_bytes())?;
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let cfg: Config = toml::from_str(
            r#"
[listen]
https = "127.0.0.1:8443"

[tls]
cert = "server-chain.pem"
key = "server-key.pem"

[storage]
kind = "memory"
data_dir = "./dps-data"

[[scope]]
id_scope = "0ne00000001"
service_host_name = "localhost"
allocation_policy = "hashed"

[[scope.hub]]
host_name = "hub-a.example.net"
allocation_weight = 1
apply_allocation_policy = true

[[scope.policy]]
name = "provisioningserviceowner"
primary_key = "dGVzdC1rZXktc2VydmljZS0wMTIzNDU2Nzg5YWJjZGU="
rights = ["ServiceConfig", "EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"]
"#,
        )
        .unwrap();
        assert_eq!(cfg.scopes[0].hubs[0].host_name, "hub-a.example.net");
        assert_eq!(cfg.scopes[0].policies[0].rights.len(), 5);
        assert!(toml::from_str::<Config>("[listen]\nhttps = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("[lisen]\n").is_err());
    }
}
