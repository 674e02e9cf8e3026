//! The `embedded` connector: an in-process registry of every linked hub, for dpsd used as a
//! standalone registry, for development and for tests. Identities live in process memory;
//! with an [`IdentityJournal`] ([`InProcessHubRegistry::with_journal`]) every change is also
//! written through to durable storage before the call returns, and
//! [`restore`](InProcessHubRegistry::restore) loads the journaled identities at start. Cloning
//! shares the data.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use dps_service::{HubDevice, HubDeviceState, HubError, HubRegistry};
use dps_types::{DeviceCapabilities, HubHostName, HubIdentity, InitialTwin, RegistrationId};

/// What an [`IdentityJournal`] call resolves to.
pub type JournalResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The boxed future of an [`IdentityJournal`] call.
pub type JournalFuture<'a> = Pin<Box<dyn Future<Output = JournalResult> + Send + 'a>>;

/// Durable storage behind an [`InProcessHubRegistry`]: the registry calls it, and waits for
/// it, before a change becomes visible. A failure makes the registry call fail with
/// [`HubError::Unavailable`] and leaves the in-memory identity unchanged.
pub trait IdentityJournal: Send + Sync + 'static {
    /// Creates or replaces the stored identity.
    fn save(&self, identity: HubIdentity) -> JournalFuture<'_>;
    /// Deletes the stored identity; an identity that is not stored is not an error.
    fn remove(&self, hub: HubHostName, device_id: String) -> JournalFuture<'_>;
}

/// Credential kinds [`HubAuth::kind`](dps_service::HubAuth::kind) produces; a stored kind
/// outside this list reads back as `"unknown"`.
const AUTH_KINDS: &[&str] = &["sas", "selfSigned", "certificateAuthority"];

/// Writes to one identity are serialized through one of these gates (picked by key hash), so
/// the journal and the map see the same order while writes to other devices run concurrently.
const GATES: usize = 32;

/// A device identity as the in-process registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionedDevice {
    /// The hub.
    pub hub: HubHostName,
    /// Device ID.
    pub device_id: String,
    /// The registration it came from.
    pub registration_id: RegistrationId,
    /// Credential kind (`sas`, ...), never the key itself.
    pub auth_kind: &'static str,
    /// Capabilities.
    pub capabilities: DeviceCapabilities,
    /// The twin as last applied from an initial twin or a migration.
    pub twin: Option<InitialTwin>,
    /// How many times DPS wrote this identity.
    pub writes: u64,
}

impl From<&ProvisionedDevice> for HubIdentity {
    fn from(d: &ProvisionedDevice) -> Self {
        Self {
            hub: d.hub.clone(),
            device_id: d.device_id.clone(),
            registration_id: d.registration_id.clone(),
            auth_kind: d.auth_kind.to_owned(),
            capabilities: d.capabilities,
            twin: d.twin.clone(),
            writes: d.writes,
        }
    }
}

impl From<HubIdentity> for ProvisionedDevice {
    fn from(id: HubIdentity) -> Self {
        let auth_kind = AUTH_KINDS
            .iter()
            .copied()
            .find(|k| *k == id.auth_kind)
            .unwrap_or("unknown");
        Self {
            hub: id.hub,
            device_id: id.device_id,
            registration_id: id.registration_id,
            auth_kind,
            capabilities: id.capabilities,
            twin: id.twin,
            writes: id.writes,
        }
    }
}

/// Which calls an injected fault affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubCall {
    /// [`HubRegistry::provision`].
    Provision,
    /// [`HubRegistry::fetch`].
    Fetch,
    /// [`HubRegistry::remove`].
    Remove,
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Inner {
    devices: BTreeMap<Key, ProvisionedDevice>,
    faults: HashMap<(String, HubCall), HubError>,
}

/// An in-process registry of every linked hub, optionally journaled. Cloning shares the data.
#[derive(Clone)]
pub struct InProcessHubRegistry {
    inner: Arc<Mutex<Inner>>,
    gates: Arc<[tokio::sync::Mutex<()>]>,
    journal: Option<Arc<dyn IdentityJournal>>,
}

impl Default for InProcessHubRegistry {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            gates: (0..GATES).map(|_| tokio::sync::Mutex::new(())).collect(),
            journal: None,
        }
    }
}

impl std::fmt::Debug for InProcessHubRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessHubRegistry")
            .field("devices", &self.lock().devices.len())
            .field("journaled", &self.journal.is_some())
            .finish()
    }
}

impl InProcessHubRegistry {
    /// A registry that writes every `provision` and `remove` through to `journal` before
    /// answering. Load what the journal holds with [`restore`](Self::restore).
    pub fn with_journal(journal: Arc<dyn IdentityJournal>) -> Self {
        Self {
            journal: Some(journal),
            ..Self::default()
        }
    }

    /// Loads identities (as the journal stored them) into memory without journaling them
    /// again, replacing any held under the same (hub, device ID). Returns how many.
    pub fn restore(&self, identities: impl IntoIterator<Item = HubIdentity>) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        for id in identities {
            let d = ProvisionedDevice::from(id);
            inner
                .devices
                .insert((d.hub.to_string(), d.device_id.clone()), d);
            n += 1;
        }
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self, key: &Key) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % GATES as u64).unwrap_or(0);
        &self.gates[i % self.gates.len()]
    }

    /// Every identity, ordered by hub then device ID.
    pub fn devices(&self) -> Vec<ProvisionedDevice> {
        self.lock().devices.values().cloned().collect()
    }

    /// One identity.
    pub fn device(&self, hub: &str, device_id: &str) -> Option<ProvisionedDevice> {
        self.lock()
            .devices
            .get(&(hub.to_ascii_lowercase(), device_id.to_owned()))
            .cloned()
    }

    /// Makes `call` on `hub` fail with `error` until [`clear_faults`](Self::clear_faults), to
    /// test how the service handles a hub that refuses or is down.
    pub fn inject_fault(&self, hub: &str, call: HubCall, error: HubError) {
        self.lock()
            .faults
            .insert((hub.to_ascii_lowercase(), call), error);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Sets the twin of an existing identity, as a hub operator would (e.g. before a migration).
    /// In memory only: the journal is not written (the next `provision` journals the twin).
    pub fn set_twin(&self, hub: &str, device_id: &str, twin: InitialTwin) -> bool {
        let mut inner = self.lock();
        let key = (hub.to_ascii_lowercase(), device_id.to_owned());
        inner
            .devices
            .get_mut(&key)
            .map(|d| d.twin = Some(twin))
            .is_some()
    }

    fn fault(inner: &Inner, hub: &HubHostName, call: HubCall) -> Result<(), HubError> {
        match inner.faults.get(&(hub.to_string(), call)) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

fn journal_error(e: Box<dyn std::error::Error + Send + Sync>) -> HubError {
    HubError::Unavailable(format!("identity journal: {e}"))
}

impl HubRegistry for InProcessHubRegistry {
    async fn provision(&self, d: HubDevice) -> Result<(), HubError> {
        let key = (d.hub.to_string(), d.device_id.clone());
        let _gate = self.gate(&key).lock().await;
        let device = {
            let inner = self.lock();
            Self::fault(&inner, &d.hub, HubCall::Provision)?;
            let existing = inner.devices.get(&key);
            let twin = match (existing, d.reset_twin) {
                (Some(e), false) => e.twin.clone(),
                _ => d.initial_twin.clone(),
            };
            let writes = existing.map_or(0, |e| e.writes) + 1;
            ProvisionedDevice {
                hub: d.hub,
                device_id: d.device_id,
                registration_id: d.registration_id,
                auth_kind: d.auth.kind(),
                capabilities: d.capabilities,
                twin,
                writes,
            }
        };
        if let Some(j) = &self.journal {
            j.save(HubIdentity::from(&device))
                .await
                .map_err(journal_error)?;
        }
        self.lock().devices.insert(key, device);
        Ok(())
    }

    async fn fetch(
        &self,
        hub: &HubHostName,
        device_id: &str,
    ) -> Result<Option<HubDeviceState>, HubError> {
        let inner = self.lock();
        Self::fault(&inner, hub, HubCall::Fetch)?;
        Ok(inner
            .devices
            .get(&(hub.to_string(), device_id.to_owned()))
            .map(|d| HubDeviceState {
                capabilities: d.capabilities,
                twin: d.twin.clone().unwrap_or_default(),
            }))
    }

    async fn remove(&self, hub: &HubHostName, device_id: &str) -> Result<(), HubError> {
        let key = (hub.to_string(), device_id.to_owned());
        let _gate = self.gate(&key).lock().await;
        {
            let inner = self.lock();
            Self::fault(&inner, hub, HubCall::Remove)?;
            if !inner.devices.contains_key(&key) {
                return Ok(());
            }
        }
        if let Some(j) = &self.journal {
            j.remove(hub.clone(), device_id.to_owned())
                .await
                .map_err(journal_error)?;
        }
        self.lock().devices.remove(&key);
        Ok(())
    }
}
