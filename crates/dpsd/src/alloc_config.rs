//! The allocation part of dpsd's configuration: this node's region, latency between regions,
//! client-address blocks → source regions, latency probes (`[allocation]`), hub regions
//! (`[[scope.hub]] region`) and the custom-allocation webhook client (`[scope.custom_allocation]`),
//! and how they become a scope's prepared hubs, source-region table and custom allocator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dps_alloc::{
    Cidr, HubSet, HubSetBuilder, LatencyMap, LowestLatencyConfig, SourceRegions, Tolerance,
};
use dps_connect::webhook::{WebhookAllocator, WebhookConfig};
use dps_service::{ScopeConfig, SharedHubSet};
use dps_types::HubHostName;
use serde::{Deserialize, Serialize};

use crate::probe::Target;

/// `[allocation]`: what lowest latency knows, for every scope of this node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationSection {
    /// This node's region: lowest latency measures from it when the client address maps to no
    /// source region, and probes measure from it.
    #[serde(default)]
    pub region: Option<String>,
    /// Hubs within this percentage of the lowest latency tie (default 10).
    #[serde(default)]
    pub tolerance_percent: Option<u32>,
    /// ... or within this many milliseconds, whichever is larger (default 0).
    #[serde(default)]
    pub tolerance_ms: u32,
    /// Configured latency between regions.
    #[serde(default)]
    pub latency: Vec<LatencyEntry>,
    /// Client address blocks and the region they are in.
    #[serde(default)]
    pub source_region: Vec<SourceRegionEntry>,
    /// Periodic TCP-connect probes from this node to each hub.
    #[serde(default)]
    pub probe: ProbeSection,
}

/// `[[allocation.latency]]`: the latency from one region to another.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyEntry {
    pub from: String,
    pub to: String,
    pub ms: u32,
    /// Also from `to` to `from` (default true).
    #[serde(default = "yes")]
    pub symmetric: bool,
}

/// `[[allocation.source_region]]`: clients in `cidr` are in `region`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRegionEntry {
    pub cidr: String,
    pub region: String,
}

/// `[allocation.probe]`: TCP-connect probes (off unless enabled).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between rounds (default 60), each jittered by up to `jitter_percent`.
    #[serde(default = "sixty")]
    pub interval_secs: u64,
    #[serde(default = "twenty")]
    pub jitter_percent: u32,
    /// Budget of one connection attempt (default 2000 ms).
    #[serde(default = "two_thousand")]
    pub timeout_ms: u64,
    /// The port connected to on each hub host (default 443).
    #[serde(default = "https_port")]
    pub port: u16,
}

impl Default for ProbeSection {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: sixty(),
            jitter_percent: twenty(),
            timeout_ms: two_thousand(),
            port: https_port(),
        }
    }
}

/// `[scope.custom_allocation]`: the webhook client of the scope (defaults as Azure's).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAllocationSection {
    /// The webhook of enrollments without a `customAllocationDefinition`.
    #[serde(default)]
    pub url: Option<String>,
    /// Budget of one attempt (default 30 s).
    #[serde(default = "thirty")]
    pub timeout_secs: u64,
    /// Retries after 429, 5xx, timeouts (default 10), waiting `retry_initial_ms` (1000) and
    /// then `retry_increment_ms` (9000) more each time, within `deadline_secs` (60) in all.
    #[serde(default = "ten")]
    pub retries: u32,
    #[serde(default = "thousand")]
    pub retry_initial_ms: u64,
    #[serde(default = "nine_thousand")]
    pub retry_increment_ms: u64,
    #[serde(default = "sixty")]
    pub deadline_secs: u64,
    /// A PEM file of CA certificates trusted for webhooks besides the system's.
    #[serde(default)]
    pub trust_root: Option<PathBuf>,
    /// Accept `http://` webhook URLs (default false).
    #[serde(default)]
    pub allow_http: bool,
}

fn yes() -> bool {
    true
}
fn ten() -> u32 {
    10
}
fn twenty() -> u32 {
    20
}
fn thirty() -> u64 {
    30
}
fn sixty() -> u64 {
    60
}
fn thousand() -> u64 {
    1_000
}
fn two_thousand() -> u64 {
    2_000
}
fn nine_thousand() -> u64 {
    9_000
}
fn https_port() -> u16 {
    443
}

/// Resolves relative paths of the allocation settings against the config file's directory.
pub fn rebase(cfg: &mut crate::config::Config, base: &Path) {
    for s in &mut cfg.scopes {
        if let Some(p) = s
            .custom_allocation
            .as_mut()
            .and_then(|c| c.trust_root.as_mut())
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

impl AllocationSection {
    /// The lowest-latency configuration (`None` when nothing about regions is configured).
    pub fn lowest_latency(&self, hubs_have_regions: bool) -> Option<LowestLatencyConfig> {
        if self.region.is_none() && self.latency.is_empty() && !hubs_have_regions {
            return None;
        }
        let mut map = LatencyMap::new();
        for l in &self.latency {
            let us = l.ms.saturating_mul(1_000);
            if l.symmetric {
                map.insert_symmetric(&l.from, &l.to, us);
            } else {
                map.insert(&l.from, &l.to, us);
            }
        }
        let tolerance = Tolerance::percent(self.tolerance_percent.unwrap_or(10))
            .at_least_micros(self.tolerance_ms.saturating_mul(1_000));
        // Requests carry the local region or one from the client-address table, nothing else:
        // only those sources' tie groups need tables.
        let mut c = LowestLatencyConfig::new(map)
            .with_tolerance(tolerance)
            .with_sources(self.source_region.iter().map(|e| e.region.clone()));
        c.local_region = self.region.clone();
        Some(c)
    }

    /// The client-address table.
    pub fn source_regions(&self) -> Result<SourceRegions> {
        let mut t = SourceRegions::new();
        for e in &self.source_region {
            let block: Cidr = e
                .cidr
                .parse()
                .with_context(|| "[[allocation.source_region]]")?;
            t.insert(block, e.region.clone());
        }
        Ok(t)
    }
}

/// Completes `sc` (built from `s` by the generic scope code) with the allocation settings:
/// hub regions and lowest latency, source regions, the webhook client, and — with probes on —
/// a swappable hub set, returned as the probe's target.
pub fn apply(
    alloc: &AllocationSection,
    s: &crate::config::Scope,
    sc: &mut ScopeConfig,
) -> Result<Option<Target>> {
    let hubs = s
        .hubs
        .iter()
        .map(|h| {
            let host = HubHostName::new(&h.host_name)
                .with_context(|| format!("hub host_name {:?}", h.host_name))?;
            let hub = dps_alloc::Hub::new(host, h.allocation_weight, h.apply_allocation_policy);
            Ok(match &h.region {
                Some(r) => hub.with_region(r.clone()),
                None => hub,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let probe_region = match (alloc.probe.enabled, &alloc.region) {
        (false, _) => None,
        (true, Some(region)) => Some(region.clone()),
        (true, None) => bail!(
            "[allocation.probe] enabled needs [allocation] region (where probes measure from)"
        ),
    };
    let source_regions = Arc::new(alloc.source_regions()?);
    let custom_allocator = webhook(s)?;
    let latency = alloc.lowest_latency(hubs.iter().any(|h| h.region.is_some()));
    let mut builder = HubSet::builder(hubs.clone()).threads(table_threads());
    if let Some(l) = latency.clone() {
        builder = builder.lowest_latency(l);
    }
    // Serve as soon as hashing and the local region have their tables; the other source
    // regions' follow (their answers are the same meanwhile, only slower).
    let (first, rest) = builder.build_in_stages();
    sc.hubs = first;
    sc.source_regions = source_regions;
    sc.custom_allocator = custom_allocator;
    let live =
        (probe_region.is_some() || rest.is_some()).then(|| SharedHubSet::new(sc.hubs.clone()));
    sc.live_hubs = live.clone();
    if let (Some(rest), Some(shared)) = (rest, &live) {
        complete_in_background(&s.id_scope, rest, shared.clone());
    }
    let (Some(region), Some(shared)) = (probe_region, live) else {
        return Ok(None);
    };
    Ok(Some(Target {
        id_scope: s.id_scope.clone(),
        shared,
        hubs,
        base: latency.unwrap_or_default().with_local_region(region),
    }))
}

/// Prepares the second stage of a scope's hub set on a thread of its own and swaps it in,
/// unless a newer set (a probe round's) was stored meanwhile.
fn complete_in_background(id_scope: &str, rest: HubSetBuilder, shared: SharedHubSet) {
    let version = shared.version();
    let id = id_scope.to_owned();
    let spawned = std::thread::Builder::new()
        .name("dps-hub-tables".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            let set = rest.build();
            if shared.store_if(version, set) {
                let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                tracing::info!(id_scope = %id, ms, "hub set: every source region's tables ready");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(%id_scope, error = %e, "hub set: other source regions stay scored directly");
    }
}

/// The scope's webhook client. Without a `[scope.custom_allocation]` section a default client
/// (system roots, Azure's timeouts) is still installed when the system has trust roots.
fn webhook(s: &crate::config::Scope) -> Result<Option<Arc<dyn dps_service::CustomAllocator>>> {
    let Some(c) = &s.custom_allocation else {
        return Ok(match WebhookAllocator::new(WebhookConfig::default()) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                tracing::warn!(id_scope = %s.id_scope, error = %e, "no custom allocation webhook client: custom registrations will fail");
                None
            }
        });
    };
    let mut w = WebhookConfig::default();
    w.default_url = c.url.clone();
    w.timeout = Duration::from_secs(c.timeout_secs.max(1));
    w.retries = c.retries;
    w.retry_initial = Duration::from_millis(c.retry_initial_ms);
    w.retry_increment = Duration::from_millis(c.retry_increment_ms);
    w.deadline = Duration::from_secs(c.deadline_secs);
    w.allow_http = c.allow_http;
    if let Some(p) = &c.trust_root {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        w = w
            .with_extra_roots_pem(&pem)
            .with_context(|| format!("scope {}: {}", s.id_scope, p.display()))?;
    }
    let w = WebhookAllocator::new(w).with_context(|| format!("scope {}", s.id_scope))?;
    Ok(Some(Arc::new(w)))
}

/// Threads that build a hub set's lookup tables: one per CPU (the tables of a large
/// lowest-latency set are built in parallel at start; the threads end with the build).
pub fn table_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_settings_parse_and_build() {
        let cfg: crate::config::Config = toml::from_str(
            r#"
[allocation]
region = "westeurope"
tolerance_percent = 5
[[allocation.latency]]
from = "westeurope"
to = "eastus"
ms = 80
[[allocation.source_region]]
cidr = "198.51.100.0/24"
region = "eastus"
[allocation.probe]
enabled = true
interval_secs = 30

[[scope]]
id_scope = "0ne00000001"
[[scope.hub]]
host_name = "eu.example.net"
region = "westeurope"
[[scope.hub]]
host_name = "us.example.net"
region = "eastus"
[scope.custom_allocation]
url = "https://alloc.example.net/api/f?code=k"
timeout_secs = 5
"#,
        )
        .unwrap();
        let a = &cfg.allocation;
        assert_eq!(a.probe.interval_secs, 30);
        assert_eq!(a.probe.port, 443);
        let s = &cfg.scopes[0];
        assert_eq!(s.custom_allocation.as_ref().unwrap().retries, 10);
        let mut sc = ScopeConfig::new(dps_types::IdScope::new("0ne00000001").unwrap(), "h");
        let target = apply(a, s, &mut sc).unwrap().expect("probes on");
        assert_eq!(target.hubs.len(), 2);
        let l = sc.hubs.lowest_latency_config().unwrap();
        assert_eq!(l.latency.latency("eastus", "westeurope"), Some(80_000));
        assert_eq!(l.local_region.as_deref(), Some("westeurope"));
        assert_eq!(l.sources.as_deref(), Some(&["eastus".to_owned()][..]));
        assert_eq!(
            sc.source_regions.region_of("198.51.100.9".parse().unwrap()),
            Some("eastus")
        );
        assert!(sc.live_hubs.is_some() && sc.custom_allocator.is_some());
        let req = dps_alloc::Request::new(dps_types::AllocationPolicy::GeoLatency, "d")
            .with_source_region(Some("eastus"));
        assert_eq!(
            sc.current_hubs().allocate_with(&req).unwrap().host.as_str(),
            "us.example.net"
        );

        // Probes without a node region, and bad blocks, are refused.
        let mut bad = a.clone();
        bad.region = None;
        assert!(apply(&bad, s, &mut sc).is_err());
        let mut bad = a.clone();
        bad.source_region[0].cidr = "198.51.100.0/99".into();
        assert!(apply(&bad, s, &mut sc).is_err());
        assert!(toml::from_str::<crate::config::Config>("[allocation]\nregio = \"x\"\n").is_err());
    }

    #[test]
    fn other_source_regions_get_their_tables_in_the_background() {
        let mut toml = String::from(
            r#"
[allocation]
region = "r0"
[[allocation.latency]]
from = "r0"
to = "r1"
ms = 40
[[allocation.latency]]
from = "r0"
to = "r2"
ms = 80
[[allocation.latency]]
from = "r1"
to = "r2"
ms = 40
[[allocation.source_region]]
cidr = "10.1.0.0/16"
region = "r1"
[[allocation.source_region]]
cidr = "10.2.0.0/16"
region = "r2"

[[scope]]
id_scope = "0ne00000001"
"#,
        );
        for i in 0..30 {
            toml += &format!(
                "[[scope.hub]]\nhost_name = \"h{i}.example.net\"\nregion = \"r{}\"\n",
                i % 3
            );
        }
        let cfg: crate::config::Config = toml::from_str(&toml).unwrap();
        let (a, s) = (&cfg.allocation, &cfg.scopes[0]);
        let mut sc = ScopeConfig::new(dps_types::IdScope::new("0ne00000001").unwrap(), "h");
        assert!(apply(a, s, &mut sc).unwrap().is_none(), "no probes");
        let shared = sc.live_hubs.clone().expect("a second stage to swap in");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared.version() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the second stage never landed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Every stage answers as a set prepared at once.
        let hubs = sc.hubs.hubs().to_vec();
        let whole = HubSet::builder(hubs)
            .lowest_latency(a.lowest_latency(true).unwrap())
            .build();
        for i in 0..500 {
            let id = format!("device-{i}");
            for source in [None, Some("r1"), Some("r2")] {
                let req = dps_alloc::Request::new(dps_types::AllocationPolicy::GeoLatency, &id)
                    .with_source_region(source);
                let want = whole.allocate_with(&req).unwrap().host.as_str();
                assert_eq!(sc.hubs.allocate_with(&req).unwrap().host.as_str(), want);
                assert_eq!(
                    sc.current_hubs().allocate_with(&req).unwrap().host.as_str(),
                    want
                );
            }
        }
        // Without other source regions there is nothing to complete.
        let mut local = a.clone();
        local.source_region.clear();
        let mut sc = ScopeConfig::new(dps_types::IdScope::new("0ne00000001").unwrap(), "h");
        apply(&local, s, &mut sc).unwrap();
        assert!(sc.live_hubs.is_none());
    }
}
