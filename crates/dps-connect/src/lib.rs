//! Outbound connectors of dps-rs: implementations of `dps_service::HubRegistry`, the trait
//! through which the service creates device identities in linked hubs.
//!
//! [`InProcessHubRegistry`] keeps the identities in memory: it is the linked hub of the
//! development server and of tests, and it lets an embedding program see what was provisioned.
//! Connectors for Azure IoT Hub's registry API and the custom-allocation webhook come next.
//!
//! ```
//! use dps_connect::InProcessHubRegistry;
//!
//! let hubs = InProcessHubRegistry::default();
//! assert!(hubs.devices().is_empty());
//! ```

pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use dps_service::{HubDevice, HubError, HubRegistry};
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
    /// The twin as last applied from an initial twin.
    pub twin: Option<InitialTwin>,
    /// How many times DPS wrote this identity.
    pub writes: u64,
}

/// An in-memory registry of every linked hub. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct InProcessHubRegistry {
    devices: Arc<Mutex<BTreeMap<(String, String), ProvisionedDevice>>>,
}

impl InProcessHubRegistry {
    /// Every identity, ordered by hub then device ID.
    pub fn devices(&self) -> Vec<ProvisionedDevice> {
        self.devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// One identity.
    pub fn device(&self, hub: &str, device_id: &str) -> Option<ProvisionedDevice> {
        self.devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(hub.to_ascii_lowercase(), device_id.to_owned()))
            .cloned()
    }
}

impl HubRegistry for InProcessHubRegistry {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        let mut map = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let moved = d
            .previous_hub
            .as_ref()
            .and_then(|old| map.remove(&(old.to_string(), d.device_id.clone())));
        let key = (d.hub.to_string(), d.device_id.clone());
        let existing = map.get(&key).cloned().or(moved);
        let twin = match (&existing, d.reset_twin) {
            (Some(e), false) => e.twin.clone(),
            _ => d.initial_twin.clone(),
        };
        let writes = existing.map_or(0, |e| e.writes) + 1;
        map.insert(
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
}
