//! [`HubRouter`]: one [`HubRegistry`] for a service whose linked hubs use different connectors,
//! picking the connector by the hub's host name.

use std::collections::HashMap;

use dps_service::{HubDevice, HubDeviceState, HubError, HubRegistry};
use dps_types::HubHostName;

use crate::{AzureHubRegistry, InProcessHubRegistry, MosquittoHubRegistry};

/// The connector of one linked hub.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HubConnector {
    /// The in-process registry.
    Embedded(InProcessHubRegistry),
    /// An Azure IoT hub.
    Azure(AzureHubRegistry),
    /// A Mosquitto broker with dynamic security.
    Mosquitto(MosquittoHubRegistry),
}

impl HubConnector {
    /// The connector's kind as configured (`embedded`, `azure-iothub`, `mqtt-broker`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Azure(_) => "azure-iothub",
            Self::Mosquitto(_) => "mqtt-broker",
        }
    }
}

/// Routes each call to the connector of its hub.
///
/// A hub without a connector refuses provisioning; reading from it finds nothing and removing
/// from it succeeds: a hub that was unlinked can no longer be reached with DPS's credentials,
/// and must not block its devices from moving elsewhere.
#[derive(Debug, Clone, Default)]
pub struct HubRouter {
    routes: HashMap<HubHostName, HubConnector>,
}

impl HubRouter {
    /// A router without hubs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `hub`'s calls to `connector` (replacing any previous route).
    pub fn route(&mut self, hub: HubHostName, connector: HubConnector) -> &mut Self {
        self.routes.insert(hub, connector);
        self
    }

    /// The connector of `hub`.
    pub fn connector(&self, hub: &HubHostName) -> Option<&HubConnector> {
        self.routes.get(hub)
    }

    /// How many hubs have a route.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no hub has a route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl HubRegistry for HubRouter {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        match self.routes.get(&d.hub) {
            Some(HubConnector::Embedded(r)) => r.provision(d).await,
            Some(HubConnector::Azure(r)) => r.provision(d).await,
            Some(HubConnector::Mosquitto(r)) => r.provision(d).await,
            None => Err(HubError::Rejected(format!(
                "no connector is configured for hub {}",
                d.hub
            ))),
        }
    }

    async fn fetch(
        &self,
        hub: &HubHostName,
        device_id: &str,
    ) -> Result<Option<HubDeviceState>, HubError> {
        match self.routes.get(hub) {
            Some(HubConnector::Embedded(r)) => r.fetch(hub, device_id).await,
            Some(HubConnector::Azure(r)) => r.fetch(hub, device_id).await,
            Some(HubConnector::Mosquitto(r)) => r.fetch(hub, device_id).await,
            None => Ok(None),
        }
    }

    async fn remove(&self, hub: &HubHostName, device_id: &str) -> Result<(), HubError> {
        match self.routes.get(hub) {
            Some(HubConnector::Embedded(r)) => r.remove(hub, device_id).await,
            Some(HubConnector::Azure(r)) => r.remove(hub, device_id).await,
            Some(HubConnector::Mosquitto(r)) => r.remove(hub, device_id).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_service::HubAuth;
    use dps_types::{RegistrationId, SymmetricKey};

    #[tokio::test]
    async fn calls_go_to_the_hubs_connector() {
        let (a, b) = (
            HubHostName::new("hub-a").unwrap(),
            HubHostName::new("hub-b").unwrap(),
        );
        let embedded = InProcessHubRegistry::default();
        let mut router = HubRouter::new();
        router.route(a.clone(), HubConnector::Embedded(embedded.clone()));
        let device = |hub: &HubHostName| HubDevice {
            hub: hub.clone(),
            device_id: "d".into(),
            registration_id: RegistrationId::new("d").unwrap(),
            auth: HubAuth::SymmetricKey {
                primary: SymmetricKey::new("AAAAAAAAAAAAAAAAAAAAAA==").unwrap(),
                secondary: None,
            },
            capabilities: Default::default(),
            initial_twin: None,
            reset_twin: true,
            previous_hub: None,
        };
        router.provision(device(&a)).await.unwrap();
        assert!(embedded.device("hub-a", "d").is_some());
        assert!(matches!(
            router.provision(device(&b)).await,
            Err(HubError::Rejected(m)) if m.contains("hub-b")
        ));
        assert_eq!(router.fetch(&b, "d").await, Ok(None));
        assert_eq!(router.remove(&b, "d").await, Ok(()));
        assert!(router.fetch(&a, "d").await.unwrap().is_some());
        router.remove(&a, "d").await.unwrap();
        assert!(embedded.devices().is_empty());
        assert_eq!(
            router.connector(&a).map(HubConnector::kind),
            Some("embedded")
        );
    }
}
