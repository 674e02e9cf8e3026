//! The registration engine's decisions, as pure functions: given what the store holds and what
//! allocation proposes, what happens to this device?
//!
//! - [`enrollment_status`]: precedence of individual enrollments over groups, and disabled
//!   enrollments (a disabled individual enrollment blocks one device inside an enabled group);
//! - [`reprovision`]: which hub a re-registering device ends on and the `substatus` it reports,
//!   following the enrollment's [`ReprovisionPolicy`] (and the sticky behaviour of pre-2018-11
//!   device API versions when no policy was ever set).
//!
//! No I/O, no clock, no randomness. Start from [`reprovision`]:
//!
//! ```
//! use dps_core::{reprovision, Previous};
//! use dps_types::{HubHostName, ReprovisionPolicy, Substatus};
//!
//! let a = HubHostName::new("hub-a").unwrap();
//! let b = HubHostName::new("hub-b").unwrap();
//! let prev = Previous { hub: &a, initial_hub: Some(&a), substatus: Some(Substatus::InitialAssignment) };
//! let d = reprovision(Some(prev), Some(ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false }), false, &b);
//! assert_eq!((d.hub, d.substatus), (b.clone(), Substatus::DeviceDataReset));
//! ```

use dps_types::{
    EnrollmentGroup, HubHostName, IndividualEnrollment, ProvisioningStatus, ReprovisionPolicy,
    Substatus,
};

/// What the enrollments say about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentStatus {
    /// Register through the individual enrollment.
    Individual,
    /// Register through the group.
    Group,
    /// Refuse with status `disabled`.
    Disabled,
}

/// Precedence: an individual enrollment decides alone (enabled or disabled, even inside an
/// enabled group); otherwise the matching group decides.
pub fn enrollment_status(
    individual: Option<&IndividualEnrollment>,
    group: Option<&EnrollmentGroup>,
) -> Option<EnrollmentStatus> {
    match (individual, group) {
        (Some(e), _) if e.provisioning_status == ProvisioningStatus::Disabled => {
            Some(EnrollmentStatus::Disabled)
        }
        (Some(_), _) => Some(EnrollmentStatus::Individual),
        (None, Some(g)) if g.provisioning_status == ProvisioningStatus::Disabled => {
            Some(EnrollmentStatus::Disabled)
        }
        (None, Some(_)) => Some(EnrollmentStatus::Group),
        (None, None) => None,
    }
}

/// The device's previous assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous<'a> {
    /// The hub it is on.
    pub hub: &'a HubHostName,
    /// The first hub it was ever assigned to.
    pub initial_hub: Option<&'a HubHostName>,
    /// Its last substatus.
    pub substatus: Option<Substatus>,
}

/// The outcome of a (re-)registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Where the device ends.
    pub hub: HubHostName,
    /// What to report.
    pub substatus: Substatus,
    /// Whether the hub identity must be (re)written from the enrollment's initial state
    /// rather than migrated.
    pub reset_data: bool,
}

/// Decides a (re-)registration. `proposed` is what allocation chose now; `legacy_sticky` is true
/// for device API versions ≤ 2018-04-01, which keep their hub when no policy was ever set.
///
/// `reprovisionedToInitialAssignment` ("re-provisioned to a previously assigned hub") is
/// reported when the device returns to the first hub it was assigned to: the record keeps that
/// one of its earlier hubs. On the same hub, "reset" re-applies the enrollment's initial state
/// (the documented factory reset) and reports `deviceDataReset`; otherwise the previous
/// substatus is kept.
pub fn reprovision(
    previous: Option<Previous<'_>>,
    policy: Option<ReprovisionPolicy>,
    legacy_sticky: bool,
    proposed: &HubHostName,
) -> Assignment {
    let Some(prev) = previous else {
        return Assignment {
            hub: proposed.clone(),
            substatus: Substatus::InitialAssignment,
            reset_data: true,
        };
    };
    let policy = policy.unwrap_or(if legacy_sticky {
        ReprovisionPolicy {
            update_hub_assignment: false,
            migrate_device_data: false,
        }
    } else {
        ReprovisionPolicy::default()
    });
    let keep = prev.substatus.unwrap_or(Substatus::InitialAssignment);
    if !policy.update_hub_assignment || proposed == prev.hub {
        // Same hub. With "reset" the enrollment's initial state is re-applied (the documented
        // factory-reset use); otherwise nothing changes.
        let reset = policy.update_hub_assignment && !policy.migrate_device_data;
        let substatus = if reset {
            Substatus::DeviceDataReset
        } else {
            keep
        };
        return Assignment {
            hub: prev.hub.clone(),
            substatus,
            reset_data: reset,
        };
    }
    let substatus = if prev.initial_hub == Some(proposed) {
        Substatus::ReprovisionedToInitialAssignment
    } else if policy.migrate_device_data {
        Substatus::DeviceDataMigrated
    } else {
        Substatus::DeviceDataReset
    };
    Assignment {
        hub: proposed.clone(),
        substatus,
        reset_data: !policy.migrate_device_data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(s: &str) -> HubHostName {
        HubHostName::new(s).unwrap()
    }

    #[test]
    fn first_assignment() {
        let a = reprovision(None, None, false, &hub("a"));
        assert_eq!(
            a,
            Assignment {
                hub: hub("a"),
                substatus: Substatus::InitialAssignment,
                reset_data: true
            }
        );
    }

    #[test]
    fn policies() {
        let (a, b) = (hub("a"), hub("b"));
        let prev = Previous {
            hub: &a,
            initial_hub: Some(&a),
            substatus: Some(Substatus::InitialAssignment),
        };
        let migrate = reprovision(Some(prev), None, false, &b);
        assert_eq!(
            (migrate.hub.as_str(), migrate.substatus, migrate.reset_data),
            ("b", Substatus::DeviceDataMigrated, false)
        );
        let never = ReprovisionPolicy {
            update_hub_assignment: false,
            migrate_device_data: false,
        };
        assert_eq!(reprovision(Some(prev), Some(never), false, &b).hub, a);
        let sticky = reprovision(Some(prev), None, true, &b);
        assert_eq!(sticky.hub, a);
        let explicit = reprovision(Some(prev), Some(ReprovisionPolicy::default()), true, &b);
        assert_eq!(
            explicit.hub, b,
            "an explicit policy overrides legacy stickiness"
        );
        let same = reprovision(Some(prev), None, false, &a);
        assert_eq!(
            (same.substatus, same.reset_data),
            (Substatus::InitialAssignment, false)
        );
        let moved = Previous {
            hub: &b,
            initial_hub: Some(&a),
            substatus: Some(Substatus::DeviceDataMigrated),
        };
        assert_eq!(
            reprovision(Some(moved), None, false, &a).substatus,
            Substatus::ReprovisionedToInitialAssignment
        );
    }

    #[test]
    fn reset_policy_follows_the_reference() {
        // dps-service-api.md §12.1-12.2: reset re-applies the enrollment's initial state, also
        // on the same hub (the documented factory reset), and back on the initial hub.
        let (a, b) = (hub("a"), hub("b"));
        let reset = Some(ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: false,
        });
        let on_a = Previous {
            hub: &a,
            initial_hub: Some(&a),
            substatus: Some(Substatus::InitialAssignment),
        };
        let moved = reprovision(Some(on_a), reset, false, &b);
        assert_eq!(
            (moved.hub.as_str(), moved.substatus, moved.reset_data),
            ("b", Substatus::DeviceDataReset, true)
        );
        let in_place = reprovision(Some(on_a), reset, false, &a);
        assert_eq!(
            (
                in_place.hub.as_str(),
                in_place.substatus,
                in_place.reset_data
            ),
            ("a", Substatus::DeviceDataReset, true)
        );
        let on_b = Previous {
            hub: &b,
            initial_hub: Some(&a),
            substatus: Some(Substatus::DeviceDataReset),
        };
        let back = reprovision(Some(on_b), reset, false, &a);
        assert_eq!(
            (back.substatus, back.reset_data),
            (Substatus::ReprovisionedToInitialAssignment, true)
        );
        // Never: nothing changes, whatever allocation proposes, and the substatus is kept.
        let never = Some(ReprovisionPolicy {
            update_hub_assignment: false,
            migrate_device_data: true,
        });
        let stay = reprovision(Some(on_b), never, false, &a);
        assert_eq!(
            (stay.hub.as_str(), stay.substatus, stay.reset_data),
            ("b", Substatus::DeviceDataReset, false)
        );
        // A record without a substatus (older data) counts as an initial assignment.
        let bare = Previous {
            hub: &a,
            initial_hub: None,
            substatus: None,
        };
        let d = reprovision(Some(bare), None, false, &a);
        assert_eq!(d.substatus, Substatus::InitialAssignment);
        let d = reprovision(Some(bare), None, false, &b);
        assert_eq!(d.substatus, Substatus::DeviceDataMigrated);
    }

    #[test]
    fn disabled_individual_wins_over_group() {
        let mut e: IndividualEnrollment =
            serde_json::from_str(r#"{"registrationId":"d","attestation":{"type":"symmetricKey"}}"#)
                .unwrap();
        let g: EnrollmentGroup = serde_json::from_str(
            r#"{"enrollmentGroupId":"g","attestation":{"type":"symmetricKey"}}"#,
        )
        .unwrap();
        assert_eq!(
            enrollment_status(Some(&e), Some(&g)),
            Some(EnrollmentStatus::Individual)
        );
        e.provisioning_status = ProvisioningStatus::Disabled;
        assert_eq!(
            enrollment_status(Some(&e), Some(&g)),
            Some(EnrollmentStatus::Disabled)
        );
        assert_eq!(
            enrollment_status(None, Some(&g)),
            Some(EnrollmentStatus::Group)
        );
        assert_eq!(enrollment_status(None, None), None);
    }
}
