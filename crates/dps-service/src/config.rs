//! Per-scope configuration: linked hubs, default allocation policy, shared access policies.

use dps_alloc::HubSet;
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
        }
    }
}
