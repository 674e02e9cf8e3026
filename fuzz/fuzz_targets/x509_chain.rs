//! The X.509 certificate path on arbitrary DER must not panic: reading a presented chain (up to
//! four certificates, each prefixed by a 2-byte big-endian length), the thumbprint match of
//! individual enrollments, path building to a group's signing certificate, certificate `info`,
//! the upload decoder and the CA proof check. Whatever parses must be consistent: a chain's
//! own leaf is always its enrolled certificate, and `info` thumbprints are the DER's.

#![no_main]

use dps_attest::x509::{
    CertInfo, ChainError, DeviceChain, decode_uploaded, sha256, verify_group,
    verify_individual, verify_proof_of_possession,
};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

/// 2026-11-27, inside the validity of the seed certificates.
const NOW: u64 = 1_795_737_600;

fn split(mut data: &[u8]) -> Vec<CertificateDer<'_>> {
    let mut certs = Vec::new();
    while certs.len() < 4 && data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = n.min(rest.len());
        certs.push(CertificateDer::from(&rest[..take]));
        data = &rest[take..];
    }
    certs
}

fuzz_target!(|data: &[u8]| {
    let certs = split(data);
    for c in &certs {
        if let Ok(info) = CertInfo::from_der(c) {
            let hex: String = sha256(c).iter().map(|b| format!("{b:02X}")).collect();
            assert_eq!(info.sha256_thumbprint, hex);
            assert!((1..=3).contains(&info.version));
        }
    }
    let _ = decode_uploaded(&String::from_utf8_lossy(data));
    if let (Some(ca), Some(proof)) = (certs.last(), certs.first()) {
        let _ = verify_proof_of_possession(ca, proof, NOW);
    }
    let Ok(chain) = DeviceChain::parse(&certs) else {
        return;
    };
    let _ = chain.check_registration_id(chain.registration_id());
    let own = [chain.leaf_sha256()];
    match verify_individual(&chain, &own, NOW) {
        Err(ChainError::NotEnrolled) => panic!("the leaf's own thumbprint must match"),
        _ => {}
    }
    assert!(matches!(
        verify_individual(&chain, &[], NOW),
        Err(ChainError::NotEnrolled)
    ));
    for anchor in &certs {
        let _ = chain.issuer_depth(anchor);
        let _ = verify_group(&chain, anchor, &certs, NOW);
    }
});
