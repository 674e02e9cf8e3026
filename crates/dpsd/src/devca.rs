//! The development trust root: a CA generated once under the data directory and a server
//! certificate for `localhost`, `127.0.0.1`, `::1` and the configured host names, re-issued at
//! every start from the persisted CA key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the generated material.
pub struct DevTls {
    pub ca: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "dps-rs development CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "dps-rs");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

/// Makes sure the dev CA exists in `dir` and issues a fresh server certificate for `names`.
pub fn ensure(dir: &Path, names: &[String]) -> Result<DevTls> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = dir.join("dev-ca.pem");
    let ca_key_path = dir.join("dev-ca-key.pem");
    let ca_key = if ca.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).context("parsing the dev CA key")?
    } else {
        let key = KeyPair::generate().context("generating the dev CA key")?;
        let cert = ca_params()?
            .self_signed(&key)
            .context("signing the dev CA")?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&ca, cert.pem()).with_context(|| format!("writing {}", ca.display()))?;
        key
    };
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !sans.iter().any(|s| s.eq_ignore_ascii_case(n)) {
            sans.push(n.clone());
        }
    }
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name
        .push(DnType::CommonName, "dps-rs development server");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = p
        .signed_by(&key, &issuer)
        .context("issuing the server certificate")?;
    let chain = dir.join("server-chain.pem");
    let key_path = dir.join("server-key.pem");
    std::fs::write(&chain, cert.pem()).with_context(|| format!("writing {}", chain.display()))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    Ok(DevTls {
        ca,
        chain,
        key: key_path,
    })
}
