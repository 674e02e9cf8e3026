//! The HTTPS binding of both APIs: routing, device messages, service-API bodies.

pub mod register;
pub mod route;
pub mod service;

pub use register::{
    DeviceRegistration, DeviceRegistrationResult, MAX_BODY_BYTES, RegistrationOperationStatus,
    SymmetricKeyResult,
};
pub use route::{Collection, Method, Route, query_param, route};
