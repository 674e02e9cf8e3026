//! The client side of dps-rs: register a device with a Device Provisioning Service (dps-rs's
//! `dpsd` or Azure IoT Hub DPS), and manage enrollments through the service API.
//!
//! # What this crate owns
//!
//! * [`device::flow`]: the registration protocol as a sans-I/O state machine
//!   ([`RegistrationFlow`]): register, wait `Retry-After`, poll until `assigned`, retry
//!   throttling and server errors within bounds. No sockets, no clock: time and responses are
//!   inputs, requests and the outcome are outputs, so any transport can drive it and tests run
//!   it in simulated time.
//! * [`device::https`] (feature `https`, on by default): [`register_https`], the tokio +
//!   reqwest driver, sending exactly what the official SDKs send (SAS-authenticated `PUT …/register`
//!   then `GET …/operations/{id}`).
//! * [`device::mqtt`]: the same flow over MQTT 3.1.1 — [`device::mqtt::Connection`], one
//!   connection as a sans-I/O state machine over `dps_proto`'s codec, and (feature `mqtt`, on by
//!   default) [`register_mqtt`], its tokio + rustls driver on port 8883. [`register`] picks the
//!   transport named by [`RegisterOptions::transport`].
//! * [`fleet`]: [`HttpsFleet`] and [`MqttFleet`], many devices through one prepared TLS
//!   configuration, timed (what a load generator needs).
//! * [`service`]: the [`ConnectionString`] parser and (feature `https`) [`ServiceClient`] for
//!   individual enrollments, enrollment groups, registration records, bulk operations and
//!   dps-rs's `/metering/operations`.
//! * [`Error`]: one error type; Azure's error body (`errorCode`, `message`, `trackingId`)
//!   arrives as [`Error::Service`] or [`FlowError::Rejected`].
//!
//! # What it deliberately does not do
//!
//! No server logic (that is dps-core / dps-service), no SAS cryptography of its own (tokens
//! come from `dps-attest`), no JSON models of its own (records are `dps-types`, device
//! messages `dps-proto`, MQTT packets `dps_proto::mqtt`), no logging setup or global state.
//! TPM attestation, MQTT over WebSocket and AMQP are not implemented yet.
//!
//! # Where to start
//!
//! A device: [`RegisterOptions::new`] then [`register`] (HTTPS by default; set
//! [`RegisterOptions::transport`] to [`Transport::Mqtt`] for MQTT). An operator:
//! [`ServiceClient::from_connection_string`]. A new transport: [`RegistrationFlow`].
//!
//! ```no_run
//! use dps_client::{Credential, RegisterOptions, ServiceClient, TrustedCa, register_https};
//! use dps_types::{IdScope, IndividualEnrollment, RegistrationId};
//!
//! # async fn run() -> Result<(), dps_client::Error> {
//! let ca = TrustedCa::PemFile("/var/lib/dpsd/dev-ca.pem".into());
//!
//! // Operator: enroll a device with a service-generated key and read the key back.
//! let admin = ServiceClient::from_connection_string(
//!     "HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VydmljZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==",
//!     Some(ca.clone()),
//! )?;
//! let enrollment: IndividualEnrollment = serde_json::from_str(
//!     r#"{"registrationId":"dev-1","attestation":{"type":"symmetricKey"}}"#,
//! ).expect("valid enrollment JSON");
//! let created = admin.create_enrollment(&enrollment).await?;
//! let key = created.attestation.symmetric_key()
//!     .and_then(|s| s.primary_key.clone())
//!     .expect("the service generated a key");
//!
//! // Device: register with that key.
//! let mut opts = RegisterOptions::new(
//!     "localhost:8443",
//!     IdScope::new("0ne00000001").expect("valid scope"),
//!     RegistrationId::new("dev-1").expect("valid id"),
//!     Credential::SymmetricKey(key.expose_base64().to_owned()),
//! );
//! opts.ca = Some(ca);
//! let result = register_https(opts).await?;
//! println!("assigned to {:?} as {:?}", result.state.assigned_hub, result.state.device_id);
//! # Ok(())
//! # }
//! ```

pub mod device;
mod endpoint;
mod error;
#[cfg(any(feature = "https", feature = "mqtt"))]
pub mod fleet;
#[cfg(feature = "https")]
mod http;
pub mod service;
#[cfg(any(feature = "https", feature = "mqtt"))]
mod tls;

#[cfg(feature = "https")]
pub use device::register_https;
#[cfg(feature = "mqtt")]
pub use device::register_mqtt;
#[cfg(any(feature = "https", feature = "mqtt"))]
pub use device::{Credential, RegisterOptions, Transport, register};
pub use device::{FlowConfig, FlowError, RegistrationFlow};
pub use dps_proto::http::DeviceRegistrationResult;
pub use error::Error;
#[cfg(feature = "mqtt")]
pub use fleet::MqttFleet;
#[cfg(any(feature = "https", feature = "mqtt"))]
pub use fleet::Timings;
#[cfg(feature = "https")]
pub use fleet::{Connections, HttpsFleet};
#[cfg(feature = "https")]
pub use service::ServiceClient;
pub use service::{ConnectionString, ConnectionStringError};
#[cfg(any(feature = "https", feature = "mqtt"))]
pub use tls::{ClientIdentity, TrustedCa};

/// `User-Agent` of every HTTPS request and `ClientVersion` of the MQTT user name.
pub(crate) const USER_AGENT: &str = concat!("dps-client/", env!("CARGO_PKG_VERSION"));
