//! Per-scope configuration: linked hubs, default allocation policy, shared access policies.

use std::sync::{Arc, PoisonError, RwLock};

use dps_alloc::{HubSet, SourceRegions};
use dps_attest::sas::SigningKey;
use dps_types::{AllocationPolicy, IdScope};

/// A right of a shared access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// Change service configuration; implies every service-API right.
    ServiceConfig,
    /// Read enrollments and groups.
    EnrollmentRead,
    /// Write enrollments and groups (implies read).
    EnrollmentWrite,
    /// Read registration records.
    RegistrationStatusRead,
    /// Delete registration records (implies read).
    RegistrationStatusWrite,
    /// Device API (not used by the service API).
    DeviceConnect,
}

impl Right {
    /// Parses a right name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "serviceconfig" => Self::ServiceConfig,
            "enrollmentread" => Self::EnrollmentRead,
            "enrollmentwrite" => Self::EnrollmentWrite,
            "registrationstatusread" => Self::RegistrationStatusRead,
            "registrationstatuswrite" => Self::RegistrationStatusWrite,
            "deviceconnect" => Self::DeviceConnect,
            _ => return None,
        })
    }
    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServiceConfig => "ServiceConfig",
            Self::EnrollmentRead => "EnrollmentRead",
            Self::EnrollmentWrite => "EnrollmentWrite",
            Self::RegistrationStatusRead => "RegistrationStatusRead",
            Self::RegistrationStatusWrite => "RegistrationStatusWrite",
            Self::DeviceConnect => "DeviceConnect",
        }
    }
}

/// A shared access policy of the service API.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Policy (key) name, matched case-insensitively against `skn`.
    pub name: String,
    /// Primary key.
    pub primary: SigningKey,
    /// Secondary key.
    pub secondary: Option<SigningKey>,
    /// Granted rights.
    pub rights: Vec<Right>,
}

impl AccessPolicy {
    /// Whether the policy grants `r`, with the implications `ServiceConfig` ⇒ all,
    /// `EnrollmentWrite` ⇒ `EnrollmentRead`, `RegistrationStatusWrite` ⇒ `RegistrationStatusRead`.
    pub fn grants(&self, r: Right) -> bool {
        self.rights.iter().any(|have| {
            *have == r
                || *have == Right::ServiceConfig
                || (*have == Right::EnrollmentWrite && r == Right::EnrollmentRead)
                || (*have == Right::RegistrationStatusWrite && r == Right::RegistrationStatusRead)
        })
    }
}

/// One ID scope (tenant) served by this service.
#[derive(Debug, Clone)]
pub struct ScopeConfig {
    /// The ID scope.
    pub id_scope: IdScope,
    /// The service-API host name of this scope (its `sr` audience and `Host` header).
    pub service_host_name: String,
    /// The default allocation policy.
    pub allocation_policy: AllocationPolicy,
    /// Linked hubs.
    pub hubs: HubSet,
    /// Shared access policies.
    pub policies: Vec<AccessPolicy>,
    /// CA certificates that X.509 groups may name in `caReferences`.
    pub cas: Vec<ScopeCa>,
    /// What answers the `custom` policy (a webhook client, or the embedder's own code); without
    /// one, custom registrations fail with 400207.
    pub custom_allocator: Option<Arc<dyn crate::CustomAllocator>>,
    /// Client address → source region, for the lowest-latency policy.
    pub source_regions: Arc<SourceRegions>,
    /// When set, allocation takes the prepared hubs from here, so that they can be re-prepared
    /// at run time (e.g. with measured latencies) and swapped in; `hubs` still says which hubs
    /// are linked.
    pub live_hubs: Option<SharedHubSet>,
}

/// A CA certificate registered on a scope, as Azure's DPS resource holds them
/// (`certificates/{name}`): groups refer to it by name; only a verified CA may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCa {
    /// The name `caReferences` use (matched case-insensitively).
    pub name: String,
    /// The certificate (a root or an intermediate).
    pub der: rustls_pki_types::CertificateDer<'static>,
    /// Whether possession of its private key has been proven (or the operator vouched for it).
    pub verified: bool,
}

impl ScopeConfig {
    /// The verified CA registered under `name`.
    pub fn verified_ca(&self, name: &str) -> Option<&ScopeCa> {
        self.cas
            .iter()
            .find(|c| c.verified && c.name.eq_ignore_ascii_case(name))
    }
}

/// A [`HubSet`] that can be replaced while requests read it: each request takes the current
/// set once (an `Arc` clone under a read lock) and keeps it to the end.
///
/// A plain `RwLock` rather than a lock-free swap: writes happen once per probe round, reads
/// hold the lock for one reference-count increment, so there is nothing to gain from another
/// dependency. Each store counts as a new version, so that a set prepared from an older one
/// (e.g. the second stage of [`dps_alloc::HubSetBuilder::build_in_stages`]) does not replace a
/// newer one.
#[derive(Debug, Clone, Default)]
pub struct SharedHubSet(Arc<RwLock<Versioned>>);

#[derive(Debug, Default)]
struct Versioned {
    version: u64,
    hubs: HubSet,
}

impl SharedHubSet {
    /// Starts with `hubs`, at version 0.
    pub fn new(hubs: HubSet) -> Self {
        Self(Arc::new(RwLock::new(Versioned { version: 0, hubs })))
    }

    /// The current set.
    pub fn load(&self) -> HubSet {
        self.read().hubs.clone()
    }

    /// The current version: 0, then one more per store.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Replaces the set; requests already running keep the one they took.
    pub fn store(&self, hubs: HubSet) {
        let mut v = self.write();
        v.version += 1;
        v.hubs = hubs;
    }

    /// Replaces the set if it is still at `version` (nothing was stored since); returns
    /// whether it did.
    pub fn store_if(&self, version: u64, hubs: HubSet) -> bool {
        let mut v = self.write();
        if v.version != version {
            return false;
        }
        v.version += 1;
        v.hubs = hubs;
        true
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versioned> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Versioned> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScopeConfig {
    /// A scope with no hubs and no policies, hashed allocation.
    pub fn new(id_scope: IdScope, service_host_name: impl Into<String>) -> Self {
        Self {
            id_scope,
            service_host_name: service_host_name.into(),
            allocation_policy: AllocationPolicy::Hashed,
            hubs: HubSet::default(),
            policies: Vec::new(),
            cas: Vec::new(),
            custom_allocator: None,
            source_regions: Arc::default(),
            live_hubs: None,
        }
    }

    /// The prepared hubs allocation uses now ([`ScopeConfig::live_hubs`], else
    /// [`ScopeConfig::hubs`]).
    pub fn current_hubs(&self) -> HubSet {
        self.live_hubs
            .as_ref()
            .map_or_else(|| self.hubs.clone(), SharedHubSet::load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_types::HubHostName;

    fn set(host: &str) -> HubSet {
        let Ok(host) = HubHostName::new(host) else {
            panic!("bad host name {host}");
        };
        HubSet::new(vec![dps_alloc::Hub::new(host, 1, true)])
    }

    fn first_host(s: &SharedHubSet) -> String {
        s.load().hubs()[0].host.as_str().to_owned()
    }

    #[test]
    fn a_set_prepared_from_an_older_version_does_not_replace_a_newer_one() {
        let shared = SharedHubSet::new(set("a.example.net"));
        let seen = shared.version();
        assert_eq!(seen, 0);
        shared.store(set("b.example.net"));
        assert!(!shared.store_if(seen, set("c.example.net")));
        assert_eq!(first_host(&shared), "b.example.net");
        assert!(shared.store_if(shared.version(), set("d.example.net")));
        assert_eq!(
            (first_host(&shared), shared.version()),
            ("d.example.net".into(), 2)
        );
    }
}
