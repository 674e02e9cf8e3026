//! A local stand-in for an Azure IoT hub's identity registry, written from the public REST
//! reference (hub-registries.md part A): HTTPS on 127.0.0.1 with a certificate made here,
//! `PUT`/`GET`/`DELETE /devices/{id}` and `GET`/`PATCH`/`PUT /twins/{id}` with `api-version`,
//! SAS authorisation against one shared access policy, identity and twin etags with `If-Match`
//! (`409 DeviceAlreadyExists` for a PUT without `If-Match` on an existing ID, `412` on a stale
//! etag), and the classic error envelope. Faults can be injected to play a hub that refuses,
//! hangs or is down. The server stops when its [`AzureRegistryServer`] is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use dps_testkit::azure_registry::AzureRegistryServer;
//!
//! let hub = AzureRegistryServer::start("hub-a.azure-devices.net").await;
//! let connector = hub.connector(dps_connect::RetryPolicy::default());
//! assert!(hub.device("dev-1").is_none());
//! # let _ = connector;
//! # }
//! ```

mod handlers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use dps_connect::azure::HubConnectionString;
use dps_connect::{AzureHubConfig, AzureHubRegistry, RetryPolicy};
use serde_json::Value;
use tokio::task::JoinHandle;

use axum::serve::Listener as _;

use crate::tls_listener::TlsListener;

/// The shared access policy name the server accepts.
pub const POLICY: &str = "iothubowner";
/// Its key (base64).
pub const POLICY_KEY: &str = "dGVzdC1odWItcG9saWN5LWtleS0wMTIzNDU2Nzg5YWI=";
/// The only `api-version` the server accepts.
pub const API_VERSION: &str = "2021-04-12";

/// A fault the server plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and error code name (e.g. `403`, `IotHubQuotaExceeded`).
    Refuse(u16, &'static str),
    /// Never answer.
    Hang,
}

/// One identity as stored: the device document, its twin and their etags.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub device: Value,
    pub twin: Value,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub host_name: String,
    pub devices: BTreeMap<String, Stored>,
    pub counter: u64,
    /// Fault and the method it applies to (`None`: every method).
    pub fault: Option<(Fault, Option<String>)>,
    /// How many more requests get the fault (`None`: until healed).
    pub fault_budget: Option<u32>,
    /// `METHOD /path` of every request that passed authorisation.
    pub log: Vec<String>,
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running registry server. Dropping it stops the server.
#[derive(Debug)]
pub struct AzureRegistryServer {
    host_name: String,
    addr: SocketAddr,
    ca_pem: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl AzureRegistryServer {
    /// Starts a registry for hub `host_name` on 127.0.0.1 (a free port), with a fresh CA.
    pub async fn start(host_name: &str) -> Self {
        let names = vec![
            host_name.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let (ca_pem, listener) = TlsListener::bind("azure registry test CA", names).await;
        let addr = listener.local_addr().expect("local address");
        let state: Shared = Arc::new(Mutex::new(State {
            host_name: host_name.to_ascii_lowercase(),
            ..State::default()
        }));
        let app = handlers::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            host_name: host_name.to_owned(),
            addr,
            ca_pem,
            state,
            task,
        }
    }

    /// The hub's host name.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// `https://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that issued the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The hub's connection string (policy [`POLICY`]).
    pub fn connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={POLICY};SharedAccessKey={POLICY_KEY}",
            self.host_name
        )
    }

    /// A connector to this server with `retry`.
    pub fn connector(&self, retry: RetryPolicy) -> AzureHubRegistry {
        let cs = HubConnectionString::parse(&self.connection_string()).expect("valid");
        let mut cfg = AzureHubConfig::new(cs);
        cfg.endpoint = Some(self.endpoint());
        cfg.trust_roots_pem = Some(self.ca_pem.clone().into_bytes());
        cfg.retry = retry;
        AzureHubRegistry::new(cfg).expect("connector")
    }

    /// The stored device identity.
    pub fn device(&self, device_id: &str) -> Option<Value> {
        lock(&self.state)
            .devices
            .get(device_id)
            .map(|s| s.device.clone())
    }

    /// The stored twin.
    pub fn twin(&self, device_id: &str) -> Option<Value> {
        lock(&self.state)
            .devices
            .get(device_id)
            .map(|s| s.twin.clone())
    }

    /// Every stored device ID.
    pub fn device_ids(&self) -> Vec<String> {
        lock(&self.state).devices.keys().cloned().collect()
    }

    /// Merges `tags` and `desired` into a device's twin, as the hub's back end would after
    /// provisioning (so a migration has something of its own to carry). False if absent.
    pub fn update_twin(&self, device_id: &str, tags: Value, desired: Value) -> bool {
        let mut st = lock(&self.state);
        let Some(d) = st.devices.get_mut(device_id) else {
            return false;
        };
        if let (Some(t), Some(p)) = (d.twin["tags"].as_object_mut(), tags.as_object()) {
            handlers::merge(t, p);
        }
        let desired_now = d.twin["properties"]["desired"].as_object_mut();
        if let (Some(t), Some(p)) = (desired_now, desired.as_object()) {
            handlers::merge(t, p);
        }
        true
    }

    /// Plays `fault` for requests with `method` (every method when `None`); `None` heals.
    pub fn set_fault(&self, fault: Option<Fault>, method: Option<&str>) {
        let mut st = lock(&self.state);
        st.fault = fault.map(|f| (f, method.map(str::to_owned)));
        st.fault_budget = None;
    }

    /// Plays `fault` for the next `times` requests with `method`, then heals.
    pub fn set_fault_times(&self, fault: Fault, method: Option<&str>, times: u32) {
        let mut st = lock(&self.state);
        st.fault = Some((fault, method.map(str::to_owned)));
        st.fault_budget = Some(times);
    }

    /// `METHOD /path` of every authorised request so far.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    /// Stops the server now (the port then refuses connections).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for AzureRegistryServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
