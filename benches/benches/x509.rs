//! X.509 chain verification as a group enrollment does it (`verify_group`: parse the leaf,
//! build the path through the presented intermediates to the group's signing certificate,
//! check every signature, validity and constraint), for ECDSA P-256 and RSA-2048 chains of
//! depth 2 (root -> device) and 3 (root -> intermediate -> device); beside it, one raw
//! signature verification of the same key type, so the chain's overhead over its signature
//! checks can be read off directly.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dps_attest::x509::{DeviceChain, verify_group, verify_individual};
use dps_testkit::pki::{KeyAlg, TestCa};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize, SigningKey as _};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn chains(c: &mut Criterion) {
    let mut g = c.benchmark_group("x509/verify_group");
    for (alg, name) in [(KeyAlg::P256, "p256"), (KeyAlg::Rsa2048, "rsa2048")] {
        let root = TestCa::root("bench root", alg);
        let inter = root.intermediate("bench intermediate");
        let depth2: Vec<CertificateDer<'static>> = vec![root.device("bench-dev").cert];
        let depth3: Vec<CertificateDer<'static>> =
            vec![inter.device("bench-dev").cert, inter.cert.clone()];
        let now = now();
        for (depth, chain) in [(2, &depth2), (3, &depth3)] {
            // Fail loudly rather than measure an early refusal.
            let parsed = DeviceChain::parse(chain).expect("chain parses");
            verify_group(&parsed, &root.cert, &[], now).expect("chain verifies");
            g.bench_function(BenchmarkId::new(name, format!("depth{depth}")), |b| {
                b.iter(|| {
                    let parsed = DeviceChain::parse(black_box(chain)).ok()?;
                    verify_group(&parsed, black_box(&root.cert), &[], now).ok()
                });
            });
        }
        // Individual enrollments: parse and compare thumbprints, no signature at all.
        let pinned = [dps_attest::x509::sha256(&depth2[0])];
        g.bench_function(BenchmarkId::new(name, "individual"), |b| {
            b.iter(|| {
                let parsed = DeviceChain::parse(black_box(&depth2)).ok()?;
                verify_individual(&parsed, &pinned, now).ok()
            });
        });
    }
    g.finish();
}

fn raw_signatures(c: &mut Criterion) {
    let mut g = c.benchmark_group("x509/raw_signature_verify");
    let message = [0x5au8; 512]; // about the size of a device certificate's TBS part
    let cases: [(&str, KeyPair, &dyn SignatureVerificationAlgorithm); 2] = [
        (
            "p256",
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key"),
            webpki::aws_lc_rs::ECDSA_P256_SHA256,
        ),
        (
            "rsa2048",
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).expect("key"),
            webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        ),
    ];
    for (name, key, alg) in cases {
        let signature = key.sign(&message).expect("signs");
        let public = key.public_key_raw().to_vec();
        alg.verify_signature(&public, &message, &signature)
            .expect("signature verifies");
        g.bench_function(name, |b| {
            b.iter(|| {
                alg.verify_signature(
                    black_box(&public),
                    black_box(&message),
                    black_box(&signature),
                )
                .is_ok()
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = chains, raw_signatures
}
criterion_main!(benches);
