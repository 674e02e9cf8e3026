//! [`MqttFleet`]: many devices over MQTT on TLS, registered the way
//! [`register_mqtt`](crate::register_mqtt) does, timed, with one TLS configuration for all.
//!
//! Each device has its own connection (MQTT authenticates the connection: its CONNECT carries
//! the device's token, or its TLS handshake the device's certificate), with a full handshake:
//! session resumption is off, as real devices do not share a session cache. What the fleet
//! shares is what [`register_mqtt`](crate::register_mqtt) builds per device: the rustls
//! configuration with its parsed roots.

use std::sync::Arc;
use std::time::Instant;

use dps_proto::http::DeviceRegistrationResult;

use super::Timings;
use crate::device::RegisterOptions;
use crate::device::mqtt::{Dialer, run};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::tls::{self, TrustedCa};

/// Registers many devices over MQTT against one endpoint. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MqttFleet {
    endpoint: Endpoint,
    /// Every connection's TLS configuration, without a client certificate.
    tls: Arc<rustls::ClientConfig>,
}

impl MqttFleet {
    /// A fleet registering at `endpoint` (`host[:port]`, port 8883 when omitted), trusting
    /// `ca` (or the platform roots).
    pub fn new(endpoint: &str, ca: Option<&TrustedCa>) -> Result<Self, Error> {
        let endpoint = Endpoint::parse(endpoint.trim())?;
        let mut config = tls::client_config(ca, None)?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            endpoint,
            tls: Arc::new(config),
        })
    }

    /// Registers the device described by `opts` (its endpoint, transport and CA are the
    /// fleet's, not the options') over a connection of its own, and waits for its assignment.
    /// [`Timings::register`] is the time to the first answer (normally `assigning`), TCP, TLS,
    /// CONNECT and SUBSCRIBE included. An X.509 device presents its certificate; its
    /// [`ClientIdentity`](crate::ClientIdentity) is best
    /// [prepared](crate::ClientIdentity::prepare) beforehand.
    pub async fn register(
        &self,
        opts: &RegisterOptions,
    ) -> Result<(DeviceRegistrationResult, Timings), Error> {
        let started = Instant::now();
        let flow = opts.start()?;
        let config = match opts.credential.identity() {
            None => self.tls.clone(),
            Some(id) => Arc::new(tls::with_identity(&self.tls, id)?),
        };
        let dialer = Dialer::new(self.endpoint.clone(), config);
        let (result, first_answer) = run(opts, flow, &dialer).await?;
        let total = started.elapsed();
        let register = first_answer.map_or(total, |at| at.saturating_duration_since(started));
        Ok((result, Timings { register, total }))
    }
}
