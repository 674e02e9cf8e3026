//! The simulated fleet: which registration IDs, keys and enrollment groups its devices have
//! ([`Fleet`]), and creating their enrollments through the service API's bulk operations
//! ([`create_enrollments`]).
//!
//! Keys are derived from a secret (`--secret`) rather than drawn at random, so a later run with
//! `--no-setup` finds the devices' keys again without reading them back from the service:
//! an individual device's key is `HMAC-SHA256(secret, "individual/" + registrationId)`, group
//! `g`'s key `HMAC-SHA256(secret, "group/" + enrollmentGroupId)`, and a group member signs with
//! the key derived from its group's key, as Azure's devices do.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dps_attest::sas::{SigningKey, derive_device_key};
use dps_client::{Credential, ServiceClient};
use dps_proto::http::service::{BulkMode, BulkResult};
use dps_types::{EnrollmentGroup, IndividualEnrollment};
use serde_json::json;

/// Items per bulk call: well under the service's limit, and small enough that a store committing
/// each item on its own (the embedded store fsyncs) answers within the client's 30 s timeout.
const BULK_BATCH: usize = 100;

/// How the simulated devices prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// One individual enrollment per device, each with its own symmetric key.
    Individual,
    /// Devices spread over enrollment groups; each signs with the key derived from its group's.
    Group,
}

/// The simulated devices.
#[derive(Debug)]
pub struct Fleet {
    /// Registration IDs are `{prefix}-{index:07}`, group IDs `{prefix}-group-{index:05}`.
    pub prefix: String,
    /// Number of devices.
    pub devices: u64,
    /// Number of enrollment groups (group attestation).
    pub groups: u64,
    /// The attestation.
    pub attestation: Attestation,
    secret: SigningKey,
}

impl Fleet {
    /// A fleet of `devices` devices (at least 1) over `groups` groups (at least 1), keys derived
    /// from `secret`.
    pub fn new(
        prefix: &str,
        devices: u64,
        groups: u64,
        attestation: Attestation,
        secret: &str,
    ) -> Self {
        Self {
            prefix: prefix.to_owned(),
            devices: devices.max(1),
            groups: groups.max(1),
            attestation,
            secret: SigningKey::from_bytes(secret.as_bytes()),
        }
    }

    /// Device `index`'s registration ID.
    pub fn registration_id(&self, index: u64) -> String {
        format!("{}-{:07}", self.prefix, index % self.devices)
    }

    /// Group `index`'s ID.
    pub fn group_id(&self, index: u64) -> String {
        format!("{}-group-{:05}", self.prefix, index % self.groups)
    }

    fn individual_key(&self, registration_id: &str) -> String {
        derive_device_key(&self.secret, &format!("individual/{registration_id}")).to_base64()
    }

    fn group_key(&self, group_id: &str) -> String {
        derive_device_key(&self.secret, &format!("group/{group_id}")).to_base64()
    }

    /// Device `index`'s registration ID and credential.
    pub fn device(&self, index: u64) -> (String, Credential) {
        let rid = self.registration_id(index);
        let credential = match self.attestation {
            Attestation::Individual => Credential::SymmetricKey(self.individual_key(&rid)),
            Attestation::Group => {
                Credential::GroupKey(self.group_key(&self.group_id(index % self.devices)))
            }
        };
        (rid, credential)
    }
}

/// What set-up did.
#[derive(Debug, Clone, Copy)]
pub struct SetupDone {
    /// Enrollments or groups created (or replaced).
    pub items: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Creates (or replaces) the fleet's enrollments: one individual enrollment per device, or
/// one enrollment group per group, in bulk calls of [`BULK_BATCH`] items.
pub async fn create_enrollments(svc: &ServiceClient, fleet: &Fleet) -> Result<SetupDone> {
    let started = Instant::now();
    let symmetric =
        |key: String| json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key}});
    let items = match fleet.attestation {
        Attestation::Individual => {
            let all = (0..fleet.devices)
                .map(|i| {
                    let rid = fleet.registration_id(i);
                    let v = json!({"registrationId": rid, "attestation": symmetric(fleet.individual_key(&rid))});
                    serde_json::from_value::<IndividualEnrollment>(v)
                })
                .collect::<Result<Vec<_>, _>>()
                .context("building the enrollments")?;
            for chunk in all.chunks(BULK_BATCH) {
                let r = svc.bulk_enrollments(BulkMode::Update, chunk).await;
                check(r.context("bulk enrollment update failed")?)?;
            }
            fleet.devices
        }
        Attestation::Group => {
            let all = (0..fleet.groups)
                .map(|g| {
                    let gid = fleet.group_id(g);
                    let v = json!({"enrollmentGroupId": gid, "attestation": symmetric(fleet.group_key(&gid))});
                    serde_json::from_value::<EnrollmentGroup>(v)
                })
                .collect::<Result<Vec<_>, _>>()
                .context("building the enrollment groups")?;
            for chunk in all.chunks(BULK_BATCH) {
                let r = svc.bulk_enrollment_groups(BulkMode::Update, chunk).await;
                check(r.context("bulk enrollment group update failed")?)?;
            }
            fleet.groups
        }
    };
    Ok(SetupDone {
        items,
        elapsed: started.elapsed(),
    })
}

fn check(r: BulkResult) -> Result<()> {
    match r.errors.first() {
        None if r.is_successful => Ok(()),
        None => bail!("the bulk operation failed without naming an item"),
        Some(e) => bail!(
            "{} bulk items failed, the first with {}: {}",
            r.errors.len(),
            e.error_code,
            e.error_status
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dps_attest::sas::derive_device_key_base64;

    #[test]
    fn devices_wrap_and_spread_over_groups() {
        let f = Fleet::new("load", 3, 2, Attestation::Group, "s");
        assert_eq!(f.registration_id(0), "load-0000000");
        assert_eq!(
            f.registration_id(4),
            "load-0000001",
            "index wraps at --devices"
        );
        assert_eq!(f.group_id(3), "load-group-00001");
        let (rid, Credential::GroupKey(g)) = f.device(2) else {
            panic!("group credential expected");
        };
        assert_eq!(rid, "load-0000002");
        assert_eq!(g, f.group_key("load-group-00000"), "device 2 is in group 0");
        assert_ne!(
            f.group_key("load-group-00000"),
            f.group_key("load-group-00001")
        );
    }

    #[test]
    fn keys_are_reproducible_from_the_secret() {
        let a = Fleet::new("load", 10, 1, Attestation::Individual, "secret-1");
        let b = Fleet::new("load", 10, 1, Attestation::Individual, "secret-1");
        let c = Fleet::new("load", 10, 1, Attestation::Individual, "secret-2");
        assert_eq!(a.device(5), b.device(5));
        assert_ne!(a.device(5), c.device(5));
        let (_, Credential::SymmetricKey(k)) = a.device(5) else {
            panic!("individual credential expected");
        };
        let secret = SigningKey::from_bytes(b"secret-1").to_base64();
        assert_eq!(
            k,
            derive_device_key_base64(&secret, "individual/load-0000005").unwrap()
        );
    }
}
