//! Device authentication: which enrollment accepts a device's SAS token. An individual
//! enrollment decides alone; otherwise the symmetric-key groups are searched with their keys
//! decoded once per store snapshot, the device's previous group first (found through an index
//! by group ID, so a re-registration costs the same with one group or ten thousand). A first
//! registration tries every candidate group; groups with a registration-ID pattern (an
//! extension beyond Azure) are candidates only for the IDs they match, found through an index
//! of their patterns' literal prefixes. X.509 chains are checked in `x509_auth`.

use std::collections::HashMap;
use std::sync::Arc;

use dps_attest::sas::{self, SasError, SasToken, SigningKey};
use dps_store::Store;
use dps_types::{
    AttestationKind, AttestationMechanism, EnrollmentGroup, EnrollmentGroupId,
    IndividualEnrollment, RegistrationId, Rejection, SymmetricKey,
};

use crate::config::ScopeConfig;
use crate::device::DeviceCredential;
use crate::hubs::{HubAuth, HubRegistry};
use crate::{Service, store_err};

/// Which enrollment authenticated a device.
pub(crate) enum Matched {
    Individual(Box<IndividualEnrollment>),
    /// The group is shared with the prepared snapshot it was found in, not copied.
    Group(Arc<EnrollmentGroup>, MemberCredential),
}

/// What a group member proved, which becomes its hub credential.
pub(crate) enum MemberCredential {
    /// The primary and secondary keys derived from the group's keys for this device.
    Keys([Option<SymmetricKey>; 2]),
    /// The upper-case hex SHA-256 thumbprint of the device's own certificate: like Azure DPS,
    /// members of X.509 groups get a `selfSigned` hub identity pinned to their certificate.
    Leaf(String),
}

impl Matched {
    /// The credential the device's hub identity gets: the enrollment's keys, or the keys
    /// derived from the group's keys for this device; for X.509, the enrolled certificates'
    /// thumbprints (individual) or the device certificate's own (group member).
    pub(crate) fn hub_auth(&self) -> Option<HubAuth> {
        match self {
            Matched::Individual(e) if e.attestation.kind() == AttestationKind::X509 => {
                crate::x509_auth::hub_auth(&e.attestation)
            }
            Matched::Group(_, MemberCredential::Leaf(thumbprint)) => {
                Some(HubAuth::X509Thumbprint {
                    primary: thumbprint.clone(),
                    secondary: None,
                })
            }
            Matched::Individual(e) => {
                let s = e.attestation.symmetric_key()?;
                let primary = s.primary_key.clone()?;
                Some(HubAuth::SymmetricKey {
                    primary,
                    secondary: s.secondary_key.clone(),
                })
            }
            Matched::Group(_, MemberCredential::Keys(keys)) => Some(HubAuth::SymmetricKey {
                primary: keys[0].clone()?,
                secondary: keys[1].clone(),
            }),
        }
    }

    /// How the device attested.
    pub(crate) fn attestation_kind(&self) -> AttestationKind {
        match self {
            Matched::Individual(e) => e.attestation.kind(),
            Matched::Group(g, _) => g.attestation.kind(),
        }
    }
}

fn unauthorized(e: SasError) -> Rejection {
    Rejection::Unauthorized(e.to_string())
}

fn keys_of(a: &AttestationMechanism) -> Vec<SigningKey> {
    a.symmetric_key()
        .map(|s| {
            s.keys()
                .filter_map(|k| SigningKey::from_base64(k.expose_base64()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A symmetric-key group with its decoded primary and secondary keys.
struct PreparedGroup {
    group: Arc<EnrollmentGroup>,
    keys: [Option<SigningKey>; 2],
}

/// A scope's symmetric-key groups with their keys decoded, in store order, an index by
/// case-folded group ID, and the candidates' index for first registrations. Built once per
/// store snapshot and shared by every request.
#[derive(Default)]
pub(crate) struct PreparedGroups {
    groups: Vec<PreparedGroup>,
    by_id: HashMap<String, usize>,
    /// The groups without a registration-ID pattern, in store order: candidates for any device.
    open: Vec<usize>,
    /// The groups with a pattern, by the case-folded literal prefix of the pattern.
    by_prefix: HashMap<String, Vec<usize>>,
    /// The distinct lengths of those prefixes, ascending.
    prefix_lens: Vec<usize>,
}

impl PreparedGroup {
    /// Checks the token against the member key derived from the group's key `slot` (0 primary,
    /// 1 secondary) for `rid`. On success the match carries both member keys for the hub
    /// identity: the one just derived, and the other one (one HMAC, no pad set-up).
    fn verify(&self, slot: usize, rid: &RegistrationId, token: &SasToken<'_>) -> Option<Matched> {
        let group_key = self.keys[slot].as_ref()?;
        let derived = sas::derive_device_key_bytes(group_key, rid.as_str());
        if !token.verify_signature(&SigningKey::from_bytes(&derived)) {
            return None;
        }
        let mut pair = [None, None];
        for (i, out) in pair.iter_mut().enumerate() {
            let bytes = if i == slot {
                Some(derived)
            } else {
                self.keys[i]
                    .as_ref()
                    .map(|k| sas::derive_device_key_bytes(k, rid.as_str()))
            };
            *out = bytes.and_then(|b| SymmetricKey::from_bytes(&b).ok());
        }
        Some(Matched::Group(
            self.group.clone(),
            MemberCredential::Keys(pair),
        ))
    }
}

impl PreparedGroups {
    fn new(snapshot: &[EnrollmentGroup]) -> Self {
        let decode = |k: &Option<SymmetricKey>| {
            k.as_ref()
                .and_then(|k| SigningKey::from_base64(k.expose_base64()).ok())
        };
        let mut prepared = Self::default();
        for g in snapshot {
            let Some(sk) = g.attestation.symmetric_key() else {
                continue;
            };
            let keys = [decode(&sk.primary_key), decode(&sk.secondary_key)];
            // Of two IDs differing only in case, the first in store order wins, as in a scan.
            let next = prepared.groups.len();
            prepared
                .by_id
                .entry(g.enrollment_group_id.key())
                .or_insert(next);
            match &g.registration_id_pattern {
                None => prepared.open.push(next),
                Some(p) => prepared
                    .by_prefix
                    .entry(p.literal_prefix().to_ascii_lowercase())
                    .or_default()
                    .push(next),
            }
            prepared.groups.push(PreparedGroup {
                group: Arc::new(g.clone()),
                keys,
            });
        }
        prepared.prefix_lens = prepared.by_prefix.keys().map(String::len).collect();
        prepared.prefix_lens.sort_unstable();
        prepared.prefix_lens.dedup();
        prepared
    }

    /// The groups a first registration of `rid` tries, in store order: every group without a
    /// pattern and those whose pattern matches `rid`; `None` when no group has a pattern (then
    /// every group is a candidate, and nothing is built). One hash lookup per distinct prefix
    /// length, then the full match on the groups whose prefix `rid` starts with.
    fn candidates(&self, rid: &RegistrationId) -> Option<Vec<usize>> {
        if self.by_prefix.is_empty() {
            return None;
        }
        let key = rid.key();
        let mut out = self.open.clone();
        for &len in &self.prefix_lens {
            let Some(prefix) = key.get(..len) else {
                break;
            };
            if let Some(found) = self.by_prefix.get(prefix) {
                out.extend(found.iter().filter(|&&i| self.groups[i].group.admits(rid)));
            }
        }
        out.sort_unstable();
        Some(out)
    }

    /// The index of the group with this ID (ASCII case-insensitive).
    fn position(&self, id: &EnrollmentGroupId) -> Option<usize> {
        self.by_id.get(&id.key()).copied()
    }
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Authenticates a device: its individual enrollment if one exists (enabled or not), else
    /// the first symmetric-key group whose derived key verifies the token.
    pub(crate) async fn authenticate(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        credential: DeviceCredential<'_>,
        hint: Option<&EnrollmentGroupId>,
    ) -> Result<Matched, Rejection> {
        let text = match credential {
            DeviceCredential::Sas(text) => text,
            DeviceCredential::X509(chain) => {
                return self.authenticate_x509(scope, rid, chain).await;
            }
            DeviceCredential::None => {
                return Err(Rejection::Unauthorized("no credential presented".into()));
            }
        };
        let token = SasToken::parse(text).map_err(unauthorized)?;
        let now = self.now_unix();
        // Expiry and audience first, so a bad token costs no key lookups.
        match sas::verify_device(&token, scope.id_scope.as_str(), rid.as_str(), &[], now) {
            Err(SasError::SignatureMismatch) => {}
            Err(e) => return Err(unauthorized(e)),
            Ok(_) => return Err(Rejection::Unauthorized("no keys".into())),
        }
        let individual = self
            .store
            .enrollment(&scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        if let Some(e) = individual {
            let keys = keys_of(&e.attestation);
            if keys.iter().any(|k| token.verify_signature(k)) {
                return Ok(Matched::Individual(Box::new(e)));
            }
            // A disabled individual enrollment also blocks a group member signing with its
            // group-derived key; an enabled one is the only way in for that ID.
            if e.provisioning_status == dps_types::ProvisioningStatus::Disabled
                && self.find_group(scope, rid, &token, hint).await?.is_some()
            {
                return Ok(Matched::Individual(Box::new(e)));
            }
            return Err(Rejection::Unauthorized(format!(
                "signature does not match individual enrollment {}",
                e.registration_id
            )));
        }
        match self.find_group(scope, rid, &token, hint).await? {
            Some(m) => Ok(m),
            None => Err(Rejection::Unauthorized(format!(
                "no enrollment of scope {} accepts {rid}",
                scope.id_scope
            ))),
        }
    }

    /// Finds the symmetric-key group whose key, derived for `rid`, signed the token. The group
    /// of the device's previous registration (`hint`) is tried first, then every other group's
    /// primary key, then their secondary keys, so the common cases cost one or a few HMACs.
    async fn find_group(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        token: &SasToken<'_>,
        hint: Option<&EnrollmentGroupId>,
    ) -> Result<Option<Matched>, Rejection> {
        let prepared = self.group_keys(scope).await?;
        let hinted = hint.and_then(|h| prepared.position(h));
        // The previous group's pattern still applies: it may have been set since.
        if let Some(g) = hinted
            .map(|i| &prepared.groups[i])
            .filter(|g| g.group.admits(rid))
            && let Some(m) = (0..2).find_map(|slot| g.verify(slot, rid, token))
        {
            return Ok(Some(m));
        }
        let narrowed = prepared.candidates(rid);
        let verify = |i: usize, slot| {
            (Some(i) != hinted)
                .then(|| prepared.groups[i].verify(slot, rid, token))
                .flatten()
        };
        let scan = |slot| match &narrowed {
            Some(list) => list.iter().find_map(|&i| verify(i, slot)),
            None => (0..prepared.groups.len()).find_map(|i| verify(i, slot)),
        };
        Ok((0..2).find_map(scan))
    }

    /// The scope's symmetric-key groups with their keys decoded, rebuilt only when the store
    /// hands out a new snapshot (so it is never stale).
    async fn group_keys(&self, scope: &ScopeConfig) -> Result<Arc<PreparedGroups>, Rejection> {
        let snapshot = self
            .store
            .groups_snapshot(&scope.id_scope)
            .await
            .map_err(store_err)?;
        // `scope` is one of the service's configured scopes, so its ID as written is a stable
        // key (no case folding, no allocation per request).
        let key = scope.id_scope.as_str();
        let mut cache = self
            .group_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((snap, prepared)) = cache.get(key)
            && Arc::ptr_eq(snap, &snapshot)
        {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(PreparedGroups::new(&snapshot));
        cache.insert(key.to_owned(), (snapshot, prepared.clone()));
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

    use std::sync::Arc;

    use dps_store::{MemoryStore, Store, WriteCondition, block_on_ready};
    use dps_types::{EnrollmentGroup, EnrollmentGroupId, IdScope};

    use crate::Service;
    use crate::config::ScopeConfig;
    use crate::hubs::{HubDevice, HubError, HubRegistry};

    struct NoHubs;

    impl HubRegistry for NoHubs {
        async fn provision(&self, _device: HubDevice) -> Result<(), HubError> {
            Err(HubError::Unavailable("no hubs in this test".into()))
        }
    }

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    fn group(id: &str) -> EnrollmentGroup {
        serde_json::from_value(serde_json::json!({
            "enrollmentGroupId": id,
            "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
        }))
        .unwrap()
    }

    fn put(svc: &Service<MemoryStore, NoHubs>, scope: &ScopeConfig, g: EnrollmentGroup) {
        block_on_ready(
            svc.store()
                .put_group(&scope.id_scope, g, WriteCondition::Any),
        )
        .unwrap();
    }

    #[test]
    fn groups_are_prepared_once_per_snapshot_and_indexed_by_id() {
        let scope = ScopeConfig::new(IdScope::new("0ne00000a11").unwrap(), "dps.example");
        let svc = Service::builder(MemoryStore::new(), NoHubs)
            .scope(scope.clone())
            .build();
        for i in 0..100 {
            put(&svc, &scope, group(&format!("Group-{i:03}")));
        }
        let first = block_on_ready(svc.group_keys(&scope)).unwrap();
        let second = block_on_ready(svc.group_keys(&scope)).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "rebuilt without a write");
        assert_eq!(first.groups.len(), 100);
        let hint = EnrollmentGroupId::new("GROUP-042").unwrap();
        let i = first.position(&hint).unwrap();
        assert_eq!(
            first.groups[i].group.enrollment_group_id.as_str(),
            "Group-042"
        );
        assert!(first.groups[i].keys.iter().all(Option::is_some));
        assert_eq!(
            first.position(&EnrollmentGroupId::new("group-100").unwrap()),
            None
        );

        // A write hands out a new snapshot, which is prepared again (never stale).
        put(&svc, &scope, group("group-100"));
        let third = block_on_ready(svc.group_keys(&scope)).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
        let i = third
            .position(&EnrollmentGroupId::new("group-100").unwrap())
            .unwrap();
        assert_eq!(
            third.groups[i].group.enrollment_group_id.as_str(),
            "group-100"
        );
    }
}
