//! The in-memory backend: a map per scope behind one `RwLock`. Fast and exact, not durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};

use dps_types::{
    CaCertificate, EnrollmentGroup, Etag, HubIdentity, IdScope, IndividualEnrollment, Operation,
    RegistrationRecord, Timestamp,
};

use crate::{DeleteCondition, Page, RegistrationCommit, Result, Store, StoreError, WriteCondition};

/// How long an operation stays pollable, in seconds of its own `created` time.
pub const OPERATION_TTL_SECS: i64 = 3600;

/// Whether an operation created at `created` (unix seconds) has expired at `now`: it was created
/// more than [`OPERATION_TTL_SECS`] before. Every backend applies this same rule on reads and
/// prunes by it on commits.
pub fn operation_expired(created: i64, now: Timestamp) -> bool {
    created < now.unix_seconds().saturating_sub(OPERATION_TTL_SECS)
}

#[derive(Default)]
struct ScopeData {
    enrollments: BTreeMap<String, IndividualEnrollment>,
    groups: BTreeMap<String, EnrollmentGroup>,
    groups_snapshot: Option<Arc<[EnrollmentGroup]>>,
    registrations: BTreeMap<String, RegistrationRecord>,
    operations: HashMap<String, Operation>,
    operation_order: VecDeque<(i64, String)>,
    meters: BTreeMap<String, u64>,
    certificates: BTreeMap<String, CaCertificate>,
}

/// The in-memory store. Cloning shares the data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    scopes: Arc<RwLock<HashMap<String, ScopeData>>>,
    /// Hub identities by (hub, device ID): not per scope.
    hub_identities: Arc<RwLock<BTreeMap<(String, String), HubIdentity>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, scope: &IdScope, f: impl FnOnce(&ScopeData) -> T) -> T {
        let guard = self.scopes.read().unwrap_or_else(PoisonError::into_inner);
        match guard.get(&scope.key()) {
            Some(d) => f(d),
            None => f(&ScopeData::default()),
        }
    }

    fn write<T>(&self, scope: &IdScope, f: impl FnOnce(&mut ScopeData) -> T) -> T {
        let mut guard = self.scopes.write().unwrap_or_else(PoisonError::into_inner);
        f(guard.entry(scope.key()).or_default())
    }
}

fn etag_of<T>(
    m: &BTreeMap<String, T>,
    key: &str,
    etag: impl Fn(&T) -> Option<&Etag>,
) -> Option<Option<Etag>> {
    m.get(key).map(|v| etag(v).cloned())
}

fn check_write(existing: Option<Option<Etag>>, cond: &WriteCondition) -> Result<()> {
    match (cond, existing) {
        (WriteCondition::MustNotExist, Some(_)) => Err(StoreError::Conflict),
        (WriteCondition::IfMatch(_), None) => Err(StoreError::PreconditionFailed),
        (WriteCondition::IfMatch(want), Some(have)) if have.as_ref() != Some(want) => {
            Err(StoreError::PreconditionFailed)
        }
        _ => Ok(()),
    }
}

fn check_delete(existing: Option<Option<Etag>>, cond: &DeleteCondition) -> Result<()> {
    match (cond, existing) {
        (_, None) => Err(StoreError::NotFound),
        (DeleteCondition::IfMatch(want), Some(have)) if have.as_ref() != Some(want) => {
            Err(StoreError::PreconditionFailed)
        }
        _ => Ok(()),
    }
}

fn page<T: Clone>(
    m: &BTreeMap<String, T>,
    after: Option<&str>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Page<T> {
    use std::ops::Bound;
    let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in m.range((start, Bound::Unbounded)).filter(|(_, v)| keep(v)) {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(v.clone());
        last = Some(k.clone());
    }
    Page {
        items,
        next_after: if more { last } else { None },
    }
}

#[allow(refining_impl_trait)] // callers may rely on the futures being `Ready`
impl Store for MemoryStore {
    fn enrollment(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> Ready<Result<Option<IndividualEnrollment>>> {
        ready(Ok(self.read(scope, |d| d.enrollments.get(key).cloned())))
    }

    fn put_enrollment(
        &self,
        scope: &IdScope,
        e: IndividualEnrollment,
        cond: WriteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            let key = e.registration_id.key();
            check_write(etag_of(&d.enrollments, &key, |e| e.etag.as_ref()), &cond)?;
            d.enrollments.insert(key, e);
            Ok(())
        }))
    }

    fn delete_enrollment(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            check_delete(etag_of(&d.enrollments, key, |e| e.etag.as_ref()), &cond)?;
            d.enrollments.remove(key);
            Ok(())
        }))
    }

    fn list_enrollments(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Ready<Result<Page<IndividualEnrollment>>> {
        ready(Ok(self.read(scope, |d| {
            page(&d.enrollments, after, limit, |_| true)
        })))
    }

    fn group(&self, scope: &IdScope, key: &str) -> Ready<Result<Option<EnrollmentGroup>>> {
        ready(Ok(self.read(scope, |d| d.groups.get(key).cloned())))
    }

    fn put_group(
        &self,
        scope: &IdScope,
        g: EnrollmentGroup,
        cond: WriteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            let key = g.enrollment_group_id.key();
            check_write(etag_of(&d.groups, &key, |g| g.etag.as_ref()), &cond)?;
            d.groups.insert(key, g);
            d.groups_snapshot = None;
            Ok(())
        }))
    }

    fn delete_group(&self, scope: &IdScope, key: &str, cond: DeleteCondition) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            check_delete(etag_of(&d.groups, key, |g| g.etag.as_ref()), &cond)?;
            d.groups.remove(key);
            d.groups_snapshot = None;
            Ok(())
        }))
    }

    fn list_groups(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Ready<Result<Page<EnrollmentGroup>>> {
        ready(Ok(
            self.read(scope, |d| page(&d.groups, after, limit, |_| true))
        ))
    }

    fn groups_snapshot(&self, scope: &IdScope) -> Ready<Result<Arc<[EnrollmentGroup]>>> {
        if let Some(s) = self.read(scope, |d| d.groups_snapshot.clone()) {
            return ready(Ok(s));
        }
        ready(Ok(self.write(scope, |d| {
            d.groups_snapshot
                .get_or_insert_with(|| d.groups.values().cloned().collect::<Vec<_>>().into())
                .clone()
        })))
    }

    fn registration(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> Ready<Result<Option<RegistrationRecord>>> {
        ready(Ok(self.read(scope, |d| d.registrations.get(key).cloned())))
    }

    fn delete_registration(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            check_delete(
                etag_of(&d.registrations, key, |r| r.state.etag.as_ref()),
                &cond,
            )?;
            d.registrations.remove(key);
            Ok(())
        }))
    }

    fn list_registrations(
        &self,
        scope: &IdScope,
        group_key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Ready<Result<Page<RegistrationRecord>>> {
        ready(Ok(self.read(scope, |d| {
            page(&d.registrations, after, limit, |r| {
                r.enrollment_group_id
                    .as_ref()
                    .is_some_and(|g| g.key() == group_key)
            })
        })))
    }

    fn commit_registration(&self, scope: &IdScope, c: RegistrationCommit) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            if let Some(rec) = c.record {
                d.registrations.insert(rec.state.registration_id.key(), rec);
            }
            let created = c.operation.created.unix_seconds();
            while let Some((t, id)) = d.operation_order.front() {
                if *t >= created - OPERATION_TTL_SECS {
                    break;
                }
                d.operations.remove(id);
                d.operation_order.pop_front();
            }
            let id = c.operation.operation_id.to_string();
            d.operation_order.push_back((created, id.clone()));
            d.operations.insert(id, c.operation);
            if let Some(kind) = c.meter {
                *d.meters.entry(kind.to_owned()).or_default() += 1;
            }
            Ok(())
        }))
    }

    fn operation(
        &self,
        scope: &IdScope,
        id: &str,
        now: Timestamp,
    ) -> Ready<Result<Option<Operation>>> {
        ready(Ok(self.read(scope, |d| {
            d.operations
                .get(id)
                .filter(|op| !operation_expired(op.created.unix_seconds(), now))
                .cloned()
        })))
    }

    fn certificate(&self, scope: &IdScope, key: &str) -> Ready<Result<Option<CaCertificate>>> {
        ready(Ok(self.read(scope, |d| d.certificates.get(key).cloned())))
    }

    fn put_certificate(
        &self,
        scope: &IdScope,
        c: CaCertificate,
        cond: WriteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            let key = c.key();
            check_write(etag_of(&d.certificates, &key, |c| c.etag.as_ref()), &cond)?;
            d.certificates.insert(key, c);
            Ok(())
        }))
    }

    fn delete_certificate(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            check_delete(etag_of(&d.certificates, key, |c| c.etag.as_ref()), &cond)?;
            d.certificates.remove(key);
            Ok(())
        }))
    }

    fn list_certificates(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Ready<Result<Page<CaCertificate>>> {
        ready(Ok(self.read(scope, |d| {
            page(&d.certificates, after, limit, |_| true)
        })))
    }

    fn meter(&self, scope: &IdScope, kind: &'static str, n: u64) -> Ready<Result<()>> {
        ready(self.write(scope, |d| {
            *d.meters.entry(kind.to_owned()).or_default() += n;
            Ok(())
        }))
    }

    fn operation_counts(&self, scope: &IdScope) -> Ready<Result<BTreeMap<String, u64>>> {
        ready(Ok(self.read(scope, |d| d.meters.clone())))
    }

    fn hub_identity(&self, hub: &str, device_id: &str) -> Ready<Result<Option<HubIdentity>>> {
        let key = (hub.to_ascii_lowercase(), device_id.to_owned());
        let map = self
            .hub_identities
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        ready(Ok(map.get(&key).cloned()))
    }

    fn put_hub_identity(&self, id: HubIdentity) -> Ready<Result<()>> {
        let key = (id.hub.to_string(), id.device_id.clone());
        self.hub_identities
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, id);
        ready(Ok(()))
    }

    fn delete_hub_identity(&self, hub: &str, device_id: &str) -> Ready<Result<()>> {
        let key = (hub.to_ascii_lowercase(), device_id.to_owned());
        let mut map = self
            .hub_identities
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        ready(match map.remove(&key) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        })
    }

    fn list_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Ready<Result<Page<HubIdentity>>> {
        use std::ops::Bound;
        let map = self
            .hub_identities
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let start = match after.map(|a| HubIdentity::split_cursor(a).unwrap_or((a, ""))) {
            Some((h, d)) => Bound::Excluded((h.to_owned(), d.to_owned())),
            None => Bound::Unbounded,
        };
        let mut items: Vec<HubIdentity> = map
            .range((start, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(_, v)| v.clone())
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more {
            items.last().map(HubIdentity::cursor)
        } else {
            None
        };
        ready(Ok(Page { items, next_after }))
    }
}

/// Drives a future that completes without waiting (such as every [`MemoryStore`] future) to
/// completion without a runtime. Returns the output; panics never: a pending future is polled
/// again in a loop.
pub fn block_on_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(id: &str, etag: &str) -> IndividualEnrollment {
        let mut e: IndividualEnrollment = serde_json::from_str(&format!(
            r#"{{"registrationId":"{id}","attestation":{{"type":"symmetricKey"}}}}"#
        ))
        .unwrap();
        e.etag = Some(Etag::new(etag));
        e
    }

    #[test]
    fn etag_rules() {
        let s = MemoryStore::new();
        let sc = IdScope::new("0ne1").unwrap();
        block_on_ready(s.put_enrollment(&sc, enrollment("A", "1"), WriteCondition::MustNotExist))
            .unwrap();
        let again = block_on_ready(s.put_enrollment(
            &sc,
            enrollment("a", "2"),
            WriteCondition::MustNotExist,
        ));
        assert!(matches!(again, Err(StoreError::Conflict)));
        let stale = block_on_ready(s.put_enrollment(
            &sc,
            enrollment("a", "2"),
            WriteCondition::IfMatch(Etag::new("0")),
        ));
        assert!(matches!(stale, Err(StoreError::PreconditionFailed)));
        block_on_ready(s.put_enrollment(
            &sc,
            enrollment("a", "2"),
            WriteCondition::IfMatch(Etag::new("1")),
        ))
        .unwrap();
        let absent = block_on_ready(s.put_enrollment(
            &sc,
            enrollment("b", "1"),
            WriteCondition::IfMatch(Etag::new("1")),
        ));
        assert!(matches!(absent, Err(StoreError::PreconditionFailed)));
        let del =
            block_on_ready(s.delete_enrollment(&sc, "a", DeleteCondition::IfMatch(Etag::new("1"))));
        assert!(matches!(del, Err(StoreError::PreconditionFailed)));
        block_on_ready(s.delete_enrollment(&sc, "a", DeleteCondition::Any)).unwrap();
        assert!(matches!(
            block_on_ready(s.delete_enrollment(&sc, "a", DeleteCondition::Any)),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn scopes_are_isolated_and_paging_is_stable() {
        let s = MemoryStore::new();
        let a = IdScope::new("0ne1").unwrap();
        let b = IdScope::new("0ne2").unwrap();
        for i in 0..5 {
            block_on_ready(s.put_enrollment(
                &a,
                enrollment(&format!("d{i}"), "1"),
                WriteCondition::Any,
            ))
            .unwrap();
        }
        assert!(block_on_ready(s.enrollment(&b, "d1")).unwrap().is_none());
        let p1 = block_on_ready(s.list_enrollments(&a, None, 2)).unwrap();
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.next_after.as_deref(), Some("d1"));
        let p2 = block_on_ready(s.list_enrollments(&a, p1.next_after.as_deref(), 3)).unwrap();
        assert_eq!(p2.items.len(), 3);
        assert_eq!(p2.next_after, None);
        assert_eq!(
            block_on_ready(s.list_enrollments(&b, None, 10))
                .unwrap()
                .items
                .len(),
            0
        );
    }
}
