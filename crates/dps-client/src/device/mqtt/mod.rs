//! Device registration over MQTT 3.1.1: [`Connection`], the sans-I/O state machine of one MQTT
//! connection carrying a [`RegistrationFlow`](super::flow::RegistrationFlow), and (feature
//! `mqtt`) [`register_mqtt`], its tokio + rustls driver on TLS port 8883.
//!
//! The packets are `dps_proto::mqtt`'s, the same codec the server uses; this module adds only
//! the client's side of the exchange (reference §4): CONNECT with the DPS user name and a SAS
//! token, SUBSCRIBE to `$dps/registrations/res/#`, one QoS 1 request at a time matched to its
//! response by `$rid`, a PUBACK for every QoS 1 response, DISCONNECT at the end. The flow
//! decides everything else (when to poll, what to retry), exactly as over HTTPS.
//!
//! X.509 devices present their certificate in the TLS handshake and send CONNECT without a
//! password. What it does not do: MQTT over WebSocket (a driver of [`Connection`] over a
//! WebSocket carrying binary frames would be all it takes), TPM (which DPS does not offer over
//! MQTT).

mod connection;
#[cfg(feature = "mqtt")]
mod driver;

pub use connection::{
    CONNACK_TIMEOUT, Connection, End, KEEP_ALIVE, RESPONSE_TIMEOUT, SUBACK_TIMEOUT, Waiting,
};
#[cfg(feature = "mqtt")]
pub use driver::{DEFAULT_PORT, register_mqtt};
#[cfg(feature = "mqtt")]
pub(crate) use driver::{Dialer, run};
