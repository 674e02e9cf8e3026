//! Create, read, update, delete and query of enrollments and enrollment groups, written once
//! for both through the [`Record`] trait.

use std::future::Future;

use dps_store::{DeleteCondition, Store, StoreError, WriteCondition};
use dps_types::{
    AttestationMechanism, EnrollmentGroup, EnrollmentGroupId, Etag, IdScope, IndividualEnrollment,
    PolicyView, RegistrationId, Rejection, SymmetricKey, SymmetricKeyAttestation, Timestamp,
    ValidationError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Admin;
use crate::env::random_guid;
use crate::{HubRegistry, meter, store_err};

/// A record kind of the service API (individual enrollment or enrollment group).
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The JSON member holding the ID.
    const ID_FIELD: &'static str;
    /// True for enrollment groups (which take X.509 signing certificates, not device ones).
    const GROUP: bool;
    /// The refusal for a missing record.
    const NOT_FOUND: Rejection;
    /// Validates and case-folds a path ID.
    fn parse_key(id: &str) -> Result<String, Rejection>;
    /// The record's ID as written.
    fn id(&self) -> &str;
    /// The lookup key.
    fn key(&self) -> String;
    /// The etag.
    fn etag(&self) -> Option<&Etag>;
    /// Sets the server-owned fields.
    fn set_meta(&mut self, etag: Etag, created: Timestamp, updated: Timestamp);
    /// Creation time.
    fn created(&self) -> Option<Timestamp>;
    /// The attestation.
    fn attestation(&self) -> &AttestationMechanism;
    /// The attestation, mutably.
    fn attestation_mut(&mut self) -> &mut AttestationMechanism;
    /// Record-level rules.
    fn validate(&self) -> Result<(), ValidationError>;
    /// Policy fields.
    fn policy(&self) -> PolicyView<'_>;
    /// A copy without secrets.
    fn masked(&self) -> Self;
    /// Loads by key.
    fn load<S: Store>(
        s: &S,
        scope: &IdScope,
        key: &str,
    ) -> impl Future<Output = dps_store::Result<Option<Self>>> + Send;
    /// Writes.
    fn save<S: Store>(
        self,
        s: &S,
        scope: &IdScope,
        c: WriteCondition,
    ) -> impl Future<Output = dps_store::Result<()>> + Send;
    /// Deletes.
    fn remove<S: Store>(
        s: &S,
        scope: &IdScope,
        key: &str,
        c: DeleteCondition,
    ) -> impl Future<Output = dps_store::Result<()>> + Send;
    /// Lists.
    fn list<S: Store>(
        s: &S,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = dps_store::Result<dps_store::Page<Self>>> + Send;
}

fn mask_webhook(def: &mut Option<dps_types::CustomAllocationDefinition>) {
    if let Some(d) = def
        && let Some((base, _)) = d.webhook_url.split_once('?')
    {
        d.webhook_url = format!("{base}?****");
    }
}

macro_rules! record_impl {
    ($ty:ty, $idty:ty, $field:literal, $group:literal, $nf:expr, $idf:ident, $load:ident, $save:ident, $remove:ident, $list:ident) => {
        impl Record for $ty {
            const ID_FIELD: &'static str = $field;
            const GROUP: bool = $group;
            const NOT_FOUND: Rejection = $nf;
            fn parse_key(id: &str) -> Result<String, Rejection> {
                <$idty>::new(id)
                    .map(|i| i.key())
                    .map_err(|e| Rejection::BadRequest(e.to_string()))
            }
            fn id(&self) -> &str {
                self.$idf.as_str()
            }
            fn key(&self) -> String {
                self.$idf.key()
            }
            fn etag(&self) -> Option<&Etag> {
                self.etag.as_ref()
            }
            fn set_meta(&mut self, etag: Etag, created: Timestamp, updated: Timestamp) {
                self.etag = Some(etag);
                self.created_date_time_utc = Some(created);
                self.last_updated_date_time_utc = Some(updated);
            }
            fn created(&self) -> Option<Timestamp> {
                self.created_date_time_utc
            }
            fn attestation(&self) -> &AttestationMechanism {
                &self.attestation
            }
            fn attestation_mut(&mut self) -> &mut AttestationMechanism {
                &mut self.attestation
            }
            fn validate(&self) -> Result<(), ValidationError> {
                <$ty>::validate(self)
            }
            fn policy(&self) -> PolicyView<'_> {
                <$ty>::policy(self)
            }
            fn masked(&self) -> Self {
                let mut m = self.clone();
                m.attestation = self.attestation.masked();
                mask_webhook(&mut m.custom_allocation_definition);
                m
            }
            fn load<S: Store>(
                s: &S,
                scope: &IdScope,
                key: &str,
            ) -> impl Future<Output = dps_store::Result<Option<Self>>> + Send {
                s.$load(scope, key)
            }
            fn save<S: Store>(
                self,
                s: &S,
                scope: &IdScope,
                c: WriteCondition,
            ) -> impl Future<Output = dps_store::Result<()>> + Send {
                s.$save(scope, self, c)
            }
            fn remove<S: Store>(
                s: &S,
                scope: &IdScope,
                key: &str,
                c: DeleteCondition,
            ) -> impl Future<Output = dps_store::Result<()>> + Send {
                s.$remove(scope, key, c)
            }
            fn list<S: Store>(
                s: &S,
                scope: &IdScope,
                after: Option<&str>,
                limit: usize,
            ) -> impl Future<Output = dps_store::Result<dps_store::Page<Self>>> + Send {
                s.$list(scope, after, limit)
            }
        }
    };
}

record_impl!(
    IndividualEnrollment,
    RegistrationId,
    "registrationId",
    false,
    Rejection::EnrollmentNotFound,
    registration_id,
    enrollment,
    put_enrollment,
    delete_enrollment,
    list_enrollments
);
record_impl!(
    EnrollmentGroup,
    EnrollmentGroupId,
    "enrollmentGroupId",
    true,
    Rejection::GroupNotFound,
    enrollment_group_id,
    group,
    put_group,
    delete_group,
    list_groups
);

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items (secrets masked).
    pub items: Vec<T>,
    /// The key to continue after, when more items follow.
    pub next_after: Option<String>,
}

/// Parses an `If-Match` header: absent = create only, `*` = any, else that etag.
pub(crate) fn write_condition(if_match: Option<&str>) -> WriteCondition {
    match if_match.map(str::trim) {
        None | Some("") => WriteCondition::MustNotExist,
        Some("*") => WriteCondition::Any,
        Some(e) => WriteCondition::IfMatch(Etag::parse(e)),
    }
}

pub(crate) fn delete_condition(if_match: Option<&str>) -> DeleteCondition {
    match if_match.map(str::trim) {
        None | Some("") | Some("*") => DeleteCondition::Any,
        Some(e) => DeleteCondition::IfMatch(Etag::parse(e)),
    }
}

/// Decodes a record body, taking the ID from the path when the body omits it and refusing a
/// body whose ID differs.
pub(crate) fn decode_record<R: Record>(path_id: &str, body: Value) -> Result<R, Rejection> {
    let mut body = match body {
        Value::Object(m) => m,
        _ => {
            return Err(Rejection::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
    };
    match body.get(R::ID_FIELD) {
        Some(Value::String(id)) if !id.eq_ignore_ascii_case(path_id) => {
            return Err(Rejection::BadRequest(format!(
                "{} in the body does not match the path",
                R::ID_FIELD
            )));
        }
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => {
            body.insert(R::ID_FIELD.to_owned(), Value::String(path_id.to_owned()));
        }
        Some(_) => {
            return Err(Rejection::BadRequest(format!(
                "{} must be a string",
                R::ID_FIELD
            )));
        }
    }
    // Read-only members a client may echo back are ignored.
    body.remove("registrationState");
    serde_json::from_value(Value::Object(body))
        .map_err(|e| Rejection::BadRequest(format!("invalid record: {e}")))
}

impl<S: Store, H: HubRegistry> Admin<'_, S, H> {
    fn generate_key(&self) -> Result<SymmetricKey, Rejection> {
        let mut b = [0u8; 64];
        self.svc.entropy.fill(&mut b);
        SymmetricKey::from_bytes(&b).map_err(|_| Rejection::Internal)
    }

    /// Fills missing symmetric keys: kept from the existing record (never silently rotated),
    /// else generated (64 random bytes, as Azure does).
    fn complete_keys<R: Record>(
        &self,
        record: &mut R,
        existing: Option<&R>,
    ) -> Result<(), Rejection> {
        let old = existing
            .and_then(|e| e.attestation().symmetric_key())
            .cloned()
            .unwrap_or_default();
        if let AttestationMechanism::SymmetricKey(SymmetricKeyAttestation {
            primary_key,
            secondary_key,
        }) = record.attestation_mut()
        {
            if primary_key.is_none() {
                *primary_key = Some(match old.primary_key {
                    Some(k) => k,
                    None => self.generate_key()?,
                });
            }
            if secondary_key.is_none() {
                *secondary_key = Some(match old.secondary_key {
                    Some(k) => k,
                    None => self.generate_key()?,
                });
            }
        }
        Ok(())
    }

    /// Validates and writes a record. Returns it complete, generated keys included (only this
    /// answer and the attestation-mechanism call ever reveal keys), X.509 certificates reduced
    /// to their `info`.
    pub(crate) async fn write<R: Record>(
        &self,
        mut record: R,
        cond: WriteCondition,
    ) -> Result<R, Rejection> {
        record.validate().map_err(|e| Rejection::BadRequest(e.0))?;
        self.check_hubs(&record.policy())?;
        let existing = R::load(&*self.svc.store, &self.scope.id_scope, &record.key())
            .await
            .map_err(store_err)?;
        self.complete_keys(&mut record, existing.as_ref())?;
        super::x509::complete(
            self.scope,
            R::GROUP,
            record.attestation_mut(),
            existing.as_ref().map(R::attestation),
        )?;
        let now = self.svc.clock.now();
        let created = existing.as_ref().and_then(R::created).unwrap_or(now);
        record.set_meta(Etag::new(random_guid(&*self.svc.entropy)), created, now);
        match record
            .clone()
            .save(&*self.svc.store, &self.scope.id_scope, cond)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Rejection::Conflict(format!(
                    "{} {} already exists",
                    R::ID_FIELD,
                    record.id()
                )));
            }
            Err(e) => return Err(store_err(e)),
        }
        self.meter(meter::ENROLLMENT_WRITE).await?;
        // Uploaded certificates are never returned, not even to the writer.
        let shown = record.attestation().without_certificates();
        *record.attestation_mut() = shown;
        Ok(record)
    }

    /// `PUT /{collection}/{id}` with an optional `If-Match`.
    pub async fn put<R: Record>(
        &self,
        path_id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Result<R, Rejection> {
        R::parse_key(path_id)?;
        let record: R = decode_record(path_id, body)?;
        self.write(record, write_condition(if_match)).await
    }

    /// `GET /{collection}/{id}`: the record with secrets masked.
    pub async fn get<R: Record>(&self, id: &str) -> Result<R, Rejection> {
        let r = self.load::<R>(id).await?;
        self.meter(meter::ENROLLMENT_READ).await?;
        Ok(r.masked())
    }

    /// `GET /enrollments/{id}` with the device's registration state attached.
    pub async fn get_enrollment(&self, id: &str) -> Result<IndividualEnrollment, Rejection> {
        let mut e: IndividualEnrollment = self.get(id).await?;
        let rec = self
            .svc
            .store
            .registration(&self.scope.id_scope, &e.registration_id.key())
            .await
            .map_err(store_err)?;
        e.registration_state = rec
            .filter(|r| r.enrollment_group_id.is_none())
            .map(|r| r.state);
        Ok(e)
    }

    async fn load<R: Record>(&self, id: &str) -> Result<R, Rejection> {
        let key = R::parse_key(id)?;
        R::load(&*self.svc.store, &self.scope.id_scope, &key)
            .await
            .map_err(store_err)?
            .ok_or(R::NOT_FOUND)
    }

    /// `POST /{collection}/{id}/attestationmechanism`: the attestation with its secrets
    /// (symmetric keys; uploaded certificates are never returned, only their `info`).
    pub async fn attestation<R: Record>(
        &self,
        id: &str,
    ) -> Result<AttestationMechanism, Rejection> {
        let r = self.load::<R>(id).await?;
        self.meter(meter::ENROLLMENT_READ).await?;
        Ok(r.attestation().without_certificates())
    }

    /// `DELETE /{collection}/{id}` with an optional `If-Match`.
    pub async fn delete<R: Record>(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Rejection> {
        let key = R::parse_key(id)?;
        match R::remove(
            &*self.svc.store,
            &self.scope.id_scope,
            &key,
            delete_condition(if_match),
        )
        .await
        {
            Ok(()) => self.meter(meter::ENROLLMENT_WRITE).await,
            Err(StoreError::NotFound) => Err(R::NOT_FOUND),
            Err(e) => Err(store_err(e)),
        }
    }

    /// `POST /{collection}/query`: one page in key order, secrets masked.
    pub async fn query<R: Record>(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<R>, Rejection> {
        let p = R::list(&*self.svc.store, &self.scope.id_scope, after, limit.max(1))
            .await
            .map_err(store_err)?;
        self.meter(meter::ENROLLMENT_READ).await?;
        Ok(Page {
            items: p.items.iter().map(R::masked).collect(),
            next_after: p.next_after,
        })
    }
}
