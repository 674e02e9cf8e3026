//! Allocation: one lookup under weighted hashing and lowest latency for 1 to 10,000 hubs,
//! preparing a 10,000-hub set (from scratch, and again after a latency change), and one SHA-256
//! of a registration ID as the yardstick (the cheapest thing the registration path already does
//! per device).
//!
//! Lookups cycle through 4,096 registration IDs so that they land on different slots, as real
//! traffic does, instead of one hot cache line.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dps_alloc::{Hub, HubSet, LatencyMap, LowestLatencyConfig, Request, Tolerance};
use dps_types::{AllocationPolicy, HubHostName};
use sha2::{Digest, Sha256};

const SIZES: [usize; 5] = [1, 10, 50, 1_000, 10_000];
const REGIONS: usize = 8;

fn ids() -> Vec<String> {
    (0..4096).map(|i| format!("device-{i:05}-7c1f3a")).collect()
}

fn hubs(n: usize, weighted: bool) -> Vec<Hub> {
    (0..n)
        .map(|i| {
            let Ok(host) = HubHostName::new(&format!("hub-{i:05}.azure-devices.net")) else {
                panic!("bad host name");
            };
            let weight = if weighted { 1 + (i as u32 * 7) % 10 } else { 1 };
            Hub::new(host, weight, true).with_region(format!("region-{}", i % REGIONS))
        })
        .collect()
}

/// Eight regions; region i to region j costs 1 ms + 7 ms * |i - j|.
fn latency() -> LowestLatencyConfig {
    let mut map = LatencyMap::new();
    for i in 0..REGIONS {
        for j in 0..REGIONS {
            let us = 1_000 + 7_000 * i.abs_diff(j) as u32;
            map.insert(&format!("region-{i}"), &format!("region-{j}"), us);
        }
    }
    LowestLatencyConfig::new(map)
        .with_tolerance(Tolerance::percent(10))
        .with_local_region("region-0")
}

fn lookup(c: &mut Criterion) {
    let ids = ids();
    for (name, policy) in [
        ("alloc/hashed", AllocationPolicy::Hashed),
        ("alloc/lowest_latency", AllocationPolicy::GeoLatency),
    ] {
        let mut g = c.benchmark_group(name);
        for n in SIZES {
            let set = HubSet::builder(hubs(n, false))
                .lowest_latency(latency())
                .build();
            let mut k = 0;
            g.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
                b.iter(|| {
                    k = (k + 1) & 4095;
                    let req = Request::new(policy, black_box(&ids[k]));
                    set.allocate_with(&req).map(|h| h.weight)
                });
            });
        }
        g.finish();
    }
    // Weighted hubs (1-10) and an enrollment restricted to three hubs.
    let mut g = c.benchmark_group("alloc/hashed_weighted");
    for n in SIZES {
        let set = HubSet::new(hubs(n, true));
        let mut k = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let req = Request::new(AllocationPolicy::Hashed, black_box(&ids[k]));
                set.allocate_with(&req).map(|h| h.weight)
            });
        });
    }
    g.finish();
    let set = HubSet::new(hubs(10_000, false));
    let named = [
        "hub-00003.azure-devices.net",
        "hub-04242.azure-devices.net",
        "hub-09999.azure-devices.net",
    ];
    let mut k = 0;
    c.bench_function("alloc/hashed_named_3_of_10000", |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            let req = Request::new(AllocationPolicy::Hashed, black_box(&ids[k])).with_named(&named);
            set.allocate_with(&req).map(|h| h.weight)
        });
    });
    // A request from another source region while a staged set has only its first stage: the
    // region's 1,250 hubs are scored directly until the second stage lands.
    let (first, _) = HubSet::builder(hubs(10_000, false))
        .lowest_latency(latency())
        .build_in_stages();
    let mut k = 0;
    c.bench_function(
        "alloc/lowest_latency_10000_from_a_region_without_its_table",
        |b| {
            b.iter(|| {
                k = (k + 1) & 4095;
                let req = Request::new(AllocationPolicy::GeoLatency, black_box(&ids[k]))
                    .with_source_region(Some("region-5"));
                first.allocate_with(&req).map(|h| h.weight)
            });
        },
    );
}

fn rebuild(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc/rebuild_10000");
    g.sample_size(10);
    let equal = hubs(10_000, false);
    let weighted = hubs(10_000, true);
    g.bench_function("hashed", |b| {
        b.iter(|| HubSet::new(black_box(equal.clone())))
    });
    g.bench_function("hashed_weighted", |b| {
        b.iter(|| HubSet::new(black_box(weighted.clone())));
    });
    g.bench_function("hashed_and_lowest_latency", |b| {
        b.iter(|| {
            HubSet::builder(black_box(equal.clone()))
                .lowest_latency(latency())
                .build()
        });
    });
    g.bench_function("hashed_and_lowest_latency_2_threads", |b| {
        b.iter(|| {
            HubSet::builder(black_box(equal.clone()))
                .lowest_latency(latency())
                .threads(2)
                .build()
        });
    });
    // A dpsd node without a client-address table: requests come from its own region only, so
    // only that region's tie set gets a table (plus the full set's).
    g.bench_function("lowest_latency_from_the_local_region_2_threads", |b| {
        b.iter(|| {
            HubSet::builder(black_box(equal.clone()))
                .lowest_latency(latency().with_sources(Vec::<String>::new()))
                .threads(2)
                .build()
        });
    });
    // The same set in two stages: the first serves (every answer final; requests from the
    // seven other source regions scored directly), the second adds their tables.
    let staged = HubSet::builder(equal.clone())
        .lowest_latency(latency())
        .threads(2);
    g.bench_function("lowest_latency_first_stage_2_threads", |b| {
        b.iter(|| black_box(staged.clone()).build_in_stages().0);
    });
    let Some(second) = staged.clone().build_in_stages().1 else {
        panic!("the second stage has tables to build");
    };
    g.bench_function("lowest_latency_second_stage_2_threads", |b| {
        b.iter(|| black_box(second.clone()).build());
    });
    // What a latency probe does when the figures change: same hubs, new tie sets.
    let previous = HubSet::builder(equal.clone())
        .lowest_latency(latency())
        .build();
    g.bench_function("lowest_latency_after_a_latency_change", |b| {
        b.iter(|| {
            HubSet::builder(black_box(equal.clone()))
                .lowest_latency(latency().with_tolerance(Tolerance::percent(11)))
                .reusing(&previous)
                .build()
        });
    });
    // A hub added to one region: that region's table and the full set's are patched (on two
    // threads), the other seven are carried over.
    let mut grown = equal.clone();
    let Ok(host) = HubHostName::new("hub-10000.azure-devices.net") else {
        panic!("bad host name");
    };
    grown.push(Hub::new(host, 1, true).with_region("region-3"));
    g.bench_function("lowest_latency_after_adding_a_hub_2_threads", |b| {
        b.iter(|| {
            HubSet::builder(black_box(grown.clone()))
                .lowest_latency(latency())
                .reusing(&previous)
                .threads(2)
                .build()
        });
    });
    // A hub removed from one region: the same two tables are patched, rescoring only the slots
    // the hub owned.
    let shrunk: Vec<Hub> = equal
        .iter()
        .filter(|h| h.host.as_str() != "hub-00005.azure-devices.net")
        .cloned()
        .collect();
    assert_eq!(shrunk.len(), equal.len() - 1);
    g.bench_function("lowest_latency_after_removing_a_hub_2_threads", |b| {
        b.iter(|| {
            HubSet::builder(black_box(shrunk.clone()))
                .lowest_latency(latency())
                .reusing(&previous)
                .threads(2)
                .build()
        });
    });
    g.finish();
}

fn baseline(c: &mut Criterion) {
    let ids = ids();
    let mut k = 0;
    c.bench_function("alloc/sha256_registration_id", |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            Sha256::digest(black_box(ids[k].as_bytes()))
        });
    });
}

criterion_group!(benches, baseline, lookup, rebuild);
criterion_main!(benches);
