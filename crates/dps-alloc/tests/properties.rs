//! Properties of the allocation policies, through the public API.
//!
//! Deterministic: proptest runs from a fixed seed. Building a lookup table costs about a second
//! in a debug build, so the generated cases prepare their sets without tables (`direct`: every
//! lookup scores every candidate) — the answers are the same by construction, which
//! `tables_change_nothing` checks — and the tests after the `proptest!` block repeat the
//! properties on sets with tables. The sample sizes keep the default (debug) run short;
//! `ALLOC_FULL=1` (best in release) runs the million-id weight check.

use std::collections::BTreeSet;

use dps_alloc::{
    AllocError, Allocator, CustomError, Hashed, HashedConfig, Hub, HubSet, LatencyMap,
    LowestLatencyConfig, Request, Tolerance,
};
use dps_types::{AllocationPolicy, HubHostName};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_a110c),
        failure_persistence: None,
        ..Config::default()
    }
}

fn name(i: usize) -> String {
    format!("hub-{i}.example.net")
}

fn hub(i: usize, weight: u32, apply: bool) -> Hub {
    Hub::new(
        HubHostName::new(&name(i)).expect("valid host name"),
        weight,
        apply,
    )
}

fn ids(salt: u32, n: usize) -> impl Iterator<Item = String> {
    (0..n).map(move |i| format!("device-{salt}-{i:07}"))
}

fn hashed(set: &HubSet, named: &[&str], id: &str) -> Result<String, AllocError> {
    set.allocate(AllocationPolicy::Hashed, named, id)
        .map(|h| h.as_str().to_owned())
}

/// (weight, participates) per hub; hub i is named `name(i)`.
fn hub_specs(max: usize) -> impl Strategy<Value = Vec<(u32, bool)>> {
    prop::collection::vec((1u32..=1000, prop::bool::weighted(0.85)), 1..=max)
}

/// A set scored directly on every lookup (no tables): same answers, cheap to build.
fn direct(hubs: Vec<Hub>) -> HubSet {
    HubSet::builder(hubs)
        .hashed(HashedConfig::default().with_direct_max(usize::MAX))
        .build()
}

fn build(spec: &[(u32, bool)]) -> HubSet {
    direct(
        spec.iter()
            .enumerate()
            .map(|(i, &(w, a))| hub(i, w, a))
            .collect(),
    )
}

proptest! {
    #![proptest_config(config(48))]

    /// Same hubs (in any order) and same ID (in any case) give the same hub.
    #[test]
    fn deterministic(spec in hub_specs(8), rotate in 0usize..8, salt in any::<u32>()) {
        let a = build(&spec);
        let mut hubs: Vec<Hub> = a.hubs().to_vec();
        let len = hubs.len();
        hubs.rotate_left(rotate % len);
        hubs.reverse();
        let b = direct(hubs);
        for id in ids(salt, 300) {
            let x = hashed(&a, &[], &id);
            prop_assert_eq!(&x, &hashed(&b, &[], &id));
            prop_assert_eq!(&x, &hashed(&a, &[], &id.to_ascii_uppercase()));
        }
    }

    /// The choice is a participating hub (of the named subset, when there is one), and there is
    /// a choice whenever such a hub exists.
    #[test]
    fn every_choice_is_eligible(
        spec in hub_specs(8),
        subset in prop::collection::btree_set(0usize..8, 0..4),
        salt in any::<u32>(),
    ) {
        let set = build(&spec);
        let named: Vec<String> = subset.iter().filter(|&&i| i < spec.len()).map(|&i| name(i)).collect();
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        let eligible: BTreeSet<String> = spec
            .iter()
            .enumerate()
            .filter(|&(i, &(_, a))| a && (named.is_empty() || named.contains(&name(i).as_str())))
            .map(|(i, _)| name(i))
            .collect();
        for id in ids(salt, 200) {
            match hashed(&set, &named, &id) {
                Ok(h) => prop_assert!(eligible.contains(&h), "{} not eligible", h),
                Err(e) => {
                    prop_assert!(eligible.is_empty());
                    prop_assert_eq!(e, AllocError::NoEligibleHub);
                }
            }
        }
    }

    /// The choice among a named subset is the choice of a set holding only that subset, and
    /// equals the full-set choice whenever that is in the subset (restriction property).
    #[test]
    fn named_subsets_restrict_the_full_set(
        n in 1usize..=8,
        subset in prop::collection::btree_set(0usize..8, 1..6),
        salt in any::<u32>(),
    ) {
        let all: Vec<Hub> = (0..n).map(|i| hub(i, 1 + (i as u32 * 37) % 5, true)).collect();
        let full = direct(all.clone());
        let subset: Vec<usize> = subset.into_iter().filter(|&i| i < n).collect();
        prop_assume!(!subset.is_empty());
        let names: Vec<String> = subset.iter().map(|&i| name(i)).collect();
        let named: Vec<&str> = names.iter().map(String::as_str).collect();
        let only = direct(subset.iter().map(|&i| all[i].clone()).collect());
        for id in ids(salt, 300) {
            let whole = hashed(&full, &[], &id)?;
            let restricted = hashed(&full, &named, &id)?;
            prop_assert_eq!(&restricted, &hashed(&only, &[], &id)?);
            if named.contains(&whole.as_str()) {
                prop_assert_eq!(&restricted, &whole);
            }
        }
    }

    /// Removing any hub moves only the devices it had.
    #[test]
    fn removing_a_hub_moves_only_its_devices(
        spec in hub_specs(8),
        victim in 0usize..8,
        salt in any::<u32>(),
    ) {
        let victim = victim % spec.len();
        let before = build(&spec);
        let after = direct(
            before.hubs().iter().filter(|h| h.host.as_str() != name(victim)).cloned().collect(),
        );
        for id in ids(salt, 400) {
            if let (Ok(x), Ok(y)) = (hashed(&before, &[], &id), hashed(&after, &[], &id))
                && x != y
            {
                prop_assert_eq!(x, name(victim));
            }
        }
    }

    /// Adding one hub of equal weight to n moves devices only to it, about 1/(n+1) of them.
    #[test]
    fn adding_an_equal_hub_moves_about_one_in_n_plus_one(
        n in 1usize..=7,
        weight in 1u32..=1000,
        salt in any::<u32>(),
    ) {
        let before = direct((0..n).map(|i| hub(i, weight, true)).collect());
        let after = direct((0..=n).map(|i| hub(i, weight, true)).collect());
        let total = 20_000;
        let mut moved = 0;
        for id in ids(salt, total) {
            let x = hashed(&before, &[], &id)?;
            let y = hashed(&after, &[], &id)?;
            if x != y {
                prop_assert_eq!(&y, &name(n), "a device moved between old hubs");
                moved += 1;
            }
        }
        // The bound is 1.1/(n+1); 20,000 ids put it at least 4 standard deviations above the
        // expectation for every n here.
        let share = f64::from(moved) / total as f64;
        prop_assert!(share <= 1.1 / (n + 1) as f64, "moved {} for n={}", share, n);
        prop_assert!(share >= 0.9 / (n + 1) as f64, "moved {} for n={}", share, n);
    }

    /// Weights are honoured (a cheap sample here; `ALLOC_FULL=1` for the million-id run).
    #[test]
    fn weights_are_honoured(
        weights in prop::collection::vec(1u32..=1000, 1..=6),
        salt in any::<u32>(),
    ) {
        check_weights(&weights, salt, 40_000, false).map_err(TestCaseError::fail)?;
    }

    /// Lowest latency picks among the tie set only, and within it exactly as hashing over the
    /// tie set alone.
    #[test]
    fn tie_sets_are_respected(
        hub_regions in prop::collection::vec(prop::option::weighted(0.9, 0usize..4), 1..=8),
        latency in prop::collection::vec(prop::option::weighted(0.8, 0u32..100_000), 16),
        percent in 0u32..30,
        source in prop::option::weighted(0.9, 0usize..5),
        subset in prop::collection::btree_set(0usize..8, 0..4),
        salt in any::<u32>(),
    ) {
        check_tie_sets(&hub_regions, &latency, percent, &[(source, subset)], salt, false)?;
    }
}

/// Lowest latency over hubs in `hub_regions` (`region-<r>`, or none) with `latency[4 * i + j]`
/// from region i to region j: every choice is in the tie set, and is the hashed choice over the
/// tie set alone.
fn check_tie_sets(
    hub_regions: &[Option<usize>],
    latency: &[Option<u32>],
    percent: u32,
    requests: &[(Option<usize>, BTreeSet<usize>)],
    salt: u32,
    tables: bool,
) -> Result<(), TestCaseError> {
    let prepare = |hubs: Vec<Hub>| {
        if tables {
            HubSet::new(hubs)
        } else {
            direct(hubs)
        }
    };
    let region = |r: usize| format!("region-{r}");
    let mut map = LatencyMap::new();
    for (k, l) in latency.iter().enumerate() {
        if let Some(us) = l {
            map.insert(&region(k / 4), &region(k % 4), *us);
        }
    }
    let hubs: Vec<Hub> = hub_regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let h = hub(i, 1 + i as u32 % 3, i % 11 != 5);
            match r {
                Some(r) => h.with_region(region(*r)),
                None => h,
            }
        })
        .collect();
    let cfg = LowestLatencyConfig::new(map.clone())
        .with_tolerance(Tolerance::percent(percent).at_least_micros(50));
    let mut builder = HubSet::builder(hubs.clone()).lowest_latency(cfg.clone());
    if !tables {
        builder = builder.hashed(HashedConfig::default().with_direct_max(usize::MAX));
    }
    let set = builder.build();
    for (source, subset) in requests {
        let named_names: Vec<String> = subset
            .iter()
            .filter(|&&i| i < hubs.len())
            .map(|&i| name(i))
            .collect();
        let named: Vec<&str> = named_names.iter().map(String::as_str).collect();
        let source_name = source.map(region);
        let candidates: Vec<&Hub> = hubs
            .iter()
            .filter(|h| h.apply_allocation_policy)
            .filter(|h| named.is_empty() || named.contains(&h.host.as_str()))
            .collect();
        let lat = |h: &Hub| match (&source_name, &h.region) {
            (Some(s), Some(r)) => map.latency(s, r),
            _ => None,
        };
        let best = candidates.iter().filter_map(|h| lat(h)).min();
        let tie: Vec<Hub> = candidates
            .iter()
            .filter(|h| {
                best.is_none_or(|b| lat(h).is_some_and(|l| u64::from(l) <= cfg.tolerance.limit(b)))
            })
            .map(|h| (*h).clone())
            .collect();
        let tie_only = prepare(tie.clone());
        for id in ids(salt, 150) {
            let req = Request::new(AllocationPolicy::GeoLatency, &id)
                .with_named(&named)
                .with_source_region(source_name.as_deref());
            let got = match set.allocate_with(&req) {
                Ok(h) => h.host.as_str().to_owned(),
                Err(e) => {
                    prop_assert!(tie.is_empty());
                    prop_assert_eq!(e, AllocError::NoEligibleHub);
                    continue;
                }
            };
            prop_assert!(
                tie.iter().any(|h| h.host.as_str() == got),
                "{} not in the tie set",
                got
            );
            prop_assert_eq!(got, hashed(&tie_only, &[], &id)?);
        }
    }
    Ok(())
}

// ---- sets large enough to have lookup tables (a second or so each in a debug build) ----

fn mixed(n: usize) -> Vec<Hub> {
    (0..n)
        .map(|i| hub(i, [1, 3, 1000, 17][i % 4], i != 4))
        .collect()
}

#[test]
fn deterministic_with_tables() {
    let a = HubSet::new(mixed(30));
    let mut hubs = mixed(30);
    hubs.reverse();
    hubs.rotate_left(7);
    let b = HubSet::new(hubs);
    for id in ids(11, 2000) {
        let x = hashed(&a, &[], &id);
        assert!(x.is_ok());
        assert_eq!(x, hashed(&b, &[], &id));
        assert_eq!(x, hashed(&a, &[], &id.to_ascii_uppercase()));
    }
}

#[test]
fn named_subsets_with_a_table() {
    let all = mixed(40);
    let full = HubSet::new(all.clone());
    for (k, subset) in [
        &[3usize][..],
        &[0, 4],
        &[1, 2, 3],
        &[5, 9, 13, 17, 21, 25],
        &[4],
    ]
    .iter()
    .enumerate()
    {
        let names: Vec<String> = subset.iter().map(|&i| name(i)).collect();
        let named: Vec<&str> = names.iter().map(String::as_str).collect();
        let only = HubSet::new(subset.iter().map(|&i| all[i].clone()).collect());
        for id in ids(k as u32, 1000) {
            let restricted = hashed(&full, &named, &id);
            assert_eq!(restricted, hashed(&only, &[], &id));
            if let Ok(whole) = hashed(&full, &[], &id)
                && named.contains(&whole.as_str())
            {
                assert_eq!(restricted, Ok(whole));
            }
        }
    }
}

#[test]
fn adding_and_removing_with_tables() {
    let n = 20;
    let before = HubSet::new((0..n).map(|i| hub(i, 5, true)).collect());
    let after = HubSet::new((0..=n).map(|i| hub(i, 5, true)).collect());
    let removed = HubSet::new(
        (0..=n)
            .filter(|&i| i != 7)
            .map(|i| hub(i, 5, true))
            .collect(),
    );
    let total = 50_000;
    let (mut moved, mut moved_by_removal) = (0, 0);
    for id in ids(5, total) {
        let x = hashed(&before, &[], &id).expect("a hub");
        let y = hashed(&after, &[], &id).expect("a hub");
        let z = hashed(&removed, &[], &id).expect("a hub");
        if x != y {
            assert_eq!(y, name(n), "a device moved between old hubs");
            moved += 1;
        }
        if y != z {
            assert_eq!(y, name(7), "removing hub 7 moved another hub's device");
            moved_by_removal += 1;
        }
    }
    // Expectation 1/21 of 50,000 = 2,381 +- 48; the bound 1.1/21 is 5 deviations above.
    assert!(moved <= total * 11 / 10 / (n + 1), "moved {moved}");
    assert!(moved >= total * 9 / 10 / (n + 1), "moved {moved}");
    assert!(moved_by_removal > 0);
}

#[test]
fn tie_sets_with_tables() {
    // 36 hubs in three regions (tables per region), a few without region.
    let regions: Vec<Option<usize>> = (0..36)
        .map(|i| if i % 12 == 11 { None } else { Some(i % 3) })
        .collect();
    let mut latency = vec![None; 16];
    for (from, to, us) in [
        (0, 0, 1_000),
        (0, 1, 1_050),
        (0, 2, 9_000),
        (1, 1, 500),
        (2, 0, 9_000),
        (3, 2, 100),
    ] {
        latency[4 * from + to] = Some(us);
    }
    let some: BTreeSet<usize> = [0, 1, 2, 5, 11, 30].into_iter().collect();
    let requests: Vec<(Option<usize>, BTreeSet<usize>)> =
        [Some(0), Some(1), Some(2), Some(3), None]
            .into_iter()
            .flat_map(|source| [(source, BTreeSet::new()), (source, some.clone())])
            .collect();
    check_tie_sets(&regions, &latency, 10, &requests, 9, true).unwrap_or_else(|e| panic!("{e}"));
}

/// Compares the share of each hub with its weight over `total` ids. A hub expecting at least
/// 40,000 ids (where sampling noise is under 0.5 %) must be within 2 %; a smaller one within
/// 5 standard deviations of binomial sampling plus the table's own granularity.
fn check_weights(weights: &[u32], salt: u32, total: usize, tables: bool) -> Result<f64, String> {
    let prepare = if tables { HubSet::new } else { direct };
    let set = prepare(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| hub(i, w, true))
            .collect(),
    );
    let mut counts = vec![0usize; weights.len()];
    for id in ids(salt, total) {
        let h = set
            .allocate(AllocationPolicy::Hashed, &[], &id)
            .map_err(|e| e.to_string())?;
        let i: usize = h.as_str()["hub-".len()..]
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("bad hub name")?;
        counts[i] += 1;
    }
    let sum: u32 = weights.iter().sum();
    let mut worst_relative: f64 = 0.0;
    for (i, (&w, &c)) in weights.iter().zip(&counts).enumerate() {
        let p = f64::from(w) / f64::from(sum);
        let expected = p * total as f64;
        let err = (c as f64 - expected).abs();
        if expected >= 40_000.0 {
            worst_relative = worst_relative.max(err / expected);
            if err > 0.02 * expected {
                return Err(format!(
                    "hub {i} (weight {w} of {sum}): {c} ids, expected {expected:.0}"
                ));
            }
        } else {
            // Sampling (binomial) plus the table's slot granularity, which behaves like a
            // second sample of 2^20.
            let var = expected * (1.0 - p) * (1.0 + total as f64 / f64::from(1u32 << 20));
            if err > 5.0 * var.sqrt() + 1.0 {
                return Err(format!(
                    "hub {i} (weight {w} of {sum}): {c} ids, expected {expected:.0}"
                ));
            }
        }
    }
    Ok(worst_relative)
}

#[test]
fn weights_over_a_million_ids() {
    if std::env::var_os("ALLOC_FULL").is_none() {
        eprintln!("set ALLOC_FULL=1 for the million-id run");
        return;
    }
    let cases: &[&[u32]] = &[
        &[1, 1],
        &[1, 3],
        &[1000, 1],
        &[10, 20, 30, 40],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        &[1000, 999, 500, 250, 1],
        &[7; 20],
    ];
    for (k, w) in cases.iter().enumerate() {
        match check_weights(w, k as u32, 1_000_000, true) {
            Ok(worst) => eprintln!("weights {w:?}: worst relative error {:.3} %", worst * 100.0),
            Err(e) => panic!("weights {w:?}: {e}"),
        }
    }
}

#[test]
fn static_policy_errors() {
    let set = HubSet::new(vec![hub(0, 1, true), hub(1, 1, false)]);
    let st = |named: &[&str]| set.allocate(AllocationPolicy::Static, named, "dev");
    assert_eq!(
        st(&["HUB-1.example.net"]).map(|h| h.as_str().to_owned()),
        Ok(name(1))
    );
    assert_eq!(st(&[]), Err(AllocError::StaticNeedsOneHub));
    assert_eq!(
        st(&["hub-0.example.net", "hub-1.example.net"]),
        Err(AllocError::StaticNeedsOneHub)
    );
    assert_eq!(
        st(&["nowhere.example.net"]),
        Err(AllocError::HubNotLinked("nowhere.example.net".into()))
    );
    // Unknown names fail every policy the same way.
    for policy in [
        AllocationPolicy::Hashed,
        AllocationPolicy::GeoLatency,
        AllocationPolicy::Custom,
    ] {
        assert_eq!(
            set.allocate(policy, &["nowhere"], "dev"),
            Err(AllocError::HubNotLinked("nowhere".into()))
        );
    }
    // A non-participating hub can be named statically, never hashed to.
    assert_eq!(
        set.allocate(AllocationPolicy::Hashed, &["hub-1.example.net"], "dev"),
        Err(AllocError::NoEligibleHub)
    );
    assert_eq!(
        HubSet::default().allocate(AllocationPolicy::Hashed, &[], "dev"),
        Err(AllocError::NoEligibleHub)
    );
}

#[test]
fn lowest_latency_prefers_the_closest_region() {
    let map = LatencyMap::new()
        .with("eu", "eu", 2_000)
        .with("eu", "us", 90_000)
        .with("us", "us", 3_000)
        .with("us", "eu", 90_000);
    let hubs = vec![
        hub(0, 1, true).with_region("eu"),
        hub(1, 1, true).with_region("eu"),
        hub(2, 1, true).with_region("us"),
        hub(3, 1, true),
    ];
    let set = HubSet::builder(hubs)
        .lowest_latency(LowestLatencyConfig::new(map).with_local_region("us"))
        .build();
    let geo = |id: &str, source: Option<&str>| {
        let req = Request::new(AllocationPolicy::GeoLatency, id).with_source_region(source);
        set.allocate_with(&req).map(|h| h.host.as_str().to_owned())
    };
    let mut seen = BTreeSet::new();
    for id in ids(1, 200) {
        let eu = geo(&id, Some("EU")).expect("a hub");
        assert!(eu == name(0) || eu == name(1));
        seen.insert(eu);
        // No source region: this node's region.
        assert_eq!(geo(&id, None).expect("a hub"), name(2));
        // Unknown source region: plain hashing.
        assert_eq!(
            geo(&id, Some("mars")).expect("a hub"),
            hashed(&set, &[], &id).expect("a hub")
        );
    }
    assert_eq!(seen.len(), 2, "ties are spread over both eu hubs");
    // Nothing known about the named hubs' latency: they all rank last, hashing decides.
    let req = Request::new(AllocationPolicy::GeoLatency, "dev-9")
        .with_named(&["hub-3.example.net"])
        .with_source_region(Some("eu"));
    assert_eq!(
        set.allocate_with(&req).map(|h| h.host.as_str()),
        Ok("hub-3.example.net")
    );
}

#[test]
fn same_region_is_close_without_a_latency_map() {
    let hubs = vec![
        hub(0, 1, true).with_region("westeurope"),
        hub(1, 1, true).with_region("eastus"),
    ];
    let set = HubSet::builder(hubs)
        .lowest_latency(LowestLatencyConfig::default().with_local_region("WestEurope"))
        .build();
    for id in ids(2, 50) {
        assert_eq!(
            set.allocate(AllocationPolicy::GeoLatency, &[], &id)
                .map(|h| h.as_str().to_owned()),
            Ok(name(0))
        );
    }
}

#[derive(Debug)]
struct ByLength;

#[derive(Debug, thiserror::Error)]
#[error("no hub for {0}")]
struct Refused(String);

impl Allocator for ByLength {
    fn allocate<'h>(&self, hubs: &'h HubSet, req: &Request<'_>) -> Result<&'h Hub, AllocError> {
        match req.registration_id.len() % 3 {
            0 => hubs.find(&name(0)).ok_or(AllocError::NoEligibleHub),
            1 => Hashed.allocate(hubs, req),
            _ => Err(AllocError::Custom(CustomError::new(Refused(
                req.registration_id.to_owned(),
            )))),
        }
    }
}

#[derive(Debug)]
struct Foreign(Hub);

impl Allocator for Foreign {
    fn allocate<'h>(&self, _: &'h HubSet, _: &Request<'_>) -> Result<&'h Hub, AllocError> {
        // Not one of the set's hubs, merely equal to one.
        Ok(Box::leak(Box::new(self.0.clone())))
    }
}

#[test]
fn custom_allocators_plug_in() {
    let hubs = vec![hub(0, 1, false), hub(1, 1, true), hub(2, 1, true)];
    let plain = HubSet::new(hubs.clone());
    let custom = HubSet::builder(hubs.clone())
        .custom(std::sync::Arc::new(ByLength))
        .build();
    // Without an installed allocator, custom requests are hashed.
    assert_eq!(
        plain.allocate(AllocationPolicy::Custom, &[], "abcd"),
        plain.allocate(AllocationPolicy::Hashed, &[], "abcd")
    );
    assert_eq!(
        custom
            .allocate(AllocationPolicy::Custom, &[], "abc")
            .map(|h| h.as_str().to_owned()),
        Ok(name(0))
    );
    assert_eq!(
        custom.allocate(AllocationPolicy::Custom, &[], "abcd"),
        custom.allocate(AllocationPolicy::Hashed, &[], "abcd")
    );
    let err = custom
        .allocate(AllocationPolicy::Custom, &[], "abcde")
        .expect_err("refused");
    assert_eq!(err.to_string(), "custom allocation failed");
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("no hub for abcde"));
    let foreign = HubSet::builder(hubs)
        .custom(std::sync::Arc::new(Foreign(hub(1, 1, true))))
        .build();
    assert_eq!(
        foreign.allocate(AllocationPolicy::Custom, &[], "x"),
        Err(AllocError::NoEligibleHub)
    );
}

#[test]
fn hashed_among_agrees_with_named_subsets() {
    let set = HubSet::new((0..20).map(|i| hub(i, 1 + i as u32 % 4, i != 7)).collect());
    let named = [name(3), name(7), name(11), name(12)];
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    for id in ids(3, 300) {
        let via_filter = set
            .hashed_among(&id, |h| named.contains(&h.host.as_str()))
            .map(|h| h.host.as_str().to_owned());
        assert_eq!(
            via_filter.ok_or(AllocError::NoEligibleHub),
            hashed(&set, &named, &id)
        );
    }
}

#[test]
fn tables_change_nothing() {
    // Equal weights, mixed weights, a hub left out: with and without tables, same answers.
    for hubs in [
        (0..7).map(|i| hub(i, 3, true)).collect::<Vec<_>>(),
        (0..5).map(|i| hub(i, 1 + i as u32, i != 2)).collect(),
        mixed(12),
    ] {
        let with = HubSet::new(hubs.clone());
        let without = direct(hubs);
        for id in ids(21, 2000) {
            assert_eq!(hashed(&with, &[], &id), hashed(&without, &[], &id));
        }
    }
}

/// Hubs joining and leaving, in a chain of re-preparations that reuse (and so patch) the
/// previous set's tables: every step answers as a set prepared from nothing.
#[test]
fn reused_tables_answer_as_fresh_ones_across_hub_changes() {
    let mut m = LatencyMap::new();
    m.insert_symmetric("r0", "r1", 20_000);
    m.insert_symmetric("r0", "r2", 60_000);
    m.insert_symmetric("r1", "r2", 20_000);
    let latency = LowestLatencyConfig::new(m).with_local_region("r0");
    let prepare = |hubs: &[Hub], previous: Option<&HubSet>| {
        let b = HubSet::builder(hubs.to_vec()).lowest_latency(latency.clone());
        match previous {
            Some(p) => b.reusing(p).build(),
            None => b.build(),
        }
    };
    // A fixed pseudo-random walk of changes (xorshift), over equal and mixed weights.
    let mut state = 0x9e37_79b9_u64;
    let mut next = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for weighted in [false, true] {
        let spec = |i: usize| {
            let weight = if weighted { 1 + (i as u32 * 5) % 7 } else { 2 };
            hub(i, weight, i % 11 != 3).with_region(format!("r{}", i % 3))
        };
        let mut present: Vec<usize> = (0..36).collect();
        let mut fresh_name = 36;
        let mut previous = prepare(&present.iter().map(|&i| spec(i)).collect::<Vec<_>>(), None);
        for step in 0..3 {
            for _ in 0..1 + next(3) {
                present.remove(next(present.len()));
            }
            for _ in 0..next(3) {
                present.push(fresh_name);
                fresh_name += 1;
            }
            let hubs: Vec<Hub> = present.iter().map(|&i| spec(i)).collect();
            let reused = prepare(&hubs, Some(&previous));
            let fresh = prepare(&hubs, None);
            for id in ids(31 + step, 1_500) {
                for source in [None, Some("r1"), Some("r2")] {
                    for policy in [AllocationPolicy::Hashed, AllocationPolicy::GeoLatency] {
                        let req = Request::new(policy, &id).with_source_region(source);
                        assert_eq!(
                            reused
                                .allocate_with(&req)
                                .map(|h| h.host.as_str().to_owned()),
                            fresh
                                .allocate_with(&req)
                                .map(|h| h.host.as_str().to_owned()),
                            "weighted {weighted}, step {step}, {id} from {source:?}"
                        );
                    }
                }
            }
            previous = reused;
        }
    }
}

#[test]
fn duplicate_names_keep_the_first() {
    let set = HubSet::new(vec![hub(0, 3, true), hub(1, 1, true), hub(0, 9, false)]);
    assert_eq!(set.hubs().len(), 2);
    assert_eq!(set.hubs()[0].weight, 3);
    assert!(set.hubs()[0].apply_allocation_policy);
    assert_eq!(set.find("HUB-0.EXAMPLE.NET").map(|h| h.weight), Some(3));
    assert!(set.find("hub-2.example.net").is_none());
}

/// End to end, the documented mapping: these devices land on these hubs on every node, platform
/// and version (changing it moves devices on upgrade).
#[test]
fn the_mapping_is_pinned() {
    let small = HubSet::new((0..3).map(|i| hub(i, 1 + i as u32, true)).collect());
    let large = HubSet::new((0..20).map(|i| hub(i, 1, true)).collect());
    let got: Vec<String> = ["dev-1", "dev-2", "Sensor-42", "a", "b", "c"]
        .iter()
        .flat_map(|id| [hashed(&small, &[], id), hashed(&large, &[], id)])
        .map(Result::unwrap_or_default)
        .collect();
    let want: Vec<String> = [(2, 11), (2, 18), (2, 19), (2, 10), (1, 9), (2, 12)]
        .iter()
        .flat_map(|&(small, large)| [name(small), name(large)])
        .collect();
    assert_eq!(got, want, "update the expectation deliberately");
}
