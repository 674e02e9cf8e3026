//! Linked hubs: the [`HubRegistry`] trait through which the service creates a device's identity
//! in the hub it was assigned to. Implementations live in `dps-connect` (in-process registry,
//! Azure IoT Hub registry API) or in the embedding program.

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
    /// The initial twin to apply.
    pub initial_twin: Option<InitialTwin>,
    /// True when the twin must be (re)set from `initial_twin`; false when the device keeps or
    /// migrates its current state.
    pub reset_twin: bool,
    /// The hub the device moves away from, if it moves.
    pub previous_hub: Option<HubHostName>,
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
    /// The hub could not be reached.
    #[error("the IoT hub is unavailable: {0}")]
    Unavailable(String),
}

/// Creates device identities in linked hubs.
pub trait HubRegistry: Send + Sync + 'static {
    /// Creates or updates the identity (idempotent: registering twice must succeed).
    fn provision(&self, device: HubDevice) -> impl Future<Output = Result<(), HubError>> + Send;
}
