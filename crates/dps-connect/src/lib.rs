//! Outbound connectors of dps-rs: implementations of `dps_service::HubRegistry`, the trait
//! through which the service creates, reads and removes device identities in linked hubs.
//!
//! - [`InProcessHubRegistry`] (`embedded`) keeps the identities in memory: the linked hub of the
//!   development server and of tests; it lets an embedding program see what was provisioned;
//! - [`AzureHubRegistry`] (`azure-iothub`) drives an Azure IoT hub's identity registry;
//! - [`MosquittoHubRegistry`] (`mqtt-broker`) creates broker clients in a Mosquitto broker with
//!   the dynamic-security plugin;
//! - [`HubRouter`] gives one service all of them, picking the connector by hub host name.
//!
//! Every call of a network connector is bounded by its [`RetryPolicy`]. The [`webhook`] module
//! is the client of the custom-allocation webhook (Azure's contract).
//!
//! ```
//! use dps_connect::InProcessHubRegistry;
//!
//! let hubs = InProcessHubRegistry::default();
//! assert!(hubs.devices().is_empty());
//! ```

pub mod azure;
mod embedded;
pub mod mosquitto;
mod retry;
mod router;
pub mod webhook;

pub use azure::{AzureHubConfig, AzureHubRegistry};
pub use embedded::{
    HubCall, IdentityJournal, InProcessHubRegistry, JournalFuture, JournalResult, ProvisionedDevice,
};
pub use mosquitto::{MosquittoConfig, MosquittoHubRegistry, device_password};
pub use retry::RetryPolicy;
pub use router::{HubConnector, HubRouter};
