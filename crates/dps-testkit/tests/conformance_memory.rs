//! The store conformance suite on the in-memory reference backend, and proof that every check
//! can fail: each one is run against a wrapper around the memory store with one planted bug and
//! must panic.

dps_testkit::store_conformance!(|| dps_store::MemoryStore::new());

/// The sequential runner covers the same checks as the generated tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes() {
    dps_testkit::conformance::run_all(dps_store::MemoryStore::new).await;
}

mod mutants {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use dps_store::{
        DeleteCondition, MemoryStore, Page, RegistrationCommit, Result, Store, StoreError,
        WriteCondition,
    };
    use dps_testkit::conformance;
    use dps_types::{
        CaCertificate, EnrollmentGroup, HubIdentity, IdScope, IndividualEnrollment, Operation,
        RegistrationRecord, Timestamp,
    };

    /// One planted bug each.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Bug {
        None,
        CreateOverwrites,
        IgnoreIfMatch,
        DeleteIgnoresEtag,
        ScopeCaseSensitive,
        SharedScopes,
        NoContinuation,
        StaleSnapshot,
        StaleGroupIndex,
        KeepFirstRecord,
        NonAtomicCommit,
        NeverPrune,
        MeterIgnoresN,
        RacyCas,
        LosesWrites,
        TruncatesLarge,
        DropsUnknownFields,
        SpuriousContinuation,
        IgnoresNow,
    }

    #[derive(Default)]
    struct MutState {
        snapshots: HashMap<String, Arc<[EnrollmentGroup]>>,
        index: BTreeMap<(String, String, String), ()>,
        operations: HashMap<(String, String), Operation>,
        commits: usize,
    }

    /// The memory store with `bug` planted.
    pub struct Mutant {
        inner: MemoryStore,
        bug: Bug,
        state: Mutex<MutState>,
    }

    impl Mutant {
        pub fn new(bug: Bug) -> Self {
            Self {
                inner: MemoryStore::new(),
                bug,
                state: Mutex::default(),
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, MutState> {
            self.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        fn sc(&self, s: &IdScope) -> IdScope {
            match self.bug {
                Bug::SharedScopes => IdScope::new("shared").expect("valid scope"),
                Bug::ScopeCaseSensitive => {
                    let mut out = String::new();
                    for c in s.as_str().chars() {
                        if c.is_ascii_uppercase() {
                            out.push('9');
                        }
                        out.push(c.to_ascii_lowercase());
                    }
                    IdScope::new(&out).expect("valid scope")
                }
                _ => s.clone(),
            }
        }

        fn cond(&self, c: WriteCondition) -> WriteCondition {
            match (self.bug, c) {
                (Bug::CreateOverwrites, WriteCondition::MustNotExist)
                | (Bug::IgnoreIfMatch, WriteCondition::IfMatch(_)) => WriteCondition::Any,
                (_, c) => c,
            }
        }

        fn del(&self, c: DeleteCondition) -> DeleteCondition {
            if self.bug == Bug::DeleteIgnoresEtag {
                DeleteCondition::Any
            } else {
                c
            }
        }

        fn page<T>(&self, mut p: Page<T>) -> Page<T> {
            match self.bug {
                Bug::NoContinuation => p.next_after = None,
                Bug::SpuriousContinuation if p.items.is_empty() => {
                    p.next_after = Some("~".into());
                }
                _ => {}
            }
            p
        }

        fn large(&self, encoded: serde_json::Result<Vec<u8>>) -> bool {
            self.bug == Bug::TruncatesLarge && encoded.map_or(0, |b| b.len()) > 64 * 1024
        }
    }

    impl Store for Mutant {
        async fn enrollment(&self, s: &IdScope, k: &str) -> Result<Option<IndividualEnrollment>> {
            self.inner.enrollment(&self.sc(s), k).await
        }

        async fn put_enrollment(
            &self,
            s: &IdScope,
            mut e: IndividualEnrollment,
            c: WriteCondition,
        ) -> Result<()> {
            let s = self.sc(s);
            if self.large(serde_json::to_vec(&e)) {
                e.initial_twin = None;
            }
            if self.bug == Bug::DropsUnknownFields {
                e.extra.clear();
            }
            if let (Bug::RacyCas, WriteCondition::IfMatch(want)) = (self.bug, &c) {
                let current = self.inner.enrollment(&s, &e.registration_id.key()).await?;
                if current.and_then(|c| c.etag).as_ref() != Some(want) {
                    return Err(StoreError::PreconditionFailed);
                }
                tokio::task::yield_now().await;
                return self.inner.put_enrollment(&s, e, WriteCondition::Any).await;
            }
            self.inner.put_enrollment(&s, e, self.cond(c)).await
        }

        async fn delete_enrollment(&self, s: &IdScope, k: &str, c: DeleteCondition) -> Result<()> {
            self.inner
                .delete_enrollment(&self.sc(s), k, self.del(c))
                .await
        }

        async fn list_enrollments(
            &self,
            s: &IdScope,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Page<IndividualEnrollment>> {
            Ok(self.page(
                self.inner
                    .list_enrollments(&self.sc(s), after, limit)
                    .await?,
            ))
        }

        async fn group(&self, s: &IdScope, k: &str) -> Result<Option<EnrollmentGroup>> {
            self.inner.group(&self.sc(s), k).await
        }

        async fn put_group(
            &self,
            s: &IdScope,
            mut g: EnrollmentGroup,
            c: WriteCondition,
        ) -> Result<()> {
            if self.large(serde_json::to_vec(&g)) {
                g.initial_twin = None;
            }
            if self.bug == Bug::DropsUnknownFields {
                g.extra.clear();
            }
            self.inner.put_group(&self.sc(s), g, self.cond(c)).await
        }

        async fn delete_group(&self, s: &IdScope, k: &str, c: DeleteCondition) -> Result<()> {
            self.inner.delete_group(&self.sc(s), k, self.del(c)).await
        }

        async fn list_groups(
            &self,
            s: &IdScope,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Page<EnrollmentGroup>> {
            Ok(self.page(self.inner.list_groups(&self.sc(s), after, limit).await?))
        }

        async fn groups_snapshot(&self, s: &IdScope) -> Result<Arc<[EnrollmentGroup]>> {
            let s = self.sc(s);
            if self.bug == Bug::StaleSnapshot
                && let Some(cached) = self.state().snapshots.get(&s.key())
            {
                return Ok(cached.clone());
            }
            let snap = self.inner.groups_snapshot(&s).await?;
            self.state().snapshots.insert(s.key(), snap.clone());
            Ok(snap)
        }

        async fn registration(&self, s: &IdScope, k: &str) -> Result<Option<RegistrationRecord>> {
            self.inner.registration(&self.sc(s), k).await
        }

        async fn delete_registration(
            &self,
            s: &IdScope,
            k: &str,
            c: DeleteCondition,
        ) -> Result<()> {
            self.inner
                .delete_registration(&self.sc(s), k, self.del(c))
                .await
        }

        async fn list_registrations(
            &self,
            s: &IdScope,
            group_key: &str,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Page<RegistrationRecord>> {
            let s = self.sc(s);
            if self.bug != Bug::StaleGroupIndex {
                let p = self
                    .inner
                    .list_registrations(&s, group_key, after, limit)
                    .await?;
                return Ok(self.page(p));
            }
            // Reads an index that commits add to and nothing ever removes from.
            let rids: Vec<String> = self
                .state()
                .index
                .keys()
                .filter(|(sk, g, r)| *sk == s.key() && g == group_key && Some(r.as_str()) > after)
                .map(|(_, _, r)| r.clone())
                .collect();
            let mut items = Vec::new();
            for rid in &rids {
                if let Some(r) = self.inner.registration(&s, rid).await? {
                    if items.len() == limit {
                        let next_after = items
                            .last()
                            .map(|r: &RegistrationRecord| r.state.registration_id.key());
                        return Ok(Page { items, next_after });
                    }
                    items.push(r);
                }
            }
            Ok(Page {
                items,
                next_after: None,
            })
        }

        async fn commit_registration(&self, s: &IdScope, mut c: RegistrationCommit) -> Result<()> {
            let s = self.sc(s);
            {
                let mut st = self.state();
                st.commits += 1;
                if self.bug == Bug::LosesWrites && st.commits.is_multiple_of(50) {
                    return Ok(());
                }
                if let Some(r) = &c.record
                    && let Some(g) = &r.enrollment_group_id
                {
                    st.index
                        .insert((s.key(), g.key(), r.state.registration_id.key()), ());
                }
                if self.bug == Bug::NeverPrune {
                    st.operations.insert(
                        (s.key(), c.operation.operation_id.to_string()),
                        c.operation.clone(),
                    );
                }
            }
            if let Some(r) = &mut c.record {
                if self.large(serde_json::to_vec(r)) {
                    r.state.payload = None;
                }
                if self.bug == Bug::KeepFirstRecord
                    && self
                        .inner
                        .registration(&s, &r.state.registration_id.key())
                        .await?
                        .is_some()
                {
                    c.record = None;
                }
            }
            if self.bug == Bug::NonAtomicCommit
                && let Some(kind) = c.meter.take()
            {
                self.inner.meter(&s, kind, 1).await?;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            self.inner.commit_registration(&s, c).await
        }

        async fn operation(
            &self,
            s: &IdScope,
            id: &str,
            now: Timestamp,
        ) -> Result<Option<Operation>> {
            let s = self.sc(s);
            if self.bug == Bug::NeverPrune {
                return Ok(self
                    .state()
                    .operations
                    .get(&(s.key(), id.to_owned()))
                    .cloned());
            }
            if self.bug == Bug::IgnoresNow {
                // Only the latest commit's time decides, as a prune-only store would.
                let latest = conformance::at(conformance::T0);
                return self.inner.operation(&s, id, latest).await;
            }
            self.inner.operation(&s, id, now).await
        }

        async fn certificate(&self, s: &IdScope, k: &str) -> Result<Option<CaCertificate>> {
            self.inner.certificate(&self.sc(s), k).await
        }

        async fn put_certificate(
            &self,
            s: &IdScope,
            c: CaCertificate,
            cond: WriteCondition,
        ) -> Result<()> {
            self.inner
                .put_certificate(&self.sc(s), c, self.cond(cond))
                .await
        }

        async fn delete_certificate(&self, s: &IdScope, k: &str, c: DeleteCondition) -> Result<()> {
            self.inner
                .delete_certificate(&self.sc(s), k, self.del(c))
                .await
        }

        async fn list_certificates(
            &self,
            s: &IdScope,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Page<CaCertificate>> {
            let p = self
                .inner
                .list_certificates(&self.sc(s), after, limit)
                .await?;
            Ok(self.page(p))
        }

        async fn meter(&self, s: &IdScope, kind: &'static str, n: u64) -> Result<()> {
            let n = if self.bug == Bug::MeterIgnoresN { 1 } else { n };
            self.inner.meter(&self.sc(s), kind, n).await
        }

        async fn operation_counts(&self, s: &IdScope) -> Result<BTreeMap<String, u64>> {
            self.inner.operation_counts(&self.sc(s)).await
        }

        async fn hub_identity(&self, hub: &str, d: &str) -> Result<Option<HubIdentity>> {
            self.inner.hub_identity(hub, d).await
        }

        async fn put_hub_identity(&self, id: HubIdentity) -> Result<()> {
            if self.bug == Bug::KeepFirstRecord
                && self
                    .inner
                    .hub_identity(id.hub.as_str(), &id.device_id)
                    .await?
                    .is_some()
            {
                return Ok(());
            }
            self.inner.put_hub_identity(id).await
        }

        async fn delete_hub_identity(&self, hub: &str, d: &str) -> Result<()> {
            self.inner.delete_hub_identity(hub, d).await
        }

        async fn list_hub_identities(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Page<HubIdentity>> {
            Ok(self.page(self.inner.list_hub_identities(after, limit).await?))
        }
    }

    /// The wrapper itself is faithful: without a bug it passes everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wrapper_without_a_bug_passes() {
        conformance::run_all(|| Mutant::new(Bug::None)).await;
    }

    macro_rules! caught {
        ($($check:ident => $bug:ident),+ $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let outcome = tokio::spawn(conformance::$check(Mutant::new(Bug::$bug))).await;
                    assert!(
                        outcome.is_err_and(|e| e.is_panic()),
                        "conformance::{} passed a store with bug {:?}",
                        stringify!($check),
                        Bug::$bug
                    );
                }
            )+

            /// Every check of the suite has a mutant here.
            #[test]
            fn every_check_has_a_mutant() {
                let covered = [$(stringify!($check)),+];
                assert_eq!(covered.as_slice(), conformance::CHECKS);
            }
        };
    }

    caught! {
        etag_create_only => CreateOverwrites,
        etag_if_match => IgnoreIfMatch,
        delete_conditions => DeleteIgnoresEtag,
        case_insensitive_keys => ScopeCaseSensitive,
        scope_isolation => SharedScopes,
        paging => NoContinuation,
        paging_groups => NoContinuation,
        groups_snapshot => StaleSnapshot,
        registrations_by_group => StaleGroupIndex,
        registration_replace => KeepFirstRecord,
        commit_registration_atomic => NonAtomicCommit,
        operation_ttl => NeverPrune,
        operation_expires_by_time => IgnoresNow,
        meters_accumulate => MeterIgnoresN,
        concurrent_cas => RacyCas,
        concurrent_commits => LosesWrites,
        large_values => TruncatesLarge,
        records_round_trip => DropsUnknownFields,
        missing_reads => SpuriousContinuation,
        certificates_cas => IgnoreIfMatch,
        certificates_listing => NoContinuation,
        hub_identities_upsert => KeepFirstRecord,
        hub_identities_listing => NoContinuation,
    }
}
