//! `[[scope.ca]]`: the CA certificates of a scope that X.509 enrollment groups name in
//! `caReferences`. A CA is usable only once verified: by `verified = true` (the operator
//! vouches for it) or by a proof-of-possession certificate (`proof_pem`: signed with the CA's
//! key, subject CN `verify-<SHA-256 of the CA's DER, upper-case hex>`).
//!
//! ```toml
//! [[scope.ca]]
//! name = "contoso-root"
//! pem = "contoso-root.pem"
//! verified = true
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dps_attest::x509;
use dps_service::ScopeCa;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

/// One `[[scope.ca]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeCaConfig {
    /// The name `caReferences` use.
    pub name: String,
    /// PEM file holding the CA certificate (one `CERTIFICATE` block).
    pub pem: PathBuf,
    /// The operator vouches for the CA without a proof.
    #[serde(default)]
    pub verified: bool,
    /// PEM file of a proof-of-possession certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_pem: Option<PathBuf>,
}

impl ScopeCaConfig {
    /// Makes relative paths relative to the config file's directory.
    pub fn rebase(&mut self, base: &Path) {
        for p in std::iter::once(&mut self.pem).chain(self.proof_pem.as_mut()) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Reads the certificate and checks the proof, if any, at `now` (unix seconds).
    pub fn load(&self, now: u64) -> Result<ScopeCa> {
        let der = read_one(&self.pem).with_context(|| format!("scope ca {}", self.name))?;
        let proven = match &self.proof_pem {
            None => false,
            Some(p) => {
                let proof = read_one(p).with_context(|| format!("scope ca {}", self.name))?;
                x509::verify_proof_of_possession(&der, &proof, now).with_context(|| {
                    format!(
                        "scope ca {}: {} is no proof of possession (expected CN {})",
                        self.name,
                        p.display(),
                        x509::verification_code(&der)
                    )
                })?;
                true
            }
        };
        Ok(ScopeCa {
            name: self.name.clone(),
            der,
            verified: self.verified || proven,
        })
    }
}

fn read_one(path: &Path) -> Result<CertificateDer<'static>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut certs = CertificateDer::pem_slice_iter(&text);
    let first = match certs.next() {
        Some(c) => c.with_context(|| format!("parsing {}", path.display()))?,
        None => bail!("{}: no PEM CERTIFICATE block", path.display()),
    };
    if certs.next().is_some() {
        bail!("{}: expected exactly one certificate", path.display());
    }
    x509::CertInfo::from_der(&first).with_context(|| format!("parsing {}", path.display()))?;
    Ok(first)
}

/// Loads a scope's CAs; names must be unique (case-insensitively).
pub fn load_all(cas: &[ScopeCaConfig], now: u64) -> Result<Vec<ScopeCa>> {
    let mut out: Vec<ScopeCa> = Vec::with_capacity(cas.len());
    for c in cas {
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(&c.name)) {
            bail!("scope ca {}: the name is used twice", c.name);
        }
        out.push(c.load(now)?);
    }
    Ok(out)
}

/// Seconds since the Unix epoch, for checking proofs at start.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dps_testkit::pki::{KeyAlg, TestCa};

    use super::*;

    #[test]
    fn a_ca_is_verified_by_the_operator_or_by_its_proof() {
        let dir = std::env::temp_dir().join(format!("dpsd-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::root("config root", KeyAlg::P256);
        let impostor = TestCa::root("config root", KeyAlg::P256);
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.join("proof.pem"), ca.proof_of_possession().cert_pem).unwrap();
        std::fs::write(
            dir.join("forged.pem"),
            impostor.proof_of_possession().cert_pem,
        )
        .unwrap();
        let entry = |name: &str, verified, proof: Option<&str>| {
            let mut c = ScopeCaConfig {
                name: name.into(),
                pem: "ca.pem".into(),
                verified,
                proof_pem: proof.map(PathBuf::from),
            };
            c.rebase(&dir);
            c
        };
        let now = unix_now();
        assert!(!entry("plain", false, None).load(now).unwrap().verified);
        assert!(entry("vouched", true, None).load(now).unwrap().verified);
        assert!(
            entry("proven", false, Some("proof.pem"))
                .load(now)
                .unwrap()
                .verified
        );
        assert!(
            entry("forged", false, Some("forged.pem"))
                .load(now)
                .is_err()
        );
        let twice = [entry("a", true, None), entry("A", true, None)];
        assert!(load_all(&twice, now).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
