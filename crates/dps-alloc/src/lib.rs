//! Allocation policies of dps-rs: which linked hub a device lands on.
//!
//! [`HubSet`] is prepared once per configuration change (never per request) from the scope's
//! linked hubs; [`HubSet::allocate`] then picks a hub for one registration under a policy:
//!
//! - **static**: the single hub the enrollment names (it must be linked);
//! - **hashed** (evenly weighted distribution): weighted rendezvous hashing of the case-folded
//!   registration ID over the eligible hubs. Deterministic with no seed, honours
//!   `allocation_weight`, and moves only the devices of a removed hub (about 1/(n+1) of devices
//!   when one equal hub is added). Hubs with `apply_allocation_policy = false` never take part.
//!
//! Lowest latency and custom allocation are not implemented yet and fall back to hashed. This
//! crate does no I/O and allocates nothing per call beyond the candidate filter.
//!
//! The hub scores use `f64::ln`; results are deterministic on one platform, and the plan is to
//! replace it with an integer-only scheme so every node agrees bit for bit.
//!
//! ```
//! use dps_alloc::{Hub, HubSet};
//! use dps_types::{AllocationPolicy, HubHostName};
//!
//! let hubs = HubSet::new(vec![
//!     Hub::new(HubHostName::new("hub-a.example.net").unwrap(), 1, true),
//!     Hub::new(HubHostName::new("hub-b.example.net").unwrap(), 3, true),
//! ]);
//! let a = hubs.allocate(AllocationPolicy::Hashed, &[], "dev-1").unwrap();
//! assert_eq!(a, hubs.allocate(AllocationPolicy::Hashed, &[], "DEV-1").unwrap());
//! ```

use dps_types::{AllocationPolicy, HubHostName};

/// A linked hub as allocation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// Host name.
    pub host: HubHostName,
    /// Relative weight, 1-1000.
    pub weight: u32,
    /// Whether the hub takes part in hashed / lowest-latency allocation.
    pub apply_allocation_policy: bool,
}

impl Hub {
    /// A hub; the weight is clamped to 1-1000.
    pub fn new(host: HubHostName, weight: u32, apply_allocation_policy: bool) -> Self {
        Self {
            host,
            weight: weight.clamp(1, 1000),
            apply_allocation_policy,
        }
    }
}

/// Why no hub could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No linked hub is eligible.
    #[error("no linked IoT hub is eligible for allocation")]
    NoEligibleHub,
    /// The enrollment names a hub that is not linked.
    #[error("IoT hub {0} is not linked to this scope")]
    HubNotLinked(String),
    /// A static policy without exactly one named hub.
    #[error("a static allocation policy needs exactly one IoT hub on the enrollment")]
    StaticNeedsOneHub,
}

/// The scope's linked hubs, prepared for allocation.
#[derive(Debug, Clone, Default)]
pub struct HubSet {
    hubs: Vec<Hub>,
    seeds: Vec<u64>,
}

impl HubSet {
    /// Prepares a hub set (hub names are de-duplicated, first wins).
    pub fn new(hubs: Vec<Hub>) -> Self {
        let mut uniq: Vec<Hub> = Vec::with_capacity(hubs.len());
        for h in hubs {
            if !uniq.iter().any(|u| u.host == h.host) {
                uniq.push(h);
            }
        }
        let seeds = uniq
            .iter()
            .map(|h| hash64(h.host.as_str().as_bytes(), 0x9e37_79b9_7f4a_7c15))
            .collect();
        Self { hubs: uniq, seeds }
    }

    /// The hubs.
    pub fn hubs(&self) -> &[Hub] {
        &self.hubs
    }

    /// Finds a linked hub by name (case-insensitive).
    pub fn find(&self, name: &str) -> Option<&Hub> {
        self.hubs
            .iter()
            .find(|h| h.host.as_str().eq_ignore_ascii_case(name))
    }

    /// Picks a hub for `registration_id` under `policy`. `named` are the enrollment's hubs
    /// (`iotHubs`, or the legacy `iotHubHostName`); empty means every linked hub.
    pub fn allocate(
        &self,
        policy: AllocationPolicy,
        named: &[&str],
        registration_id: &str,
    ) -> Result<HubHostName, AllocError> {
        for n in named {
            if self.find(n).is_none() {
                return Err(AllocError::HubNotLinked((*n).to_owned()));
            }
        }
        match policy {
            AllocationPolicy::Static => match named {
                [one] => self
                    .find(one)
                    .map(|h| h.host.clone())
                    .ok_or(AllocError::NoEligibleHub),
                _ => Err(AllocError::StaticNeedsOneHub),
            },
            AllocationPolicy::Hashed | AllocationPolicy::GeoLatency | AllocationPolicy::Custom => {
                self.hashed(named, registration_id)
                    .ok_or(AllocError::NoEligibleHub)
            }
        }
    }

    fn hashed(&self, named: &[&str], registration_id: &str) -> Option<HubHostName> {
        let key = hash64_lower(registration_id.as_bytes());
        let mut best: Option<(f64, usize)> = None;
        for (i, h) in self.hubs.iter().enumerate() {
            if !h.apply_allocation_policy {
                continue;
            }
            if !named.is_empty()
                && !named
                    .iter()
                    .any(|n| h.host.as_str().eq_ignore_ascii_case(n))
            {
                continue;
            }
            // Weighted rendezvous: score = w / -ln(u), u uniform in (0, 1).
            let u = ((mix(key ^ self.seeds[i]) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = f64::from(h.weight) / -u.ln();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| self.hubs[i].host.clone())
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn hash64_lower(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: &[(&str, u32, bool)]) -> HubSet {
        HubSet::new(
            spec.iter()
                .map(|(n, w, a)| Hub::new(HubHostName::new(n).unwrap(), *w, *a))
                .collect(),
        )
    }

    #[test]
    fn static_policy() {
        let s = set(&[("a", 1, true), ("b", 1, false)]);
        assert_eq!(
            s.allocate(AllocationPolicy::Static, &["B"], "d")
                .unwrap()
                .as_str(),
            "b"
        );
        assert_eq!(
            s.allocate(AllocationPolicy::Static, &[], "d"),
            Err(AllocError::StaticNeedsOneHub)
        );
        assert_eq!(
            s.allocate(AllocationPolicy::Static, &["c"], "d"),
            Err(AllocError::HubNotLinked("c".into()))
        );
    }

    #[test]
    fn hashed_skips_non_participating_hubs_and_honours_named_set() {
        let s = set(&[("a", 1, true), ("b", 1, false), ("c", 1, true)]);
        for i in 0..200 {
            let h = s
                .allocate(AllocationPolicy::Hashed, &[], &format!("dev-{i}"))
                .unwrap();
            assert_ne!(h.as_str(), "b");
            let only_c = s
                .allocate(AllocationPolicy::Hashed, &["c"], &format!("dev-{i}"))
                .unwrap();
            assert_eq!(only_c.as_str(), "c");
        }
        let none = set(&[("b", 1, false)]);
        assert_eq!(
            none.allocate(AllocationPolicy::Hashed, &[], "d"),
            Err(AllocError::NoEligibleHub)
        );
    }

    #[test]
    fn weights_are_respected() {
        let s = set(&[("a", 1, true), ("b", 3, true)]);
        let n = 20_000;
        let b = (0..n)
            .filter(|i| {
                s.allocate(AllocationPolicy::Hashed, &[], &format!("dev-{i}"))
                    .unwrap()
                    .as_str()
                    == "b"
            })
            .count();
        let share = b as f64 / f64::from(n);
        assert!(
            (0.72..0.78).contains(&share),
            "share of weight-3 hub = {share}"
        );
    }

    #[test]
    fn adding_a_hub_moves_only_devices_to_it() {
        let before = set(&[("a", 1, true), ("b", 1, true), ("c", 1, true)]);
        let after = set(&[
            ("a", 1, true),
            ("b", 1, true),
            ("c", 1, true),
            ("d", 1, true),
        ]);
        let n = 8000;
        let mut moved = 0;
        for i in 0..n {
            let id = format!("dev-{i}");
            let x = before.allocate(AllocationPolicy::Hashed, &[], &id).unwrap();
            let y = after.allocate(AllocationPolicy::Hashed, &[], &id).unwrap();
            if x != y {
                assert_eq!(y.as_str(), "d", "a device moved between old hubs");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(n);
        assert!((0.22..0.28).contains(&share), "moved share = {share}");
    }

    #[test]
    fn case_insensitive_and_deterministic() {
        let s = set(&[("a", 1, true), ("b", 1, true), ("c", 2, true)]);
        for i in 0..100 {
            let id = format!("Dev-{i}");
            assert_eq!(
                s.allocate(AllocationPolicy::Hashed, &[], &id).unwrap(),
                s.allocate(AllocationPolicy::Hashed, &[], &id.to_ascii_uppercase())
                    .unwrap()
            );
        }
    }
}
