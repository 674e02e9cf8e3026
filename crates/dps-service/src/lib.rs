//! The embeddable registration engine of dps-rs: a [`Service`] over a storage backend
//! ([`dps_store::Store`]) and a linked-hub registry ([`HubRegistry`]), serving one or more ID
//! scopes ([`ScopeConfig`]).
//!
//! It owns the request semantics of both Azure DPS APIs, independent of any transport:
//!
//! - the device API: [`Service::register`], [`Service::operation_status`],
//!   [`Service::registration_status`] (symmetric-key and X.509 attestation, individual
//!   enrollments before groups, disabled enrollments, allocation, reprovisioning, the hub write,
//!   metering);
//! - the service API: enrollment and group CRUD with etags, bulk, paged queries, registration
//!   records, operation counters ([`admin`]), authorised by shared access policies.
//!
//! It is async but runtime-agnostic (no tokio), reads no configuration files and installs no
//! logger: every refusal is a [`Rejection`] whose text is for the operator's log. Outbound calls
//! are traits ([`HubRegistry`]); time and randomness come from [`Clock`] and [`Entropy`].
//! Network front ends live in `dps-server`.
//!
//! ```
//! use dps_attest::sas::{SigningKey, generate_token};
//! use dps_connect::InProcessHubRegistry;
//! use dps_service::{DeviceCredential, RegisterRequest, ScopeConfig, Service};
//! use dps_store::{MemoryStore, block_on_ready};
//! use dps_types::{HubHostName, IdScope, IndividualEnrollment, RegistrationStatus};
//!
//! const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
//! let mut scope = ScopeConfig::new(IdScope::new("0ne00000001").unwrap(), "localhost");
//! let hub = HubHostName::new("hub.example.net").unwrap();
//! scope.hubs = dps_alloc::HubSet::new(vec![dps_alloc::Hub::new(hub, 1, true)]);
//! let hubs = InProcessHubRegistry::default();
//! let svc = Service::builder(MemoryStore::new(), hubs.clone()).scope(scope).build();
//!
//! // Enroll a device (trusted, in-process: remote admins use the service API with SAS).
//! let body = serde_json::json!({
//!     "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}
//! });
//! let admin = svc.admin_for_scope("0ne00000001").unwrap();
//! block_on_ready(admin.put::<IndividualEnrollment>("dev-1", body, None)).unwrap();
//!
//! // The device registers with a SAS token signed by its key. The memory store and the
//! // in-process hub answer at once, so no runtime is needed here; `dps-server` serves HTTPS.
//! let key = SigningKey::from_base64(KEY).unwrap();
//! let token = generate_token("0ne00000001/registrations/dev-1", &key, 4_000_000_000, None);
//! let op = block_on_ready(svc.register(RegisterRequest {
//!     id_scope: "0ne00000001",
//!     registration_id: "dev-1",
//!     credential: DeviceCredential::Sas(&token),
//!     payload: None,
//!     legacy_api: false,
//!     source: None,
//! }))
//! .unwrap();
//! assert_eq!(op.status, RegistrationStatus::Assigned);
//! assert_eq!(hubs.devices()[0].device_id, "dev-1");
//! ```

pub mod admin;
mod allocate;
mod assign;
mod auth;
mod config;
mod custom;
mod device;
mod env;
mod hubs;
mod provision;
mod x509_auth;

use std::collections::HashMap;
use std::sync::Arc;

use dps_store::{Store, StoreError};
use dps_types::Rejection;

pub use config::{AccessPolicy, Right, ScopeCa, ScopeConfig, SharedHubSet};
pub use custom::{
    BoxFuture, CustomAllocationError, CustomAllocationRequest, CustomAllocationResponse,
    CustomAllocator, DeviceRuntimeContext,
};
pub use device::{DeviceCredential, RegisterRequest};
pub use env::{Clock, Entropy, OsEntropy, SystemClock};
pub use hubs::{HubAuth, HubDevice, HubDeviceState, HubError, HubRegistry};

/// Metering kinds: every successful call counts one operation of one kind for its scope.
pub mod meter {
    /// A device registration (register call that reached an enrollment).
    pub const DEVICE_REGISTRATION: &str = "deviceRegistration";
    /// Enrollment or group create, update, delete, bulk.
    pub const ENROLLMENT_WRITE: &str = "enrollmentWrite";
    /// Enrollment or group get, query, attestation mechanism.
    pub const ENROLLMENT_READ: &str = "enrollmentRead";
    /// Registration record get or query.
    pub const REGISTRATION_READ: &str = "registrationRead";
    /// Registration record delete.
    pub const REGISTRATION_WRITE: &str = "registrationWrite";
}

/// Tunables that are not per scope.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `Retry-After` seconds sent with `assigning` answers.
    pub retry_after_secs: u32,
    /// Clock skew tolerated on SAS expiry, seconds.
    pub clock_skew_secs: u64,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            retry_after_secs: 2,
            clock_skew_secs: 0,
        }
    }
}

/// The registration engine. Cheap to clone (shared state).
pub struct Service<S, H> {
    store: Arc<S>,
    hubs: Arc<H>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    scopes: Arc<HashMap<String, ScopeConfig>>,
    options: Arc<ServiceOptions>,
    group_cache: Arc<GroupCache>,
}

/// Per scope: the store's group snapshot and the groups' decoded keys.
type GroupCache = std::sync::Mutex<
    HashMap<String, (Arc<[dps_types::EnrollmentGroup]>, Arc<auth::PreparedGroups>)>,
>;

impl<S, H> Clone for Service<S, H> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            hubs: self.hubs.clone(),
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
            scopes: self.scopes.clone(),
            options: self.options.clone(),
            group_cache: self.group_cache.clone(),
        }
    }
}

/// Builds a [`Service`].
pub struct ServiceBuilder<S, H> {
    store: S,
    hubs: H,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    scopes: Vec<ScopeConfig>,
    options: ServiceOptions,
}

impl<S: Store, H: HubRegistry> ServiceBuilder<S, H> {
    /// Adds a scope (a later scope with the same ID replaces an earlier one).
    pub fn scope(mut self, s: ScopeConfig) -> Self {
        self.scopes.push(s);
        self
    }
    /// Replaces the clock.
    pub fn clock(mut self, c: impl Clock) -> Self {
        self.clock = Arc::new(c);
        self
    }
    /// Replaces the entropy source.
    pub fn entropy(mut self, e: impl Entropy) -> Self {
        self.entropy = Arc::new(e);
        self
    }
    /// Replaces the options.
    pub fn options(mut self, o: ServiceOptions) -> Self {
        self.options = o;
        self
    }
    /// Builds the service.
    pub fn build(self) -> Service<S, H> {
        let scopes = self
            .scopes
            .into_iter()
            .map(|s| (s.id_scope.key(), s))
            .collect();
        Service {
            store: Arc::new(self.store),
            hubs: Arc::new(self.hubs),
            clock: self.clock,
            entropy: self.entropy,
            scopes: Arc::new(scopes),
            options: Arc::new(self.options),
            group_cache: Arc::default(),
        }
    }
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Starts a builder with the system clock and OS entropy.
    pub fn builder(store: S, hubs: H) -> ServiceBuilder<S, H> {
        ServiceBuilder {
            store,
            hubs,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            scopes: Vec::new(),
            options: ServiceOptions::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The hub registry.
    pub fn hubs(&self) -> &H {
        &self.hubs
    }

    /// The options.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The configured scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &ScopeConfig> {
        self.scopes.values()
    }

    /// The current time.
    pub fn now(&self) -> dps_types::Timestamp {
        self.clock.now()
    }

    fn now_unix(&self) -> u64 {
        u64::try_from(self.clock.now().unix_seconds())
            .unwrap_or(0)
            .saturating_sub(self.options.clock_skew_secs)
    }

    fn device_scope(&self, id_scope: &str) -> Result<&ScopeConfig, Rejection> {
        self.scopes
            .get(&id_scope.to_ascii_lowercase())
            .ok_or(Rejection::ScopeNotFound)
    }
}

pub(crate) fn store_err(e: StoreError) -> Rejection {
    match e {
        StoreError::Unavailable(_) => Rejection::Unavailable,
        StoreError::Conflict => Rejection::Conflict("the record already exists".into()),
        StoreError::PreconditionFailed => Rejection::PreconditionFailed,
        _ => Rejection::Internal,
    }
}
