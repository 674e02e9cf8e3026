//! The tokio + rustls driver of [`Connection`]: dial, TLS, move packets, sleep until the next
//! deadline, reconnect after a lost connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dps_proto::http::DeviceRegistrationResult;
use dps_proto::mqtt::{self, ConnectReturnCode, Limits};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::connection::{Connection, End, KEEP_ALIVE, Waiting};
use crate::device::flow::{FlowError, RegistrationFlow};
use crate::device::options::{RegisterOptions, Signer, unix_now};
use crate::endpoint::Endpoint;
use crate::error::{BoxError, Error};
use crate::tls::{self, certificate_error};

/// The port dialled when the endpoint names none.
pub const DEFAULT_PORT: u16 = 8883;

/// TCP connect and TLS handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing one batch of packets.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sending TLS close_notify after DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// What the client accepts from the server: the codec's bounds, with room for large
/// registration states (initial twins, custom allocation payloads).
const LIMITS: Limits = Limits {
    max_packet: 1 << 20,
    ..Limits::DEFAULT
};

/// Registers a device over MQTT on TLS and waits for its assignment.
///
/// Connects to `opts.endpoint` (port [`DEFAULT_PORT`] when omitted), verifying the server
/// against `opts.ca` or the platform roots with the host name as SNI, and runs one
/// [`Connection`]. `opts.transport` is not consulted (see
/// [`register`](crate::device::register)).
///
/// Failures are reported as over HTTPS: connection failures (DNS, refused, untrusted
/// certificate, no CONNACK) end the registration at once ([`Error::Connect`],
/// [`Error::UntrustedServer`]); a refused CONNECT (return code 4 or 5) is a 401
/// [`FlowError::Rejected`]; failures after connecting (a closed connection, a request without
/// an answer) are retried by the flow like a `503`, over a new connection, at most
/// [`FlowConfig::max_retries`](crate::FlowConfig::max_retries) times in a row; a server that
/// breaks the protocol ends it with [`Error::Protocol`].
pub async fn register_mqtt(opts: RegisterOptions) -> Result<DeviceRegistrationResult, Error> {
    let endpoint = Endpoint::parse(opts.endpoint.trim())?;
    let started = opts.start()?;
    let config = tls::client_config(opts.ca.as_ref(), opts.credential.identity())?;
    let dialer = Dialer::new(endpoint, Arc::new(config));
    run(&opts, started, &dialer).await.map(|(result, _)| result)
}

/// Runs a registration over connections from `dialer`: the assignment, and when the first
/// answer to a request (the register request's, normally `assigning`) arrived.
pub(crate) async fn run(
    opts: &RegisterOptions,
    (signer, mut flow): (Signer, RegistrationFlow),
    dialer: &Dialer,
) -> Result<(DeviceRegistrationResult, Option<Instant>), Error> {
    let mut first_answer = None;
    let host = dialer.name();
    // Consecutive connections lost without an answer, and the error of the last one.
    let mut losses = 0;
    let mut last_loss: Option<Error> = None;
    loop {
        if let Some(outcome) = flow.poll_outcome() {
            return finish(outcome, last_loss).map(|r| (r, first_answer));
        }
        // After a loss, connect again only when the flow has something to send.
        if let Some(at) = flow.poll_timeout() {
            tokio::time::sleep_until(at.into()).await;
        }
        let stream = dialer.connect().await?;
        let now = Instant::now();
        let conn =
            Connection::with_password(flow, &opts.api_version, signer.token(unix_now()), now);
        let (conn, end, detail) = drive(conn, stream, &mut first_answer).await?;
        let end = match end {
            End::Finished(outcome) => return finish(outcome, last_loss).map(|r| (r, first_answer)),
            End::Refused(code) => return Err(refused(code, host)),
            End::Violation(what) => {
                return Err(Error::Protocol {
                    what,
                    source: detail,
                });
            }
            lost => lost,
        };
        let source = detail.unwrap_or_else(|| describe(&end).into());
        if !conn.is_connected() {
            return Err(Error::Connect { host, source });
        }
        // A connection that got answers resets the count: only losses in a row add up.
        losses = if conn.answered() { 1 } else { losses + 1 };
        let error = Error::Transport {
            host: host.clone(),
            source,
        };
        if losses > opts.flow.max_retries {
            return Err(error);
        }
        last_loss = Some(error);
        flow = conn.into_flow();
    }
}

/// The flow's outcome, except that giving up after a lost connection reports the loss.
fn finish(
    outcome: Result<DeviceRegistrationResult, FlowError>,
    last_loss: Option<Error>,
) -> Result<DeviceRegistrationResult, Error> {
    match (outcome, last_loss) {
        (
            Err(FlowError::RetriesExhausted {
                last_status: None, ..
            }),
            Some(e),
        ) => Err(e),
        (outcome, _) => outcome.map_err(Error::from),
    }
}

/// CONNACK 4 and 5 are what Azure answers a bad SAS token with: report them as the 401 the
/// same token gets over HTTPS. Other codes mean the server cannot serve this client.
fn refused(code: ConnectReturnCode, host: String) -> Error {
    match code {
        ConnectReturnCode::BadUsernameOrPassword | ConnectReturnCode::NotAuthorized => {
            Error::Registration(FlowError::Rejected {
                status: 401,
                error_code: None,
                message: format!(
                    "connection refused: {}",
                    if code == ConnectReturnCode::NotAuthorized {
                        "not authorized"
                    } else {
                        "bad user name or password"
                    }
                ),
                tracking_id: None,
            })
        }
        _ => Error::Connect {
            host,
            source: format!("connection refused with CONNACK return code {}", code as u8).into(),
        },
    }
}

fn describe(end: &End) -> String {
    match end {
        End::TimedOut(Waiting::ConnAck) => "no CONNACK in time".into(),
        End::TimedOut(Waiting::SubAck) => "no SUBACK in time".into(),
        End::TimedOut(Waiting::Response) => "no response in time".into(),
        End::TimedOut(Waiting::PingResp) => "no PINGRESP in time".into(),
        _ => "the server closed the connection".into(),
    }
}

/// Opens TLS connections to one endpoint with one client configuration.
pub(crate) struct Dialer {
    endpoint: Endpoint,
    port: u16,
    tls: TlsConnector,
}

impl Dialer {
    /// Dials `endpoint` (port [`DEFAULT_PORT`] when it names none) with `config`.
    pub(crate) fn new(endpoint: Endpoint, config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            port: endpoint.port().unwrap_or(DEFAULT_PORT),
            tls: TlsConnector::from(config),
            endpoint,
        }
    }

    /// `host:port`, for errors.
    fn name(&self) -> String {
        format!("{}:{}", self.endpoint.host(), self.port)
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, Error> {
        let failed = |source: BoxError| Error::Connect {
            host: self.name(),
            source,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.name()))
            .await
            .map_err(|_| failed("connection timed out".into()))?
            .map_err(|e| failed(e.into()))?;
        let _ = tcp.set_nodelay(true);
        let host = self.endpoint.host();
        let sni = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let sni = ServerName::try_from(sni.to_owned()).map_err(|e| failed(e.into()))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(sni, tcp)).await {
            Err(_) => Err(failed("TLS handshake timed out".into())),
            Ok(Err(e)) => Err(match certificate_error(&e) {
                Some(tls) => Error::UntrustedServer {
                    host: self.name(),
                    source: tls.into(),
                },
                None => failed(e.into()),
            }),
            Ok(Ok(stream)) => Ok(stream),
        }
    }
}

/// Runs `conn` over `io` until it ends. Returns the connection (for its flow), how it ended,
/// and the I/O or decoding error behind the end, if any. Sets `first_answer` (when unset) to
/// when the connection got its first answer.
async fn drive<IO: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Connection,
    mut io: IO,
    first_answer: &mut Option<Instant>,
) -> Result<(Connection, End, Option<BoxError>), Error> {
    let mut rx = BytesMut::with_capacity(4096);
    let mut tx = BytesMut::with_capacity(1024);
    let mut detail: Option<BoxError> = None;
    loop {
        let now = Instant::now();
        while let Some(packet) = conn.poll_transmit(now) {
            packet
                .encode(&mut tx)
                .map_err(|e| Error::Encode(e.into()))?;
        }
        if !tx.is_empty() {
            let write = async {
                io.write_all(&tx).await?;
                io.flush().await
            };
            let failure: Option<BoxError> = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.into()),
                Err(_) => Some("write timed out".into()),
            };
            tx.clear();
            if let Some(e) = failure {
                detail.get_or_insert(e);
                conn.handle_close(Instant::now());
            }
        }
        if let Some(end) = conn.poll_end() {
            if matches!(end, End::Finished(_)) {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
            }
            return Ok((conn, end, detail));
        }
        let wake = conn
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + KEEP_ALIVE);
        tokio::select! {
            read = io.read_buf(&mut rx) => match read {
                Ok(0) => conn.handle_close(Instant::now()),
                Ok(_) => loop {
                    match mqtt::decode(&mut rx, &LIMITS) {
                        Ok(Some(packet)) => {
                            let now = Instant::now();
                            conn.handle_packet(packet, now);
                            if first_answer.is_none() && conn.answered() {
                                *first_answer = Some(now);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // The violation's text names the error.
                            conn.handle_decode_error(&e);
                            break;
                        }
                    }
                },
                Err(e) => {
                    detail.get_or_insert(e.into());
                    conn.handle_close(Instant::now());
                }
            },
            () = tokio::time::sleep_until(wake.into()) => conn.handle_timeout(Instant::now()),
        }
    }
}
