//! The bounded worker loop: `concurrency` tasks take registration numbers from one counter
//! until `count` registrations were started or the run's duration is over, each registration
//! bounded by [`REGISTRATION_TIMEOUT`].
//!
//! Closed loop (no `--rate`): each worker starts its next registration as soon as the last one
//! ended. Open loop (`--rate R`): registration `i` is due at `start + i / R`, whether or not
//! earlier ones have finished; when every worker is busy it starts late, and its latencies are
//! counted from when it was due, so a slow server cannot hide its queueing (coordinated
//! omission). Starts more than a millisecond late are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use dps_client::{HttpsFleet, MqttFleet, RegisterOptions, Timings};
use indicatif::ProgressBar;

use super::report::{Stats, error_kind};

/// The longest one registration may take before it is counted as a `timeout`.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A start more than this late counts as late.
const LATE: Duration = Duration::from_millis(1);

/// How many registrations to run, how fast and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Registrations to start, at most.
    pub count: u64,
    /// No registration starts after this much time.
    pub duration: Duration,
    /// Registrations in flight, at most.
    pub concurrency: usize,
    /// Target starts per second (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
}

/// Where registrations go: one prepared client for every device (TLS configuration and
/// roots parsed once), so HTTPS and MQTT are measured alike.
#[derive(Debug)]
pub enum Target {
    /// HTTPS through one [`HttpsFleet`] (new or kept-alive connections).
    Https(Box<HttpsFleet>),
    /// MQTT over TLS through one [`MqttFleet`], a new connection per device (MQTT
    /// authenticates the connection).
    Mqtt(Box<MqttFleet>),
}

impl Target {
    /// One registration: its timings.
    async fn register(&self, opts: RegisterOptions) -> Result<Timings, dps_client::Error> {
        let registered = match self {
            Self::Https(fleet) => fleet.register(&opts).await,
            Self::Mqtt(fleet) => fleet.register(&opts).await,
        };
        registered.map(|(_, t)| t)
    }
}

/// Builds registration `i`'s options.
pub type Options = dyn Fn(u64) -> Result<RegisterOptions> + Send + Sync;

/// Runs `plan` against `target`, advancing `progress` (its length is set here).
pub async fn drive(
    plan: Plan,
    target: Arc<Target>,
    options: Arc<Options>,
    progress: &ProgressBar,
) -> Result<Stats> {
    progress.set_length(plan.count);
    progress.set_position(0);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency.max(1) {
        let (next, done) = (next.clone(), done.clone());
        let (target, options) = (target.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.count {
                    break;
                }
                // Closed loop: due now, never late.
                let mut lag = Duration::ZERO;
                if let Some(rate) = plan.rate {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    lag = Instant::now().saturating_duration_since(due);
                    if lag > LATE {
                        stats.late += 1;
                    }
                } else if Instant::now() >= deadline {
                    break;
                }
                let opts = options(i)?;
                let r = tokio::time::timeout(REGISTRATION_TIMEOUT, target.register(opts)).await;
                match r {
                    Ok(Ok(t)) => stats.record(Timings {
                        register: t.register + lag,
                        total: t.total + lag,
                    }),
                    Ok(Err(e)) => stats.fail(error_kind(&e), || format!("{e:#}")),
                    Err(_) => stats.fail("timeout".into(), || {
                        format!("no answer within {} s", REGISTRATION_TIMEOUT.as_secs())
                    }),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            stats.finished = Some(Instant::now());
            Ok::<_, anyhow::Error>(stats)
        }));
    }
    let ticker = {
        let (done, progress) = (done.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                progress.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut total = Stats::new();
    let mut result = Ok(());
    for w in workers {
        match w.await.context("a load worker panicked") {
            Ok(Ok(stats)) => total.merge(stats),
            Ok(Err(e)) | Err(e) => result = Err(e),
        }
    }
    ticker.abort();
    progress.set_position(done.load(Ordering::Relaxed));
    result?;
    total.elapsed = total
        .finished
        .map_or(Duration::ZERO, |f| f.saturating_duration_since(start));
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dps_client::{Connections, Credential, TrustedCa};
    use dps_types::{IdScope, RegistrationId};

    use super::super::baseline::Baseline;
    use super::*;

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    fn options() -> Arc<Options> {
        Arc::new(|i| {
            Ok(RegisterOptions::new(
                "",
                IdScope::new("0ne00000001")?,
                RegistrationId::new(&format!("dev-{i}"))?,
                Credential::SymmetricKey(KEY.into()),
            ))
        })
    }

    async fn baseline_target(connections: Connections) -> (Baseline, Arc<Target>) {
        let server = tokio::task::spawn_blocking(|| Baseline::start(1))
            .await
            .unwrap()
            .unwrap();
        let ca = TrustedCa::Pem(server.ca_pem.clone().into_bytes());
        let fleet = HttpsFleet::new(&server.addr.to_string(), Some(&ca), connections)
            .await
            .unwrap();
        (server, Arc::new(Target::Https(Box::new(fleet))))
    }

    fn plan(count: u64, rate: Option<f64>, duration_ms: u64) -> Plan {
        Plan {
            count,
            duration: Duration::from_millis(duration_ms),
            concurrency: 4,
            rate,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_registers_every_device_in_both_connection_modes() {
        for connections in [Connections::PerDevice, Connections::KeepAlive] {
            let (server, target) = baseline_target(connections).await;
            let bar = ProgressBar::hidden();
            let s = drive(plan(40, None, 20_000), target, options(), &bar)
                .await
                .unwrap();
            server.stop();
            assert_eq!((s.ok, s.failed), (40, 0), "{connections:?}: {:?}", s.errors);
            assert_eq!(bar.position(), 40);
            let register = &s.register;
            assert_eq!((register.len(), s.total.len()), (40, 40));
            assert!(register.percentiles()[4] <= s.total.percentiles()[4]);
            assert!(s.elapsed > Duration::ZERO && s.rate() > 0.0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_holds_the_rate_and_duration_bounds_the_run() {
        let (server, target) = baseline_target(Connections::KeepAlive).await;
        let bar = ProgressBar::hidden();
        // 20 starts at 200/s: the last is due 95 ms after the first.
        let s = drive(
            plan(20, Some(200.0), 20_000),
            target.clone(),
            options(),
            &bar,
        )
        .await
        .unwrap();
        assert_eq!(s.ok, 20);
        assert!(s.elapsed >= Duration::from_millis(95), "{:?}", s.elapsed);
        // A huge count at 100/s for 300 ms: about 30 starts, then the run ends.
        let s = drive(plan(1_000_000, Some(100.0), 300), target, options(), &bar)
            .await
            .unwrap();
        server.stop();
        assert!((25..=31).contains(&s.ok), "{} registrations", s.ok);
        assert!(s.elapsed < Duration::from_secs(5), "{:?}", s.elapsed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_counted_by_kind() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fleet = HttpsFleet::new(&format!("127.0.0.1:{port}"), None, Connections::PerDevice)
            .await
            .unwrap();
        let bar = ProgressBar::hidden();
        let s = drive(
            plan(6, None, 20_000),
            Arc::new(Target::Https(Box::new(fleet))),
            options(),
            &bar,
        )
        .await
        .unwrap();
        assert_eq!((s.ok, s.failed), (0, 6));
        assert_eq!(s.errors["connect"].count, 6, "{:?}", s.errors);
        assert_eq!(s.total.len(), 0);
    }
}
