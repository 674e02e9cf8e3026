//! [`HttpsFleet`]: many devices over HTTPS, registered the way
//! [`register_https`](crate::register_https) does, timed.
//!
//! Two connection modes ([`Connections`]):
//!
//! * [`Connections::PerDevice`], the factory case: every device opens its own TLS connection,
//!   with a full handshake (session resumption is off, since real devices do not share a
//!   session cache), sends its register request and polls on it, then closes it. An X.509
//!   device presents its certificate on its connection.
//! * [`Connections::KeepAlive`], the gateway case: one pool of HTTP/1.1 connections carries
//!   every device's requests, one request at a time per connection; the pool grows to the
//!   number of registrations in flight. SAS devices only: a TLS client certificate
//!   authenticates a connection, so a shared connection cannot carry X.509 devices.
//!
//! The server's address is resolved once, when the fleet is built, so no connection waits for
//! a name lookup.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dps_proto::http::DeviceRegistrationResult;

use crate::device::RegisterOptions;
use crate::device::flow::FlowError;
use crate::device::https::Device;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::Transport;
use crate::tls::{ClientIdentity, TrustedCa};

use super::Timings;

/// How an [`HttpsFleet`] uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connections {
    /// A new TLS connection (full handshake) per device, kept for its register and polls.
    PerDevice,
    /// Kept-alive connections shared by all devices.
    KeepAlive,
}

/// Registers many devices over HTTPS against one endpoint. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct HttpsFleet {
    endpoint: Endpoint,
    connections: Connections,
    /// The TLS configuration every connection uses (`None`: reqwest's, with platform roots).
    tls: Option<rustls::ClientConfig>,
    /// Where the endpoint's host name points, when it is a name.
    address: Option<(String, SocketAddr)>,
    /// The pooled transport ([`Connections::KeepAlive`]).
    shared: Option<Transport>,
}

impl HttpsFleet {
    /// A fleet registering at `endpoint` (`host[:port]`, port 443 when omitted), trusting `ca`
    /// (or the platform roots), using connections as `connections` says. Resolves the host.
    pub async fn new(
        endpoint: &str,
        ca: Option<&TrustedCa>,
        connections: Connections,
    ) -> Result<Self, Error> {
        let endpoint = Endpoint::parse(endpoint.trim())?;
        let tls = match ca {
            Some(ca) => {
                let mut config = crate::tls::client_config(Some(ca), None)?;
                if connections == Connections::PerDevice {
                    config.resumption = rustls::client::Resumption::disabled();
                }
                Some(config)
            }
            None => None,
        };
        let host = endpoint
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let address = if host.parse::<IpAddr>().is_ok() {
            None
        } else {
            let port = endpoint.port().unwrap_or(443);
            let connect = |e: std::io::Error| Error::Connect {
                host: endpoint.authority().to_owned(),
                source: e.into(),
            };
            let addr = tokio::net::lookup_host((host, port))
                .await
                .map_err(connect)?
                .next()
                .ok_or_else(|| connect(std::io::ErrorKind::NotFound.into()))?;
            Some((host.to_owned(), addr))
        };
        let mut fleet = Self {
            endpoint,
            connections,
            tls,
            address,
            shared: None,
        };
        if connections == Connections::KeepAlive {
            fleet.shared = Some(fleet.transport(None)?);
        }
        Ok(fleet)
    }

    /// The connection mode.
    pub fn connections(&self) -> Connections {
        self.connections
    }

    /// A transport with its own connection pool, presenting `identity` when given.
    fn transport(&self, identity: Option<&ClientIdentity>) -> Result<Transport, Error> {
        let mut builder = Transport::builder();
        let tls = match (&self.tls, identity) {
            (Some(base), Some(id)) => Some(crate::tls::with_identity(base, id)?),
            (None, Some(id)) => Some(crate::tls::client_config(None, Some(id))?),
            (base, None) => base.clone(),
        };
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        if let Some((host, addr)) = &self.address {
            builder = builder.resolve(host, *addr);
        }
        let client = builder.build().map_err(|e| Error::Connect {
            host: self.endpoint.authority().to_owned(),
            source: e.into(),
        })?;
        Ok(Transport::with_client(self.endpoint.clone(), client))
    }

    /// Registers the device described by `opts` (its endpoint, transport and CA are the
    /// fleet's, not the options') and waits for its assignment, as
    /// [`register_https`](crate::register_https) does. An X.509 device (whose
    /// [`ClientIdentity`] is best [prepared](ClientIdentity::prepare) beforehand) needs
    /// [`Connections::PerDevice`].
    pub async fn register(
        &self,
        opts: &RegisterOptions,
    ) -> Result<(DeviceRegistrationResult, Timings), Error> {
        let started = Instant::now();
        let identity = opts.credential.identity();
        let own;
        let transport = match (&self.shared, identity) {
            (Some(shared), None) => shared,
            (Some(_), Some(_)) => {
                return Err(Error::Connect {
                    host: self.endpoint.authority().to_owned(),
                    source: "kept-alive connections are shared by devices and cannot present \
                             one device's certificate"
                        .into(),
                });
            }
            (None, identity) => {
                own = self.transport(identity)?;
                &own
            }
        };
        let (signer, mut flow) = opts.start()?;
        let device = Device {
            id_scope: opts.id_scope.clone(),
            registration_id: opts.registration_id.clone(),
            api_version: opts.api_version.clone(),
            signer,
        };
        let mut register = None;
        let mut last_transport_error = None;
        loop {
            if let Some(outcome) = flow.poll_outcome() {
                return match (outcome, last_transport_error) {
                    (Err(FlowError::RetriesExhausted { .. }), Some(e)) => Err(e),
                    (outcome, _) => outcome.map_err(Error::from).map(|r| {
                        let total = started.elapsed();
                        let register = register.unwrap_or(total);
                        (r, Timings { register, total })
                    }),
                };
            }
            if let Some(request) = flow.poll_transmit(Instant::now()) {
                let http = device.request(&request, unix_now());
                match transport.send(http).await {
                    Ok(resp) => {
                        last_transport_error = None;
                        register.get_or_insert_with(|| started.elapsed());
                        flow.handle_response(
                            resp.status,
                            resp.retry_after,
                            &resp.body,
                            Instant::now(),
                        );
                    }
                    Err(e @ Error::Transport { .. }) => {
                        last_transport_error = Some(e);
                        flow.handle_transport_error(Instant::now());
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            match flow.poll_timeout() {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => {
                    return Err(Error::Protocol {
                        what: "the registration flow stalled".into(),
                        source: None,
                    });
                }
            }
        }
    }
}

/// Seconds since the Unix epoch (token expiry only).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
