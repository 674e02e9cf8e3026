//! The device side: the sans-I/O [`flow`] and [`mqtt::Connection`], and their drivers:
//! [`register_https`] (feature `https`) and [`register_mqtt`] (feature `mqtt`), with
//! [`register`] choosing between them by [`RegisterOptions::transport`].

pub mod flow;
#[cfg(feature = "https")]
pub mod https;
pub mod mqtt;
#[cfg(any(feature = "https", feature = "mqtt"))]
mod options;

pub use flow::{FlowConfig, FlowError, RegistrationFlow, Request};
#[cfg(feature = "https")]
pub use https::register_https;
#[cfg(feature = "mqtt")]
pub use mqtt::register_mqtt;
#[cfg(any(feature = "https", feature = "mqtt"))]
pub use options::{Credential, DEFAULT_DEVICE_API_VERSION, RegisterOptions, Transport, register};
