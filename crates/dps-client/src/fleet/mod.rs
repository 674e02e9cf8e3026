//! Many devices through one prepared client, timed: what a load generator needs. A device
//! registers itself with [`register`](crate::register); a fleet registers device after device
//! (from any number of tasks at once) the same way, but prepares what all its devices share
//! once (the TLS configuration with its trusted roots, the server's address) and reports how
//! long the register answer and the whole provisioning took ([`Timings`]).
//!
//! * [`HttpsFleet`] (feature `https`): a new TLS connection per device or kept-alive
//!   connections ([`Connections`]).
//! * [`MqttFleet`] (feature `mqtt`): a new MQTT connection per device, as MQTT devices have.
//!
//! X.509 devices present their own certificate on their own connection: the shared
//! configuration is cloned with the device's parsed key
//! ([`ClientIdentity::prepare`](crate::ClientIdentity::prepare) parses it ahead of time).

use std::time::Duration;

#[cfg(feature = "https")]
mod https;
#[cfg(feature = "mqtt")]
mod mqtt;

#[cfg(feature = "https")]
pub use https::{Connections, HttpsFleet};
#[cfg(feature = "mqtt")]
pub use mqtt::MqttFleet;

/// How long one registration took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// From the start until the register request was answered (connection set-up included
    /// when the device opened its own).
    pub register: Duration,
    /// From the start until the service reported `assigned`.
    pub total: Duration,
}
