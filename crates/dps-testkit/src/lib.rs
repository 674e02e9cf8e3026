//! Test support for dps-rs (not published): a settable [`FakeClock`], deterministic
//! [`SeqEntropy`], a ready-made scope ([`fixture_scope`]) and token helpers, so tests of the
//! service and the servers read like the scenarios they check.
//!
//! Integration tests that need several crates at once (service rules, end-to-end HTTPS with
//! `dps-client`) live in this crate's `tests/` directory, because crates that dps-testkit depends
//! on cannot dev-depend on it.
//!
//! ```
//! use dps_testkit::{FakeClock, fixture_service};
//!
//! let clock = FakeClock::at_unix(1_800_000_000);
//! let (svc, _hubs) = fixture_service(clock.clone());
//! assert_eq!(svc.now().unix_seconds(), 1_800_000_000);
//! clock.advance_secs(10);
//! assert_eq!(svc.now().unix_seconds(), 1_800_000_010);
//! ```

pub mod azure_registry;
pub mod conformance;
pub mod pki;
mod tls_listener;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dps_alloc::{Hub, HubSet};
use dps_attest::sas::{self, SigningKey};
use dps_connect::InProcessHubRegistry;
use dps_service::{AccessPolicy, Clock, Entropy, Right, ScopeConfig, Service};
use dps_store::MemoryStore;
use dps_types::{HubHostName, IdScope, Timestamp};

/// A clock that only moves when told to. Clones share the time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    /// A clock at `secs` since the Unix epoch.
    pub fn at_unix(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs.saturating_mul(1_000_000_000))))
    }
    /// Moves the clock forward.
    pub fn advance_secs(&self, secs: i64) {
        self.0
            .fetch_add(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }
    /// Seconds since the epoch.
    pub fn unix(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::SeqCst) / 1_000_000_000).unwrap_or(0)
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(i128::from(self.0.load(Ordering::SeqCst)))
            .unwrap_or_else(|| Timestamp::new(time::OffsetDateTime::UNIX_EPOCH))
    }
}

/// Deterministic "random" bytes (splitmix64 of a counter). Never use outside tests.
#[derive(Debug, Default)]
pub struct SeqEntropy(AtomicU64);

impl Entropy for SeqEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.0.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// The fixture's ID scope.
pub const SCOPE: &str = "0ne00000001";
/// The fixture's service host name.
pub const SERVICE_HOST: &str = "localhost";
/// The fixture's owner policy name.
pub const OWNER: &str = "provisioningserviceowner";
/// The owner policy's key (from the wire captures).
pub const OWNER_KEY: &str = "dGVzdC1rZXktc2VydmljZS0wMTIzNDU2Nzg5YWJjZGU=";
/// A read-only policy name.
pub const READER: &str = "enrollmentread";
/// Its key.
pub const READER_KEY: &str = "cmVhZGVyLWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=";
/// An individual device key (from the wire captures).
pub const DEV1_KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
/// A group key (from the wire captures).
pub const GROUP_KEY: &str = "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=";

fn key(b64: &str) -> SigningKey {
    SigningKey::from_base64(b64).unwrap_or_else(|_| SigningKey::from_bytes(b64.as_bytes()))
}

/// A scope with hubs `hub-a` (weight 1), `hub-b` (weight 1) and `hub-off` (not in allocation),
/// an owner policy and a read-only policy.
pub fn fixture_scope(id_scope: &str, service_host: &str) -> ScopeConfig {
    let id = IdScope::new(id_scope).expect("fixture scopes use valid ids");
    let mut s = ScopeConfig::new(id, service_host);
    let hub = |n: &str, apply| HubHostName::new(n).map(|h| Hub::new(h, 1, apply)).ok();
    s.hubs = HubSet::new(
        [
            hub("hub-a.example.net", true),
            hub("hub-b.example.net", true),
            hub("hub-off.example.net", false),
        ]
        .into_iter()
        .flatten()
        .collect(),
    );
    s.policies = vec![
        AccessPolicy {
            name: OWNER.into(),
            primary: key(OWNER_KEY),
            secondary: None,
            rights: vec![
                Right::ServiceConfig,
                Right::EnrollmentWrite,
                Right::RegistrationStatusWrite,
            ],
        },
        AccessPolicy {
            name: READER.into(),
            primary: key(READER_KEY),
            secondary: None,
            rights: vec![Right::EnrollmentRead],
        },
    ];
    s
}

/// A service over the memory store and an in-process hub registry, with the fixture scope,
/// `clock` and deterministic entropy.
pub fn fixture_service(
    clock: FakeClock,
) -> (
    Service<MemoryStore, InProcessHubRegistry>,
    InProcessHubRegistry,
) {
    let hubs = InProcessHubRegistry::default();
    let svc = Service::builder(MemoryStore::new(), hubs.clone())
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .clock(clock)
        .entropy(SeqEntropy::default())
        .build();
    (svc, hubs)
}

/// A device token for `{scope}/registrations/{rid}` signed with `key_b64`, valid until `expiry`.
pub fn device_token(scope: &str, rid: &str, key_b64: &str, expiry: u64) -> String {
    sas::generate_token(
        &format!("{scope}/registrations/{rid}"),
        &key(key_b64),
        expiry,
        Some("registration"),
    )
}

/// A device token signed with the key derived for `rid` from `group_key_b64`.
pub fn group_device_token(scope: &str, rid: &str, group_key_b64: &str, expiry: u64) -> String {
    let derived = sas::derive_device_key(&key(group_key_b64), rid);
    sas::generate_token(
        &format!("{scope}/registrations/{rid}"),
        &derived,
        expiry,
        Some("registration"),
    )
}

/// A service token for `host` under policy `name`.
pub fn service_token(host: &str, name: &str, key_b64: &str, expiry: u64) -> String {
    sas::generate_token(host, &key(key_b64), expiry, Some(name))
}
