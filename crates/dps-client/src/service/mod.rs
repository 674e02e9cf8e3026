//! The service (admin) API: the [`ConnectionString`] and, with the `https` feature,
//! [`ServiceClient`].

#[cfg(feature = "https")]
mod client;
mod connection_string;

#[cfg(feature = "https")]
pub use client::{DEFAULT_SERVICE_API_VERSION, Page, ServiceClient};
pub use connection_string::{ConnectionString, ConnectionStringError};
