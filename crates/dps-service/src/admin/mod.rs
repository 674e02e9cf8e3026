//! The service (admin) API: authorisation by shared access policies, then enrollment, group and
//! registration-record operations on the caller's scope through an [`Admin`] handle.
//!
//! The scope is chosen by the request's host name (each scope has its own
//! `service_host_name`, as each Azure instance has its own host); a service with a single
//! scope serves it on any host name.

pub mod bulk;
mod records;
mod registrations;
mod x509;

use dps_attest::sas::{self, SasToken};
use dps_store::Store;
use dps_types::Rejection;

pub use bulk::{BulkFailure, BulkMode};
pub use records::{Page, Record};

use crate::config::{Right, ScopeConfig};
use crate::{HubRegistry, Service};

/// Who is calling the service API.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The `Host` header (with or without `:port`).
    pub host: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
}

/// A handle on one scope's records, obtained after authorisation.
pub struct Admin<'s, S, H> {
    pub(crate) svc: &'s Service<S, H>,
    pub(crate) scope: &'s ScopeConfig,
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Authorises a service-API call needing `right` and returns a handle on the caller's scope.
    pub fn admin(&self, caller: Caller<'_>, right: Right) -> Result<Admin<'_, S, H>, Rejection> {
        let host = caller.host.map(strip_port);
        let scope = match host.and_then(|h| {
            self.scopes
                .values()
                .find(|s| s.service_host_name.eq_ignore_ascii_case(h))
        }) {
            Some(s) => s,
            None if self.scopes.len() == 1 => self
                .scopes
                .values()
                .next()
                .ok_or(Rejection::ScopeNotFound)?,
            None => return Err(Rejection::ScopeNotFound),
        };
        let text = caller
            .authorization
            .ok_or_else(|| Rejection::Unauthorized("missing Authorization header".into()))?;
        let token = SasToken::parse(text).map_err(|e| Rejection::Unauthorized(e.to_string()))?;
        let name = token
            .key_name()
            .ok_or_else(|| Rejection::Unauthorized("service token without skn".into()))?;
        let policy = scope
            .policies
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Rejection::Unauthorized(format!("no shared access policy named {name}"))
            })?;
        let keys: Vec<_> = std::iter::once(&policy.primary)
            .chain(policy.secondary.as_ref())
            .collect();
        let now = self.now_unix();
        let verified =
            sas::verify_service(&token, &scope.service_host_name, &keys, now).or_else(|e| {
                // A single-scope server also accepts tokens minted for the host name it was reached by.
                match (e, host) {
                    (sas::SasError::AudienceMismatch, Some(h)) if self.scopes.len() == 1 => {
                        sas::verify_service(&token, h, &keys, now)
                    }
                    (e, _) => Err(e),
                }
            });
        verified.map_err(|e| Rejection::Unauthorized(format!("policy {}: {e}", policy.name)))?;
        if !policy.grants(right) {
            return Err(Rejection::Forbidden(right.name()));
        }
        Ok(Admin { svc: self, scope })
    }
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// A handle on one scope's records without a SAS check, for embedding programs that
    /// authenticate their callers themselves (or configure records at start).
    pub fn admin_for_scope(&self, id_scope: &str) -> Result<Admin<'_, S, H>, Rejection> {
        let scope = self
            .scopes
            .get(&id_scope.to_ascii_lowercase())
            .ok_or(Rejection::ScopeNotFound)?;
        Ok(Admin { svc: self, scope })
    }
}

impl<S: Store, H: HubRegistry> Admin<'_, S, H> {
    /// The scope this handle works on.
    pub fn scope(&self) -> &ScopeConfig {
        self.scope
    }

    /// The scope's operation counters by kind.
    pub async fn operation_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, Rejection> {
        self.svc
            .store
            .operation_counts(&self.scope.id_scope)
            .await
            .map_err(crate::store_err)
    }

    pub(crate) async fn meter(&self, kind: &'static str) -> Result<(), Rejection> {
        self.svc
            .store
            .meter(&self.scope.id_scope, kind, 1)
            .await
            .map_err(crate::store_err)
    }

    /// The hub rules a record must meet at write time: every hub it names (`iotHubs` and the
    /// legacy `iotHubHostName`) is linked to the scope, and a static policy (the record's, or
    /// the scope's default when the record has none) names exactly one hub.
    pub(crate) fn check_hubs(&self, policy: &dps_types::PolicyView<'_>) -> Result<(), Rejection> {
        let named = policy.iot_hubs.iter().map(String::as_str);
        if let Some(n) = named
            .chain(policy.iot_hub_host_name)
            .find(|n| self.scope.hubs.find(n).is_none())
        {
            return Err(Rejection::BadRequest(format!(
                "IoT hub {n} is not linked to this provisioning service"
            )));
        }
        let effective = policy
            .allocation_policy
            .unwrap_or(self.scope.allocation_policy);
        if effective == dps_types::AllocationPolicy::Static && policy.named_hubs().len() != 1 {
            return Err(Rejection::BadRequest(
                "the static allocation policy needs exactly one linked IoT hub in iotHubs (or iotHubHostName)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("localhost:8443"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
    }
}
