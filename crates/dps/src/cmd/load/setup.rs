//! The simulated fleet: which registration IDs, keys and enrollment groups its devices have
//! ([`Fleet`]), and creating their enrollments through the service API's bulk operations
//! ([`create_enrollments`]).
//!
//! Keys are derived from a secret (`--secret`) rather than drawn at random, so a later run with
//! `--no-setup` finds the devices' keys again without reading them back from the service:
//! an individual device's key is `HMAC-SHA256(secret, "individual/" + registrationId)`, group
//! `g`'s key `HMAC-SHA256(secret, "group/" + enrollmentGroupId)`, and a group member signs with
//! the key derived from its group's key, as Azure's devices do.
//!
//! X.509 devices get a certificate each from the fleet's CA ([`super::pki`], its key derived
//! from the secret too), issued by [`Fleet::issue_certificates`] before any registration is
//! timed: members of one enrollment group that trusts the CA, or individual enrollments that
//! pin each device's certificate.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dps_attest::sas::{SigningKey, derive_device_key};
use dps_client::{ClientIdentity, Credential, ServiceClient};
use dps_proto::http::service::{BulkMode, BulkResult};
use dps_types::{EnrollmentGroup, IndividualEnrollment};
use serde_json::{Value, json};

use super::pki::LoadCa;

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
    /// Device certificates issued by the fleet's CA, members of one enrollment group that
    /// trusts it.
    X509Group,
    /// Device certificates, each pinned by an individual enrollment.
    X509Individual,
}

impl Attestation {
    /// Whether devices present certificates.
    pub fn is_x509(self) -> bool {
        matches!(self, Self::X509Group | Self::X509Individual)
    }

    /// Whether set-up creates groups (else individual enrollments).
    pub fn is_group(self) -> bool {
        matches!(self, Self::Group | Self::X509Group)
    }
}

/// How an X.509 group trusts the fleet's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaTrust {
    /// The group uploads the CA certificate (`signingCertificates`).
    Upload,
    /// The group names a CA in dpsd's configuration (`caReferences`), e.g. the fleet's CA
    /// written out with `--x509-ca-pem` and listed as `[[scope.ca]]` with `verified = true`.
    ScopeCa(String),
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
    /// X.509: the CA, and each device's certificate PEM and identity, by index.
    x509: Option<(LoadCa, Vec<(String, ClientIdentity)>)>,
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
            x509: None,
        }
    }

    /// X.509: makes the CA and issues every device's certificate (nothing to do otherwise).
    /// Returns the CA certificate PEM.
    pub fn issue_certificates(&mut self) -> Result<Option<String>> {
        if !self.attestation.is_x509() {
            return Ok(None);
        }
        let ca = LoadCa::from_secret(&self.secret)?;
        let devices = (0..self.devices)
            .map(|i| ca.issue(&self.registration_id(i)))
            .collect::<Result<Vec<_>>>()?;
        let pem = ca.cert_pem.clone();
        self.x509 = Some((ca, devices));
        Ok(Some(pem))
    }

    /// Device `index`'s certificate PEM and identity (after [`Self::issue_certificates`]).
    fn certificate(&self, index: u64) -> Option<&(String, ClientIdentity)> {
        let (_, devices) = self.x509.as_ref()?;
        devices.get(usize::try_from(index % self.devices).ok()?)
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
    pub fn device(&self, index: u64) -> Result<(String, Credential)> {
        let rid = self.registration_id(index);
        let credential = match self.attestation {
            Attestation::Individual => Credential::SymmetricKey(self.individual_key(&rid)),
            Attestation::Group => {
                Credential::GroupKey(self.group_key(&self.group_id(index % self.devices)))
            }
            Attestation::X509Group | Attestation::X509Individual => {
                let (_, id) = self
                    .certificate(index)
                    .context("no device certificates issued")?;
                Credential::X509(id.clone())
            }
        };
        Ok((rid, credential))
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
/// one enrollment group per group, in bulk calls of [`BULK_BATCH`] items. X.509 fleets need
/// their certificates issued first ([`Fleet::issue_certificates`]).
pub async fn create_enrollments(
    svc: &ServiceClient,
    fleet: &Fleet,
    trust: &CaTrust,
) -> Result<SetupDone> {
    let started = Instant::now();
    let symmetric =
        |key: String| json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key}});
    let x509 = |x: Value| json!({"type": "x509", "x509": x});
    let items = match fleet.attestation {
        Attestation::Individual | Attestation::X509Individual => {
            let all = (0..fleet.devices)
                .map(|i| {
                    let rid = fleet.registration_id(i);
                    let attestation = match fleet.certificate(i) {
                        Some((pem, _)) => {
                            x509(json!({"clientCertificates": {"primary": {"certificate": pem}}}))
                        }
                        None => symmetric(fleet.individual_key(&rid)),
                    };
                    let v = json!({"registrationId": rid, "attestation": attestation});
                    serde_json::from_value::<IndividualEnrollment>(v).map_err(anyhow::Error::from)
                })
                .collect::<Result<Vec<_>>>()
                .context("building the enrollments")?;
            for chunk in all.chunks(BULK_BATCH) {
                let r = svc.bulk_enrollments(BulkMode::Update, chunk).await;
                check(r.context("bulk enrollment update failed")?)?;
            }
            fleet.devices
        }
        Attestation::Group | Attestation::X509Group => {
            let ca = fleet.x509.as_ref().map(|(ca, _)| ca.cert_pem.as_str());
            let all = (0..fleet.groups)
                .map(|g| {
                    let gid = fleet.group_id(g);
                    let attestation = match (ca, trust) {
                        (None, _) => symmetric(fleet.group_key(&gid)),
                        (Some(pem), CaTrust::Upload) => {
                            x509(json!({"signingCertificates": {"primary": {"certificate": pem}}}))
                        }
                        (Some(_), CaTrust::ScopeCa(name)) => {
                            x509(json!({"caReferences": {"primary": name}}))
                        }
                    };
                    let v = json!({"enrollmentGroupId": gid, "attestation": attestation});
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
        let (rid, Credential::GroupKey(g)) = f.device(2).unwrap() else {
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
        assert_eq!(a.device(5).unwrap(), b.device(5).unwrap());
        assert_ne!(a.device(5).unwrap(), c.device(5).unwrap());
        let (_, Credential::SymmetricKey(k)) = a.device(5).unwrap() else {
            panic!("individual credential expected");
        };
        let secret = SigningKey::from_bytes(b"secret-1").to_base64();
        assert_eq!(
            k,
            derive_device_key_base64(&secret, "individual/load-0000005").unwrap()
        );
    }

    #[test]
    fn x509_devices_get_their_own_certificate_from_the_fleet_ca() {
        let mut f = Fleet::new("load", 3, 1, Attestation::X509Group, "s");
        assert!(
            f.device(0).is_err(),
            "no certificates before they are issued"
        );
        let ca = f.issue_certificates().unwrap().unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let (rid, Credential::X509(id)) = f.device(4).unwrap() else {
            panic!("x509 credential expected");
        };
        assert_eq!(rid, "load-0000001");
        let Credential::X509(first) = f.device(1).unwrap().1 else {
            panic!("x509 credential expected");
        };
        assert_eq!(id, first, "index wraps at --devices");
        let Credential::X509(other) = f.device(2).unwrap().1 else {
            panic!("x509 credential expected");
        };
        assert_ne!(id.chain().unwrap(), other.chain().unwrap());
        let mut sas = Fleet::new("load", 3, 1, Attestation::Group, "s");
        assert_eq!(sas.issue_certificates().unwrap(), None);
    }
}
