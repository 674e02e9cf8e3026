//! TLS client configuration shared by the HTTPS and MQTT transports: which roots to trust, the
//! device's own certificate for X.509 attestation ([`ClientIdentity`]), and how to recognise a
//! certificate rustls refused.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

    fn roots(&self) -> Result<rustls::RootCertStore, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certificates()? {
            roots.add(cert).map_err(|e| Error::Ca {
                origin: self.origin(),
                source: e.into(),
            })?;
        }
        Ok(roots)
    }
}

/// A device's X.509 identity: its certificate (leaf first, then any intermediates the service
/// needs to reach the enrollment group's CA) and private key, both PEM. `Debug` never shows
/// the key.
///
/// Clones are cheap and share one parsed form of the chain and key: it is made on first use
/// (or by [`ClientIdentity::prepare`]), so a device that connects many times, or a fleet of
/// them prepared in advance, parses its key once.
#[derive(Clone)]
pub struct ClientIdentity(Arc<IdentityInner>);

struct IdentityInner {
    origin: String,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The chain and the key loaded by the crypto provider, once parsed.
    prepared: OnceLock<Arc<CertifiedKey>>,
}

impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.origin == other.0.origin
                && self.0.chain_pem == other.0.chain_pem
                && self.0.key_pem == other.0.key_pem)
    }
}

impl Eq for ClientIdentity {}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("origin", &self.0.origin)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientIdentity {
    fn with_origin(origin: String, chain_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        Self(Arc::new(IdentityInner {
            origin,
            chain_pem,
            key_pem,
            prepared: OnceLock::new(),
        }))
    }

    /// From PEM text: the certificate chain (one or more `CERTIFICATE` blocks, leaf first) and
    /// the private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self::with_origin("memory".into(), chain_pem.into(), key_pem.into())
    }

    /// Reads the chain and key PEM files.
    pub fn from_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self, Error> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let origin = format!("{} and {}", cert.display(), key.display());
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::Identity {
                origin: origin.clone(),
                source: e.into(),
            })
        };
        let (chain_pem, key_pem) = (read(cert)?, read(key)?);
        Ok(Self::with_origin(origin, chain_pem, key_pem))
    }

    /// The certificate chain, parsed, leaf first.
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let certs = CertificateDer::pem_slice_iter(&self.0.chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(e.into()))?;
        if certs.is_empty() {
            return Err(self.error("no PEM CERTIFICATE block found".into()));
        }
        Ok(certs)
    }

    /// Parses the chain and loads the key now, rather than at the first connection, and
    /// checks that the key belongs to the leaf. Clones share the result.
    pub fn prepare(&self) -> Result<(), Error> {
        self.certified_key().map(drop)
    }

    /// The chain and the loaded key, parsed on first use.
    pub(crate) fn certified_key(&self) -> Result<Arc<CertifiedKey>, Error> {
        if let Some(prepared) = self.0.prepared.get() {
            return Ok(prepared.clone());
        }
        let key =
            PrivateKeyDer::from_pem_slice(&self.0.key_pem).map_err(|e| self.error(e.into()))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(self.chain()?, key, &provider)
            .map_err(|e| self.error(e.into()))?;
        // A concurrent first use may have won; either result is the same.
        Ok(self.0.prepared.get_or_init(|| Arc::new(certified)).clone())
    }

    fn error(&self, source: BoxError) -> Error {
        Error::Identity {
            origin: self.0.origin.clone(),
            source,
        }
    }
}

/// Presents one identity to every server that asks (as rustls's own single-certificate
/// resolver does), from its already parsed form.
#[derive(Debug)]
struct OneIdentity(Arc<CertifiedKey>);

impl ResolvesClientCert for OneIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `base` (a configuration from [`client_config`] without an identity) presenting `identity`:
/// a clone of it with the identity's parsed key, so no roots or PEM are parsed again.
pub(crate) fn with_identity(
    base: &rustls::ClientConfig,
    identity: &ClientIdentity,
) -> Result<rustls::ClientConfig, Error> {
    let mut config = base.clone();
    config.client_auth_cert_resolver = Arc::new(OneIdentity(identity.certified_key()?));
    Ok(config)
}

/// The rustls configuration of a transport: only `ca` when given, else the platform's verifier
/// (as reqwest uses for HTTPS); the device's certificate when it attests with X.509.
/// aws-lc-rs, TLS 1.2 and 1.3.
pub(crate) fn client_config(
    ca: Option<&TrustedCa>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, Error> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let origin = ca.map_or_else(|| "the platform trust store".into(), TrustedCa::origin);
    let tls_error = |source: rustls::Error| Error::Ca {
        origin: origin.clone(),
        source: source.into(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(ca.roots()?),
        None => builder.with_platform_verifier().map_err(tls_error)?,
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => {
            Ok(builder.with_client_cert_resolver(Arc::new(OneIdentity(id.certified_key()?))))
        }
    }
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
        let id =
            ClientIdentity::from_pem(b"no cert".to_vec(), b"-----BEGIN SECRET KEY-----".to_vec());
        assert!(id.chain().is_err());
        assert!(!format!("{id:?}").contains("SECRET"));
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

    #[test]
    fn an_identity_is_parsed_once_and_shared_by_its_clones() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["dev-1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let id = ClientIdentity::from_pem(cert.pem(), key.serialize_pem());
        let clone = id.clone();
        id.prepare().unwrap();
        let (a, b) = (id.certified_key().unwrap(), clone.certified_key().unwrap());
        assert!(Arc::ptr_eq(&a, &b), "the clone uses the parsed form");
        assert_eq!(a.cert, id.chain().unwrap());
        assert_eq!(
            id,
            ClientIdentity::from_pem(cert.pem(), key.serialize_pem())
        );

        // The configuration presents it, and only the resolver changed.
        let ca = TrustedCa::Pem(cert.pem().into_bytes());
        let base = client_config(Some(&ca), None).unwrap();
        assert!(!base.client_auth_cert_resolver.has_certs());
        let with = with_identity(&base, &id).unwrap();
        let presented = with.client_auth_cert_resolver.resolve(&[], &[]).unwrap();
        assert!(Arc::ptr_eq(&presented, &a));

        // A key that is not the leaf's is refused when prepared.
        let other = rcgen::KeyPair::generate().unwrap();
        let wrong = ClientIdentity::from_pem(cert.pem(), other.serialize_pem());
        assert!(matches!(wrong.prepare(), Err(Error::Identity { .. })));
    }
}
