//! [`ChainError`]: why a device certificate or chain was refused, one variant per reason.

/// Why a presented certificate chain does not authenticate a device.
///
/// `Display` is short and lowercase; devices only ever see Azure's `401002`, operators get this
/// reason in the log. Foreign parser and verifier errors are kept as the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The TLS client presented no certificate.
    #[error("no client certificate presented")]
    NoCertificate,
    /// A certificate is not valid DER X.509.
    #[error("malformed certificate")]
    Malformed(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// The leaf's subject has no common name (CN), so it names no registration.
    #[error("leaf certificate has no subject common name")]
    NoCommonName,
    /// The leaf's CN differs from the registration ID the request is for.
    #[error("leaf common name does not match the registration id")]
    CommonNameMismatch,
    /// Individual enrollment: the leaf is neither the primary nor the secondary certificate.
    #[error("certificate does not match the enrollment")]
    NotEnrolled,
    /// No path leads from the leaf to the enrollment's signing certificate.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// A certificate of the path has expired.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the path is not valid yet.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// A signature of the path does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The leaf's key usage or extended key usage does not allow TLS client authentication.
    #[error("key usage does not allow client authentication")]
    WrongKeyUsage,
    /// Basic constraints are violated: a CA certificate used as the device certificate, an
    /// end-entity certificate used as an issuer, or a path longer than a `pathLen` allows.
    #[error("basic constraints violated")]
    BasicConstraints,
    /// The signature algorithm or key type is not supported.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// Any other reason the verifier gave (unsupported critical extension, name constraints,
    /// ...); the verifier's error is the source.
    #[error("certificate chain rejected")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ChainError {
    pub(crate) fn malformed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Malformed(Some(Box::new(e)))
    }
}

#[allow(deprecated)] // webpki still returns its deprecated variants in some paths
impl From<webpki::Error> for ChainError {
    fn from(e: webpki::Error) -> Self {
        use webpki::Error as W;
        match e {
            W::UnknownIssuer => Self::UnknownIssuer,
            W::CertExpired { .. } => Self::Expired,
            W::CertNotValidYet { .. } => Self::NotYetValid,
            W::InvalidSignatureForPublicKey | W::SignatureAlgorithmMismatch => Self::BadSignature,
            W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
                Self::WrongKeyUsage
            }
            W::CaUsedAsEndEntity | W::EndEntityUsedAsCa | W::PathLenConstraintViolated => {
                Self::BasicConstraints
            }
            W::UnsupportedSignatureAlgorithm
            | W::UnsupportedSignatureAlgorithmContext(_)
            | W::UnsupportedSignatureAlgorithmForPublicKey
            | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => Self::UnsupportedAlgorithm,
            W::BadDer | W::BadDerTime | W::TrailingData(_) | W::InvalidCertValidity => {
                Self::Malformed(Some(Box::new(e)))
            }
            other => Self::Rejected(Box::new(other)),
        }
    }
}
