//! The device side: the sans-I/O [`flow`] and, with the `https` feature, its HTTPS driver.

pub mod flow;
#[cfg(feature = "https")]
pub mod https;

pub use flow::{FlowConfig, FlowError, RegistrationFlow, Request};
#[cfg(feature = "https")]
pub use https::{Credential, DEFAULT_DEVICE_API_VERSION, RegisterOptions, register_https};
