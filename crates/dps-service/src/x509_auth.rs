//! X.509 device authentication: which enrollment accepts the chain a device presented in TLS.
//!
//! The leaf's CN must be the registration ID. An individual enrollment for that ID decides
//! alone (its primary or secondary certificate must be the leaf). Otherwise the X.509 groups
//! are tried closest signing certificate first (the one that issued the leaf, then the next
//! one up), as Azure DPS walks the chain: the first group with a valid path wins, enabled or
//! not, so a disabled intermediate group blocks its devices even if their root has an enabled
//! group. A group with a registration-ID pattern (an extension beyond Azure) is tried only for
//! the IDs it matches. The scope's CA certificates serve as stored intermediates for path
//! building.
//!
//! A refused chain is a 401 (`401002`) and writes nothing: not the device's registration
//! record, whose `errorMessage` would otherwise be the natural place for the reason. Anyone can
//! make a certificate with any CN, so recording refusals would let an unauthenticated client
//! overwrite a real device's record (and write to the store at will). The precise reason is in
//! the refusal's text, which the front ends log with the registration ID; failures after
//! authentication (allocation, the hub) are recorded as for SAS devices.

use dps_attest::x509::{self, ChainError, DeviceChain};
use dps_store::Store;
use dps_types::{
    AttestationMechanism, EnrollmentGroup, ProvisioningStatus, RegistrationId, Rejection,
    X509Certificates,
};
use rustls_pki_types::CertificateDer;

use crate::auth::{Matched, MemberCredential};
use crate::config::ScopeConfig;
use crate::hubs::{HubAuth, HubRegistry};
use crate::{Service, store_err};

/// The refusal for a chain, with the precise reason (and the verifier's own words) for the
/// operator's log; the device only sees Azure's 401002.
fn refuse(rid: &RegistrationId, what: &str, e: &ChainError) -> Rejection {
    let cause = std::error::Error::source(e)
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Rejection::Unauthorized(format!("x509 {rid}: {what}: {e}{cause}"))
}

/// SHA-256 thumbprints of an individual enrollment's certificates, primary first. Stored
/// certificates were validated on write; one that no longer decodes matches nothing.
pub(crate) fn enrolled_thumbprints(c: &X509Certificates) -> Vec<[u8; 32]> {
    c.iter()
        .filter_map(|w| w.certificate.as_deref())
        .filter_map(|t| x509::decode_uploaded(t).ok())
        .map(|der| x509::sha256(&der))
        .collect()
}

fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The hub credential for an X.509 individual enrollment: its certificates' thumbprints.
pub(crate) fn hub_auth(a: &AttestationMechanism) -> Option<HubAuth> {
    let x = a.x509()?;
    let mut t = enrolled_thumbprints(x.client_certificates.as_ref()?).into_iter();
    Some(HubAuth::X509Thumbprint {
        primary: upper_hex(&t.next()?),
        secondary: t.next().map(|s| upper_hex(&s)),
    })
}

/// A group's signing certificates: uploaded ones, or the verified scope CAs it names.
fn signing_certs(scope: &ScopeConfig, g: &EnrollmentGroup) -> Vec<CertificateDer<'static>> {
    let Some(x) = g.attestation.x509() else {
        return Vec::new();
    };
    if let Some(s) = &x.signing_certificates {
        return s
            .iter()
            .filter_map(|w| w.certificate.as_deref())
            .filter_map(|t| x509::decode_uploaded(t).ok())
            .collect();
    }
    x.ca_references
        .iter()
        .flat_map(|r| r.iter())
        .filter_map(|name| scope.verified_ca(name))
        .map(|ca| ca.der.clone())
        .collect()
}

impl<S: Store, H: HubRegistry> Service<S, H> {
    /// Authenticates a device by its TLS chain.
    pub(crate) async fn authenticate_x509(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        certs: &[CertificateDer<'_>],
    ) -> Result<Matched, Rejection> {
        let chain = DeviceChain::parse(certs).map_err(|e| refuse(rid, "chain", &e))?;
        chain
            .check_registration_id(rid.as_str())
            .map_err(|e| refuse(rid, "chain", &e))?;
        // Certificate validity is not subject to the SAS clock-skew allowance.
        let now = u64::try_from(self.clock.now().unix_seconds()).unwrap_or(0);
        let individual = self
            .store
            .enrollment(&scope.id_scope, &rid.key())
            .await
            .map_err(store_err)?;
        if let Some(e) = individual {
            let checked = match e
                .attestation
                .x509()
                .and_then(|x| x.client_certificates.as_ref())
            {
                Some(c) => x509::verify_individual(&chain, &enrolled_thumbprints(c), now),
                None => Err(ChainError::NotEnrolled),
            };
            return match checked {
                Ok(()) => Ok(Matched::Individual(Box::new(e))),
                // A disabled individual enrollment also blocks a member of a group.
                Err(_)
                    if e.provisioning_status == ProvisioningStatus::Disabled
                        && self.find_x509_group(scope, rid, &chain, now).await.is_ok() =>
                {
                    Ok(Matched::Individual(Box::new(e)))
                }
                Err(err) => Err(refuse(rid, "individual enrollment", &err)),
            };
        }
        self.find_x509_group(scope, rid, &chain, now).await
    }

    /// The closest X.509 group whose signing certificate the chain leads to.
    async fn find_x509_group(
        &self,
        scope: &ScopeConfig,
        rid: &RegistrationId,
        chain: &DeviceChain<'_>,
        now: u64,
    ) -> Result<Matched, Rejection> {
        let groups = self
            .store
            .groups_snapshot(&scope.id_scope)
            .await
            .map_err(store_err)?;
        let stored: Vec<CertificateDer<'_>> = scope.cas.iter().map(|c| c.der.clone()).collect();
        // (depth, group index, signing certificate); unknown depth last (a path through a
        // stored intermediate), ties in store order.
        // A group with a registration-ID pattern only holds the devices it matches.
        let mut candidates: Vec<(usize, usize, CertificateDer<'static>)> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.admits(rid))
            .flat_map(|(i, g)| {
                signing_certs(scope, g).into_iter().map(move |c| {
                    let depth = chain.issuer_depth(&c).unwrap_or(usize::MAX);
                    (depth, i, c)
                })
            })
            .collect();
        candidates.sort_by_key(|(depth, i, _)| (*depth, *i));
        let mut first_err = None;
        for (_, i, signing) in &candidates {
            match x509::verify_group(chain, signing, &stored, now) {
                Ok(()) => {
                    return Ok(Matched::Group(
                        std::sync::Arc::new(groups[*i].clone()),
                        MemberCredential::Leaf(upper_hex(&chain.leaf_sha256())),
                    ));
                }
                Err(e) => {
                    first_err.get_or_insert((groups[*i].enrollment_group_id.clone(), e));
                }
            }
        }
        Err(match first_err {
            Some((gid, e)) => refuse(rid, &format!("enrollment group {gid}"), &e),
            None => refuse(rid, "no x509 enrollment group", &ChainError::UnknownIssuer),
        })
    }
}
