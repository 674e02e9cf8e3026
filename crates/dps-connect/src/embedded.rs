//! The `embedded` connector: an in-memory registry of every linked hub, for dpsd used as a
//! standalone registry, for development and for tests. It keeps identities in process memory
//! only (they are lost on restart); cloning shares the data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use dps_service::{HubDevice, HubDeviceState, HubError, HubRegistry};
use dps_types::{DeviceCapabilities, HubHostName, InitialTwin, RegistrationId};

/// A device identity as the in-process registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionedDevice {
    /// The hub.
    pub hub: HubHostName,
    /// Device ID.
    pub device_id: String,
    /// The registration it came from.
    pub registration_id: RegistrationId,
    /// Credential kind (`sas`, ...), never the key itself.
    pub auth_kind: &'static str,
    /// Capabilities.
    pub capabilities: DeviceCapabilities,
    /// The twin as last applied from an initial twin or a migration.
    pub twin: Option<InitialTwin>,
    /// How many times DPS wrote this identity.
    pub writes: u64,
}

/// Which calls an injected fault affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubCall {
    /// [`HubRegistry::provision`].
    Provision,
    /// [`HubRegistry::fetch`].
    Fetch,
    /// [`HubRegistry::remove`].
    Remove,
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Inner {
    devices: BTreeMap<Key, ProvisionedDevice>,
    faults: HashMap<(String, HubCall), HubError>,
}

/// An in-memory registry of every linked hub. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct InProcessHubRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl InProcessHubRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every identity, ordered by hub then device ID.
    pub fn devices(&self) -> Vec<ProvisionedDevice> {
        self.lock().devices.values().cloned().collect()
    }

    /// One identity.
    pub fn device(&self, hub: &str, device_id: &str) -> Option<ProvisionedDevice> {
        self.lock()
            .devices
            .get(&(hub.to_ascii_lowercase(), device_id.to_owned()))
            .cloned()
    }

    /// Makes `call` on `hub` fail with `error` until [`clear_faults`](Self::clear_faults), to
    /// test how the service handles a hub that refuses or is down.
    pub fn inject_fault(&self, hub: &str, call: HubCall, error: HubError) {
        self.lock()
            .faults
            .insert((hub.to_ascii_lowercase(), call), error);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Sets the twin of an existing identity, as a hub operator would (e.g. before a migration).
    pub fn set_twin(&self, hub: &str, device_id: &str, twin: InitialTwin) -> bool {
        let mut inner = self.lock();
        let key = (hub.to_ascii_lowercase(), device_id.to_owned());
        inner
            .devices
            .get_mut(&key)
            .map(|d| d.twin = Some(twin))
            .is_some()
    }

    fn fault(inner: &Inner, hub: &HubHostName, call: HubCall) -> Result<(), HubError> {
        match inner.faults.get(&(hub.to_string(), call)) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl HubRegistry for InProcessHubRegistry {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        let mut inner = self.lock();
        Self::fault(&inner, &d.hub, HubCall::Provision)?;
        let key = (d.hub.to_string(), d.device_id.clone());
        let existing = inner.devices.get(&key).cloned();
        let twin = match (&existing, d.reset_twin) {
            (Some(e), false) => e.twin.clone(),
            _ => d.initial_twin.clone(),
        };
        let writes = existing.map_or(0, |e| e.writes) + 1;
        inner.devices.insert(
            key,
            ProvisionedDevice {
                hub: d.hub,
                device_id: d.device_id,
                registration_id: d.registration_id,
                auth_kind: d.auth.kind(),
                capabilities: d.capabilities,
                twin,
                writes,
            },
        );
        Ok(())
    }

    async fn fetch(
        &self,
        hub: &HubHostName,
        device_id: &str,
    ) -> Result<Option<HubDeviceState>, HubError> {
        let inner = self.lock();
        Self::fault(&inner, hub, HubCall::Fetch)?;
        Ok(inner
            .devices
            .get(&(hub.to_string(), device_id.to_owned()))
            .map(|d| HubDeviceState {
                capabilities: d.capabilities,
                twin: d.twin.clone().unwrap_or_default(),
            }))
    }

    async fn remove(&self, hub: &HubHostName, device_id: &str) -> Result<(), HubError> {
        let mut inner = self.lock();
        Self::fault(&inner, hub, HubCall::Remove)?;
        inner
            .devices
            .remove(&(hub.to_string(), device_id.to_owned()));
        Ok(())
    }
}
