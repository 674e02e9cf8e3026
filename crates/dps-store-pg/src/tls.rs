//! TLS to PostgreSQL over rustls: [`PgTls`] chooses the mode, and a small
//! `tokio_postgres::tls::MakeTlsConnect` adapter over `tokio-rustls` does the handshake.
//!
//! The adapter is written here rather than taken from `tokio-postgres-rustls`, whose current
//! release pulls a second generation of the X.509 parsing crates into the build for the one
//! thing it adds (channel binding). Channel binding (`SCRAM-SHA-256-PLUS`) is therefore not
//! offered: password authentication uses plain `SCRAM-SHA-256` inside the TLS session, which
//! the server accepts unless it is configured to require channel binding.
//!
//! The modes mirror libpq's `sslmode`: `disable` (plain TCP), `require` (encrypted, the server
//! certificate is not checked: protection against passive eavesdropping only, as in libpq) and
//! `verify-full` (the chain must lead to a CA from the given PEM file and the certificate must
//! name the host dpsd connects to).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// How dpsd talks to PostgreSQL (`[storage] sslmode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PgTls {
    /// Plain TCP (or a Unix socket): a local database or a trusted network.
    #[default]
    Disable,
    /// TLS without checking the server's certificate: encrypted, but not authenticated.
    Require,
    /// TLS; the server's certificate must chain to a CA in `ca_file` (PEM) and name the host.
    VerifyFull {
        /// PEM file of the CA certificates to trust.
        ca_file: PathBuf,
    },
}

impl PgTls {
    /// Parses an `sslmode` value (`disable`, `require`, `verify-full`); `verify-full` needs
    /// `ca_file`. Returns a message naming the problem otherwise.
    pub fn from_mode(mode: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        match (mode, ca_file) {
            ("disable", _) => Ok(Self::Disable),
            ("require", _) => Ok(Self::Require),
            ("verify-full", Some(f)) => Ok(Self::VerifyFull {
                ca_file: f.to_owned(),
            }),
            ("verify-full", None) => Err("sslmode verify-full needs a CA file".into()),
            (other, _) => Err(format!(
                "unknown sslmode {other:?} (expected disable, require or verify-full)"
            )),
        }
    }
}

/// The rustls client configuration of a TLS mode (`None` for [`PgTls::Disable`]).
pub(crate) fn client_config(tls: &PgTls) -> Result<Option<Arc<ClientConfig>>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match tls {
        PgTls::Disable => return Ok(None),
        PgTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        PgTls::VerifyFull { ca_file } => {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("cannot read CA file {}: {e}", ca_file.display()))?;
            let mut roots = RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("bad PEM in {}: {e}", ca_file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", ca_file.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("no certificate in CA file {}", ca_file.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// `require`: any certificate is accepted, but the handshake signatures are still checked
/// (so the session key belongs to whoever holds the presented certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `MakeTlsConnect` over tokio-rustls.
#[derive(Clone)]
pub(crate) struct MakeRustls(pub(crate) Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.0.clone()),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

/// One pending handshake.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// An established TLS session to the server.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
