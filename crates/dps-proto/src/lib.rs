//! Wire codecs of dps-rs: everything needed to turn bytes from the network into typed requests
//! and typed results back into bytes, with no sockets and no runtime.
//!
//! - [`http::route()`] decodes a method and path of the device API (`/{idScope}/registrations/…`)
//!   or the service API (`/enrollments/…`, `/enrollmentGroups/…`, `/registrations/…`);
//! - [`http::register`] holds the device messages (`DeviceRegistration`,
//!   `RegistrationOperationStatus`), [`http::service`] the query, paging and bulk bodies;
//! - [`mqtt::decode`] and [`mqtt::Packet`] are the MQTT 3.1.1 codec (sans-I/O, `Ok(None)` until a
//!   whole packet is buffered); [`mqtt::topic`] and [`mqtt::username`] hold the `$dps/registrations`
//!   topic grammar and the CONNECT user name;
//! - [`api_version`] lists the accepted `api-version`s;
//! - [`error::WireError`] is the single mapping from a domain [`dps_types::Rejection`] to an HTTP
//!   status, a six-digit `errorCode` and Azure's error body.
//!
//! Records themselves (enrollments, registration states) use the serde form in `dps-types`.
//!
//! ```
//! use dps_proto::http::{route, Method, Route};
//!
//! let r = route(Method::Put, "/0ne00000001/registrations/dev-1/register").unwrap();
//! assert!(matches!(r, Route::DeviceRegister { ref registration_id, .. } if registration_id == "dev-1"));
//! ```

pub mod api_version;
pub mod error;
pub mod http;
pub mod mqtt;

pub use error::{ErrorBody, WireError};
