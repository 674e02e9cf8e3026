//! What `dps enrollment` and `dps group` do alike: create, get (with or without the keys),
//! list and delete one kind of [`Record`], through the matching [`ServiceClient`] calls.
//!
//! [`Stored`] names those calls for [`IndividualEnrollment`] and [`EnrollmentGroup`]; [`run`]
//! is the one implementation of the four commands, with the error messages both share.

use anyhow::{Context as _, Result};
use dps_client::{Error, ServiceClient};
use dps_types::{
    AttestationMechanism, EnrollmentGroup, EnrollmentGroupId, IndividualEnrollment, RegistrationId,
};

use super::{group_id, registration_id};
use crate::output::{Output, Record};

/// A record the service API stores under an id: the client calls `run` needs for it.
pub trait Stored: Record + Sized {
    /// The id the service keys the record by.
    type Id;

    /// The id from the command line.
    fn parse_id(s: &str) -> Result<Self::Id>;
    /// Where [`keys`](Self::keys) puts the attestation it fetched.
    fn attestation_mut(&mut self) -> &mut AttestationMechanism;

    /// Creates the record; the answer carries the keys the service generated.
    async fn create(client: &ServiceClient, record: &Self) -> Result<Self, Error>;
    /// The record, without its keys.
    async fn get(client: &ServiceClient, id: &Self::Id) -> Result<Self, Error>;
    /// The record's attestation with its keys.
    async fn keys(client: &ServiceClient, id: &Self::Id) -> Result<AttestationMechanism, Error>;
    /// Every record of this kind.
    async fn list(client: &ServiceClient) -> Result<Vec<Self>, Error>;
    /// Deletes the record, whatever its etag.
    async fn delete(client: &ServiceClient, id: &Self::Id) -> Result<(), Error>;
}

/// One `dps enrollment …` or `dps group …` command, `id` as typed.
pub enum Action<R> {
    /// Create `record`; print the keys when the service generated them.
    Create {
        id: String,
        record: R,
        generated_keys: bool,
    },
    /// Show one record, with its keys when `show_keys`.
    Get { id: String, show_keys: bool },
    /// List them all.
    List,
    /// Delete one.
    Delete { id: String },
}

/// Runs `action` against the service and prints the outcome.
pub async fn run<R: Stored>(client: ServiceClient, action: Action<R>, out: Output) -> Result<()> {
    let kind = R::KIND;
    match action {
        Action::Create {
            id,
            record,
            generated_keys,
        } => {
            let created = R::create(&client, &record)
                .await
                .with_context(|| format!("cannot create {kind} {id}"))?;
            out.created(&created, generated_keys)
        }
        Action::Get { id, show_keys } => {
            let parsed = R::parse_id(&id)?;
            let mut r = R::get(&client, &parsed)
                .await
                .with_context(|| format!("cannot get {kind} {id}"))?;
            if show_keys {
                *r.attestation_mut() = R::keys(&client, &parsed)
                    .await
                    .with_context(|| format!("cannot read the keys of {kind} {id}"))?;
            }
            out.records(&[r], show_keys)
        }
        Action::List => {
            let all = R::list(&client)
                .await
                .with_context(|| format!("cannot list {}", R::PLURAL))?;
            out.records(&all, false)
        }
        Action::Delete { id } => {
            R::delete(&client, &R::parse_id(&id)?)
                .await
                .with_context(|| format!("cannot delete {kind} {id}"))?;
            out.deleted(kind, &id)
        }
    }
}

/// Implements [`Stored`] for each `Record by Id(parse_id): create, get, keys, list, delete;`
/// row, naming the [`ServiceClient`] method behind each call (delete never sends an etag).
macro_rules! stored {
    ($(
        $record:ident by $id:ident($parse:ident):
            $create:ident, $get:ident, $keys:ident, $list:ident, $delete:ident;
    )+) => {$(
        impl Stored for $record {
            type Id = $id;

            fn parse_id(s: &str) -> Result<$id> {
                $parse(s)
            }

            fn attestation_mut(&mut self) -> &mut AttestationMechanism {
                &mut self.attestation
            }

            async fn create(client: &ServiceClient, record: &Self) -> Result<Self, Error> {
                client.$create(record).await
            }

            async fn get(client: &ServiceClient, id: &$id) -> Result<Self, Error> {
                client.$get(id).await
            }

            async fn keys(client: &ServiceClient, id: &$id) -> Result<AttestationMechanism, Error> {
                client.$keys(id).await
            }

            async fn list(client: &ServiceClient) -> Result<Vec<Self>, Error> {
                client.$list().await
            }

            async fn delete(client: &ServiceClient, id: &$id) -> Result<(), Error> {
                client.$delete(id, None).await
            }
        }
    )+};
}

stored! {
    IndividualEnrollment by RegistrationId(registration_id):
        create_enrollment, get_enrollment, enrollment_attestation,
        list_enrollments, delete_enrollment;
    EnrollmentGroup by EnrollmentGroupId(group_id):
        create_enrollment_group, get_enrollment_group, enrollment_group_attestation,
        list_enrollment_groups, delete_enrollment_group;
}
