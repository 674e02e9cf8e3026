//! Linked hubs: the [`HubRegistry`] trait through which the service creates a device's identity
//! in the hub it was assigned to, reads what it must migrate and removes it from a hub it left.
//! Implementations live in `dps-connect` (in-process registry, Azure IoT Hub registry API,
//! Mosquitto dynamic security, a per-hub router) or in the embedding program.
//!
//! The service drives a move between hubs as three calls, in this order, and stops at the first
//! error: [`HubRegistry::fetch`] on the old hub (only when data is migrated),
//! [`HubRegistry::provision`] on the new hub, [`HubRegistry::remove`] on the old hub. The old
//! identity is therefore removed only once the new hub has accepted the device. Timeouts and
//! retries belong to the implementation (this crate has no runtime); every call must end.

use std::future::Future;

use dps_types::{DeviceCapabilities, HubHostName, InitialTwin, RegistrationId, SymmetricKey};

/// The credential the hub identity gets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubAuth {
    /// SAS authentication with these keys (the enrollment's keys, or the keys derived from a
    /// group's keys for this device).
    SymmetricKey {
        /// Primary key.
        primary: SymmetricKey,
        /// Secondary key.
        secondary: Option<SymmetricKey>,
    },
    /// X.509 self-signed authentication pinned to certificate thumbprints (IoT Hub's
    /// `selfSigned` type with `x509Thumbprint`): an individual enrollment's certificates.
    X509Thumbprint {
        /// Upper-case hex SHA-256 thumbprint of the primary certificate.
        primary: String,
        /// Thumbprint of the secondary certificate.
        secondary: Option<String>,
    },
    /// X.509 CA-signed authentication (IoT Hub's `certificateAuthority` type): the device
    /// presents its chain to the hub, which trusts the CA. Group members get this.
    CertificateAuthority,
}

impl HubAuth {
    /// A short name for logs and records (never the keys).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SymmetricKey { .. } => "sas",
            Self::X509Thumbprint { .. } => "selfSigned",
            Self::CertificateAuthority => "certificateAuthority",
        }
    }
}

/// The device identity to create or update in a hub.
#[derive(Debug, Clone, PartialEq)]
pub struct HubDevice {
    /// The hub.
    pub hub: HubHostName,
    /// Device ID in the hub.
    pub device_id: String,
    /// The registration it comes from.
    pub registration_id: RegistrationId,
    /// Its credential.
    pub auth: HubAuth,
    /// Capabilities (IoT Edge).
    pub capabilities: DeviceCapabilities,
    /// The twin to write: the enrollment's (or a custom allocator's) initial twin, or the twin
    /// migrated from the previous hub.
    pub initial_twin: Option<InitialTwin>,
    /// True when the hub's twin must be replaced by `initial_twin` (tags and desired properties;
    /// `None` clears them); false when the identity keeps the twin it has in this hub.
    pub reset_twin: bool,
    /// The hub the device moves away from, if it moves (for information: the service removes
    /// it there itself, after this call succeeded).
    pub previous_hub: Option<HubHostName>,
}

/// What a hub holds about a device that moves with it when its data is migrated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubDeviceState {
    /// The identity's capabilities.
    pub capabilities: DeviceCapabilities,
    /// Its current twin: tags and desired properties (metadata and versions stripped).
    pub twin: InitialTwin,
}

/// Why a hub refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub refused our credentials (Azure's 400209).
    #[error("unauthorized at the IoT hub: {0}")]
    Unauthorized(String),
    /// The hub refused the device (bad twin, quota ...).
    #[error("the IoT hub refused the device: {0}")]
    Rejected(String),
    /// The hub could not be reached, failed or throttled us until the retries ran out.
    #[error("the IoT hub is unavailable: {0}")]
    Unavailable(String),
    /// The hub did not answer in time (after the configured retries).
    #[error("the IoT hub timed out: {0}")]
    Timeout(String),
}

/// Creates, reads and removes device identities in linked hubs.
pub trait HubRegistry: Send + Sync + 'static {
    /// Creates or updates the identity (idempotent: registering twice must succeed).
    fn provision(&self, device: HubDevice) -> impl Future<Output = Result<(), HubError>> + Send;

    /// What `hub` holds about `device_id`, for migration to another hub; `Ok(None)` when the
    /// device is not there or the hub keeps nothing worth migrating (the enrollment's initial
    /// state is used instead). The default keeps nothing.
    fn fetch(
        &self,
        hub: &HubHostName,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<HubDeviceState>, HubError>> + Send {
        let _ = (hub, device_id);
        std::future::ready(Ok(None))
    }

    /// Removes the identity from `hub`; an identity that is already gone is a success. The
    /// default does nothing (for registries that never move devices).
    fn remove(
        &self,
        hub: &HubHostName,
        device_id: &str,
    ) -> impl Future<Output = Result<(), HubError>> + Send {
        let _ = (hub, device_id);
        std::future::ready(Ok(()))
    }
}
