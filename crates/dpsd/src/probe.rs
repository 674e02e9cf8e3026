//! Latency probes: every interval (jittered), dpsd opens a TCP connection to each linked hub's
//! host and times the handshake. The fastest hub of each region gives this node's latency to
//! that region (smoothed over rounds); when the rounded figures change, the scope's hub set is
//! prepared again on a blocking thread, off the registration path, and swapped in. Hubs that do
//! not answer leave their region's configured latency (if any) in place. Off unless
//! `[allocation.probe] enabled = true`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use dps_alloc::{Hub, HubSet, LatencyMap, LowestLatencyConfig};
use dps_service::SharedHubSet;
use tokio::time::{Instant, timeout};

use crate::alloc_config::ProbeSection;

/// One scope whose hub set follows the probes.
pub struct Target {
    pub id_scope: String,
    pub shared: SharedHubSet,
    pub hubs: Vec<Hub>,
    /// The configured lowest-latency settings, with this node's region as the local region.
    pub base: LowestLatencyConfig,
}

/// Smoothing of measurements: each round moves the estimate a third of the way.
const SMOOTHING: u64 = 3;
/// Published latencies are rounded to this many µs, so that noise does not re-prepare sets.
const GRANULE_US: u64 = 1_000;

/// Probes until `stop` completes.
pub async fn run(targets: Vec<Target>, cfg: ProbeSection, stop: impl Future<Output = ()>) {
    if targets.is_empty() {
        return;
    }
    tokio::pin!(stop);
    let mut state = State::default();
    loop {
        round(&targets, &cfg, &mut state).await;
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(jittered(&cfg)) => {}
        }
    }
}

fn jittered(cfg: &ProbeSection) -> Duration {
    let base = Duration::from_secs(cfg.interval_secs.max(1));
    let spread = u64::from(cfg.jitter_percent.min(100));
    if spread == 0 {
        return base;
    }
    let percent = rand::random_range(100 - spread..=100 + spread);
    base * u32::try_from(percent).unwrap_or(100) / 100
}

/// Smoothed latency per (scope, region) and what was last published per scope.
#[derive(Default)]
pub struct State {
    smoothed: BTreeMap<(String, String), u64>,
    published: BTreeMap<String, BTreeMap<String, u32>>,
}

/// One probe round over every target; returns how many hub sets were swapped.
pub async fn round(targets: &[Target], cfg: &ProbeSection, state: &mut State) -> usize {
    let hosts: BTreeSet<String> = targets
        .iter()
        .flat_map(|t| t.hubs.iter().map(|h| h.host.as_str().to_ascii_lowercase()))
        .collect();
    let limit = Duration::from_millis(cfg.timeout_ms.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        // A hub host name may carry its port (`host:port`).
        let (name, port) = match host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((h, Ok(p))) => (h.to_owned(), p),
            _ => (host.clone(), cfg.port),
        };
        tasks.spawn(async move {
            let start = Instant::now();
            let ok = matches!(
                timeout(limit, tokio::net::TcpStream::connect((name.as_str(), port))).await,
                Ok(Ok(_))
            );
            (host, ok.then(|| start.elapsed()))
        });
    }
    let mut measured = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((host, Some(d))) = r {
            measured.insert(host, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        }
    }
    let mut swapped = 0;
    for t in targets {
        let Some(local) = t.base.local_region.clone() else {
            continue;
        };
        // The fastest hub of each region.
        let mut best: BTreeMap<String, u64> = BTreeMap::new();
        for h in &t.hubs {
            if let (Some(region), Some(&us)) = (
                &h.region,
                measured.get(&h.host.as_str().to_ascii_lowercase()),
            ) {
                let e = best.entry(region.to_ascii_lowercase()).or_insert(us);
                *e = (*e).min(us);
            }
        }
        let mut now: BTreeMap<String, u32> = BTreeMap::new();
        for (region, us) in best {
            let s = state
                .smoothed
                .entry((t.id_scope.clone(), region.clone()))
                .or_insert(us);
            *s = (*s * (SMOOTHING - 1) + us) / SMOOTHING;
            let rounded = (*s).div_ceil(GRANULE_US) * GRANULE_US;
            now.insert(region, u32::try_from(rounded).unwrap_or(u32::MAX));
        }
        if now.is_empty() || state.published.get(&t.id_scope) == Some(&now) {
            continue;
        }
        let mut latency: LatencyMap = t.base.latency.clone();
        for (region, us) in &now {
            latency.insert_symmetric(&local, region, *us);
        }
        let mut config = t.base.clone();
        config.latency = latency;
        let hubs = t.hubs.clone();
        let previous = t.shared.load();
        let built = tokio::task::spawn_blocking(move || {
            HubSet::builder(hubs)
                .hashed(previous.hashed_config())
                .lowest_latency(config)
                .reusing(&previous)
                .threads(crate::alloc_config::table_threads())
                .build()
        })
        .await;
        if let Ok(set) = built {
            t.shared.store(set);
            tracing::info!(id_scope = %t.id_scope, latency_us = ?now, "hub latencies measured; hub set updated");
            state.published.insert(t.id_scope.clone(), now);
            swapped += 1;
        }
    }
    swapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_alloc::Hub;
    use dps_types::{AllocationPolicy, HubHostName};

    fn hub(name: &str, region: &str) -> Hub {
        Hub::new(HubHostName::new(name).unwrap(), 1, true).with_region(region)
    }

    #[tokio::test]
    async fn a_round_measures_reachable_hubs_and_swaps_the_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let hubs = vec![
            hub(&format!("127.0.0.1:{port}"), "near"),
            hub("far.invalid", "far"),
        ];
        let base = LowestLatencyConfig::new(LatencyMap::new().with("here", "far", 1))
            .with_local_region("here");
        let shared = SharedHubSet::new(
            HubSet::builder(hubs.clone())
                .lowest_latency(base.clone())
                .build(),
        );
        let target = Target {
            id_scope: "0ne00000001".into(),
            shared: shared.clone(),
            hubs,
            base,
        };
        // From "here", only "far" is known (1 µs): every device goes there.
        let req = dps_alloc::Request::new(AllocationPolicy::GeoLatency, "dev-1");
        assert_eq!(
            shared.load().allocate_with(&req).unwrap().host.as_str(),
            "far.invalid"
        );

        let cfg = ProbeSection {
            enabled: true,
            timeout_ms: 2_000,
            ..ProbeSection::default()
        };
        let mut state = State::default();
        assert_eq!(
            round(std::slice::from_ref(&target), &cfg, &mut state).await,
            1
        );
        let set = shared.load();
        let l = &set.lowest_latency_config().unwrap().latency;
        let near = l.latency("here", "near").expect("measured");
        assert!(near >= 1_000 && near.is_multiple_of(1_000), "{near}");
        // The unreachable hub keeps its configured figure.
        assert_eq!(l.latency("here", "far"), Some(1));
        // A second round with the same rounded figure swaps nothing.
        let again = round(std::slice::from_ref(&target), &cfg, &mut state).await;
        assert!(again <= 1);
        accept.abort();

        let j = jittered(&ProbeSection {
            interval_secs: 10,
            jitter_percent: 20,
            ..cfg
        });
        assert!(
            j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
            "{j:?}"
        );
    }
}
