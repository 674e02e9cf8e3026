//! SAS token verification: one device with an individual enrollment, and the worst case of a
//! group enrollment lookup where the device's group is the last of N candidates.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dps_attest::sas::{SasToken, SigningKey, derive_device_key, generate_token, verify_device};

const SCOPE: &str = "0ne00000001";
const NOW: u64 = 1_795_766_000;
const EXPIRY: u64 = 1_795_769_664;

/// Captured from the Node.js device SDK (sdk-wire-captures.md §3).
const NODE_TOKEN: &str = "SharedAccessSignature sr=0ne00000001/registrations/dev-1\
    &sig=jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D&skn=registration&se=1795769664";

fn individual(c: &mut Criterion) {
    let Ok(key) = SigningKey::from_base64("dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==") else {
        panic!("bad benchmark key");
    };
    let other = SigningKey::from_bytes(b"secondary key that does not match");
    c.bench_function("sas/parse", |b| {
        b.iter(|| SasToken::parse(black_box(NODE_TOKEN)).is_ok());
    });
    c.bench_function("sas/parse_verify_device", |b| {
        b.iter(|| {
            let token = SasToken::parse(black_box(NODE_TOKEN)).ok()?;
            verify_device(&token, SCOPE, "dev-1", &[&other, &key], black_box(NOW)).ok()
        });
    });
}

/// N groups with a primary and a secondary key each; the device's key is derived from the last
/// group's primary, so every group is tried: derive two device keys per group, verify both.
fn group_lookup(c: &mut Criterion) {
    let rid = "dev-group-1";
    let mut g = c.benchmark_group("sas/group_lookup");
    for n in [1usize, 10, 100, 1000] {
        let groups: Vec<(SigningKey, SigningKey)> = (0..n)
            .map(|i| {
                let primary =
                    SigningKey::from_bytes(format!("group-{i}-primary-key-0123456789").as_bytes());
                let secondary =
                    SigningKey::from_bytes(format!("group-{i}-secondary-key-012345678").as_bytes());
                (primary, secondary)
            })
            .collect();
        let Some((last, _)) = groups.last() else {
            panic!("no groups");
        };
        let device_key = derive_device_key(last, rid);
        let text = generate_token(
            &format!("{SCOPE}/registrations/{rid}"),
            &device_key,
            EXPIRY,
            None,
        );

        let find = |groups: &[(SigningKey, SigningKey)]| {
            let token = SasToken::parse(black_box(&text)).ok()?;
            groups.iter().position(|(primary, secondary)| {
                let p = derive_device_key(primary, rid);
                let s = derive_device_key(secondary, rid);
                verify_device(&token, SCOPE, rid, &[&p, &s], NOW).is_ok()
            })
        };
        assert_eq!(find(&groups), Some(n - 1), "the last group must match");

        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &groups, |b, groups| {
            b.iter(|| find(groups));
        });
    }
    g.finish();
}

criterion_group!(benches, individual, group_lookup);
criterion_main!(benches);
