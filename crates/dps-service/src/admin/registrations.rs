//! Registration records on the service API: get, delete, and the per-group query. Records are
//! created only by devices and never updated here.

use dps_store::{Store, StoreError};
use dps_types::{DeviceRegistrationState, EnrollmentGroupId, RegistrationId, Rejection};

use super::Admin;
use super::records::{Page, delete_condition};
use crate::{HubRegistry, meter, store_err};

impl<S: Store, H: HubRegistry> Admin<'_, S, H> {
    /// `GET /registrations/{id}`.
    pub async fn registration(&self, id: &str) -> Result<DeviceRegistrationState, Rejection> {
        let rid = RegistrationId::new(id).map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let rec = self
            .svc
            .store
            .registration(&self.scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        let rec = rec.ok_or(Rejection::RegistrationNotFound)?;
        self.meter(meter::REGISTRATION_READ).await?;
        Ok(rec.state)
    }

    /// `DELETE /registrations/{id}` (the hub device is left alone).
    pub async fn delete_registration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Rejection> {
        let rid = RegistrationId::new(id).map_err(|e| Rejection::BadRequest(e.to_string()))?;
        match self
            .svc
            .store
            .delete_registration(&self.scope.id_scope, &rid.key(), delete_condition(if_match))
            .await
        {
            Ok(()) => self.meter(meter::REGISTRATION_WRITE).await,
            Err(StoreError::NotFound) => Err(Rejection::RegistrationNotFound),
            Err(e) => Err(store_err(e)),
        }
    }

    /// `POST /registrations/{groupId}/query`: the records of a group's members.
    pub async fn query_registrations(
        &self,
        group_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeviceRegistrationState>, Rejection> {
        let gid =
            EnrollmentGroupId::new(group_id).map_err(|e| Rejection::BadRequest(e.to_string()))?;
        let p = self
            .svc
            .store
            .list_registrations(&self.scope.id_scope, &gid.key(), after, limit.max(1))
            .await
            .map_err(store_err)?;
        self.meter(meter::REGISTRATION_READ).await?;
        Ok(Page {
            items: p.items.into_iter().map(|r| r.state).collect(),
            next_after: p.next_after,
        })
    }
}
