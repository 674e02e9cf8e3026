//! TLS client configuration shared by the HTTPS and MQTT transports: which roots to trust, and
//! how to recognise a certificate rustls refused.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{BoxError, Error};

/// CA certificates to trust instead of the platform's roots, for servers with a private CA
/// such as dpsd's self-signed dev CA (`<data_dir>/dev-ca.pem`). Like `curl --cacert`: when
/// given, only these roots are trusted.
#[derive(Clone, PartialEq, Eq)]
pub enum TrustedCa {
    /// A PEM file holding one or more `CERTIFICATE` blocks.
    PemFile(PathBuf),
    /// PEM text holding one or more `CERTIFICATE` blocks.
    Pem(Vec<u8>),
}

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Self::Pem(b) => write!(f, "Pem(<{} bytes>)", b.len()),
        }
    }
}

impl TrustedCa {
    fn origin(&self) -> String {
        match self {
            Self::PemFile(p) => p.display().to_string(),
            Self::Pem(_) => "memory".into(),
        }
    }

    /// Reads and parses the certificates.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let ca_error = |source: BoxError| Error::Ca {
            origin: self.origin(),
            source,
        };
        let file;
        let pem: &[u8] = match self {
            Self::PemFile(path) => {
                file = std::fs::read(path).map_err(|e| ca_error(e.into()))?;
                &file
            }
            Self::Pem(bytes) => bytes,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.into()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM CERTIFICATE block found".into()));
        }
        Ok(certs)
    }

    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certificates()? {
            roots.add(cert).map_err(|e| Error::Ca {
                origin: self.origin(),
                source: e.into(),
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Ca {
                origin: self.origin(),
                source: e.into(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

/// The rustls configuration of a transport that does its own TLS (MQTT): only `ca` when given,
/// else the platform's verifier, as reqwest uses for HTTPS. aws-lc-rs, TLS 1.2 and 1.3.
#[cfg(feature = "mqtt")]
pub(crate) fn client_config(ca: Option<&TrustedCa>) -> Result<rustls::ClientConfig, Error> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    if let Some(ca) = ca {
        return ca.client_config();
    }
    let platform = |source: rustls::Error| Error::Ca {
        origin: "the platform trust store".into(),
        source: source.into(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(platform)?
        .with_platform_verifier()
        .map_err(platform)?
        .with_no_client_auth())
}

/// The rustls error, when somewhere in the chain rustls refused the server's certificate.
pub(crate) fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) =
            err.downcast_ref::<rustls::Error>()
        {
            return Some(tls.clone());
        }
        // `io::Error::source` skips the error it wraps (and reqwest nests io errors), so step
        // into the wrapped error instead.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trusted_ca_errors() {
        let err = TrustedCa::Pem(b"not pem".to_vec())
            .certificates()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load the CA certificate from memory"
        );
        let err = TrustedCa::PemFile("/nonexistent/dev-ca.pem".into())
            .certificates()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot load the CA certificate from /nonexistent/dev-ca.pem"
        );
        assert!(format!("{:?}", TrustedCa::Pem(vec![1, 2, 3])).contains("3 bytes"));
    }
}
