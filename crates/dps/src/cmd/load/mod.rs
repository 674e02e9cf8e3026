//! `dps load`: a fleet of simulated devices registering against a running DPS, with the
//! throughput and latency it got, optionally next to a same-run baseline (a minimal HTTPS
//! server on the same stack, [`baseline`]) so the figure reads as a ratio to what this
//! machine's TLS and HTTP stack can do at all.
//!
//! [`LoadArgs`] holds the options and refuses combinations that cannot work, [`setup`]
//! creates the fleet's enrollments through the bulk API (and, for X.509, [`pki`]
//! issues the devices' certificates first), [`driver`] runs the bounded
//! worker loop (closed loop or a target rate), [`report`] keeps the HDR histograms and prints
//! text or JSON. Every run is bounded in count and time and targets 127.0.0.1 unless `--host`
//! says otherwise.

mod args;
pub mod baseline;
pub mod driver;
pub mod pki;
pub mod report;
pub mod setup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use dps_client::{Connections, FlowConfig, HttpsFleet, MqttFleet, RegisterOptions, TrustedCa};
use dps_types::{IdScope, RegistrationId};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

pub use self::args::LoadArgs;
use self::args::{TransportArg, connections, cpus};
use self::baseline::Baseline;
use self::driver::{Options, Plan, Target};
use self::report::Stats;
use self::setup::{CaTrust, Fleet};
use crate::output::Output;

/// Runs the load (and the baseline) and prints the report.
pub async fn run(
    args: LoadArgs,
    connection_string: &Option<String>,
    ca: Option<TrustedCa>,
    out: Output,
) -> Result<()> {
    let attestation = args.checked()?;
    let scope = args.scope.as_deref().unwrap_or("0ne00000001");
    let scope = IdScope::new(scope).with_context(|| format!("invalid --scope '{scope}'"))?;
    let mut fleet = Fleet::new(
        &args.prefix,
        args.devices,
        args.groups,
        attestation,
        &args.secret,
    );
    let mut text = format!("dps load: {}\n", args.describe());
    let mut report = json!({"config": args.describe()});
    let issuing = Instant::now();
    if let Some(ca) = fleet.issue_certificates()? {
        let elapsed = issuing.elapsed().as_secs_f64();
        text += &format!(
            "x509: {} device certificates issued in {elapsed:.2} s\n",
            args.devices
        );
        report["x509"] = json!({"certificates": args.devices, "elapsed_s": elapsed});
        if let Some(path) = &args.x509_ca_pem {
            std::fs::write(path, ca)
                .with_context(|| format!("writing the CA certificate to {}", path.display()))?;
            text += &format!("x509: CA certificate written to {}\n", path.display());
        }
    }
    let fleet = Arc::new(fleet);
    let device_fleet = fleet.clone();
    let mut flow = FlowConfig::default();
    flow.min_retry_after = Duration::ZERO;
    if let Some(ms) = args.poll_after_ms {
        flow.min_retry_after = Duration::from_millis(ms);
        flow.max_retry_after = flow.min_retry_after;
    }
    let options: Arc<Options> = Arc::new(move |i| {
        let (rid, credential) = device_fleet.device(i)?;
        let rid = RegistrationId::new(&rid).with_context(|| format!("invalid id '{rid}'"))?;
        let mut o = RegisterOptions::new("", scope.clone(), rid, credential);
        o.flow = flow.clone();
        Ok(o)
    });
    let progress = if out.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")?
                .progress_chars("=> "),
        )
    };
    let plan = args.plan();

    let baseline = if args.baseline || args.baseline_only {
        let stats = measure_baseline(&args, plan, options.clone(), &progress).await?;
        text += &format!(
            "baseline (minimal hyper + rustls server, same client):\n{}",
            stats.text()
        );
        report["baseline"] = stats.json();
        Some(stats)
    } else {
        None
    };
    if !args.baseline_only {
        let host = args.host.clone().unwrap_or_else(|| match args.transport {
            TransportArg::Https => "127.0.0.1:8443".into(),
            TransportArg::Mqtt => "127.0.0.1:8883".into(),
        });
        if !args.no_setup {
            progress.set_message("setup");
            let svc = super::service(connection_string, ca.clone())?;
            let trust = args
                .x509_ca_name
                .clone()
                .map_or(CaTrust::Upload, CaTrust::ScopeCa);
            let done = setup::create_enrollments(&svc, &fleet, &trust).await?;
            text += &format!(
                "setup: {} {} created or replaced in {:.2} s\n",
                done.items,
                if attestation.is_group() {
                    "groups"
                } else {
                    "enrollments"
                },
                done.elapsed.as_secs_f64()
            );
            report["setup"] = json!({"items": done.items, "elapsed_s": done.elapsed.as_secs_f64()});
        }
        let target = Arc::new(match args.transport {
            TransportArg::Https => Target::Https(Box::new(
                HttpsFleet::new(&host, ca.as_ref(), connections(args.connections)).await?,
            )),
            TransportArg::Mqtt => Target::Mqtt(Box::new(MqttFleet::new(&host, ca.as_ref())?)),
        });
        let mut passes = Vec::new();
        for pass in 1..=args.passes {
            progress.set_message(format!("pass {pass}"));
            let stats = driver::drive(plan, target.clone(), options.clone(), &progress).await?;
            text += &format!("{host} pass {pass}:\n{}", stats.text());
            let mut j = stats.json();
            if let Some(b) = &baseline {
                let r = ratio(&stats, b);
                text += &format!("  ratio to baseline: {r:.3}\n");
                j["ratio_to_baseline"] = json!(r);
            }
            passes.push(j);
        }
        report["passes"] = Value::Array(passes);
    }
    progress.finish_and_clear();
    out.load_report(&text, &report)
}

/// Registrations per second over baseline requests per second.
fn ratio(run: &Stats, baseline: &Stats) -> f64 {
    let b = baseline.rate();
    if b > 0.0 { run.rate() / b } else { 0.0 }
}

/// Runs the plan against a fresh baseline server, with the connection mode of the real run
/// (a new connection per device for MQTT, whose devices each have their own) and the same
/// devices: X.509 devices present their certificates to it.
async fn measure_baseline(
    args: &LoadArgs,
    plan: Plan,
    options: Arc<Options>,
    progress: &ProgressBar,
) -> Result<Stats> {
    progress.set_message("baseline");
    let threads = args.baseline_threads.map_or_else(cpus, |t| t as usize);
    // The server's runtime is started from a blocking thread: not from inside this one.
    let server = tokio::task::spawn_blocking(move || Baseline::start(threads))
        .await
        .context("starting the baseline server")??;
    let ca = TrustedCa::Pem(server.ca_pem.clone().into_bytes());
    let conns = match args.transport {
        TransportArg::Mqtt => Connections::PerDevice,
        TransportArg::Https => connections(args.connections),
    };
    let fleet = HttpsFleet::new(&server.addr.to_string(), Some(&ca), conns).await?;
    let stats = driver::drive(
        plan,
        Arc::new(Target::Https(Box::new(fleet))),
        options,
        progress,
    )
    .await;
    server.stop();
    stats
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::args::ConnectionsArg;
    use super::*;
    use crate::{Cli, Command};

    fn load_args(extra: &[&str]) -> LoadArgs {
        let mut argv = vec!["dps", "load"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Load(a) => a,
            _ => panic!("not load"),
        }
    }

    #[test]
    fn defaults_are_bounded() {
        let a = load_args(&["--scope", "0ne00000001"]);
        let p = a.plan();
        assert_eq!((p.count, p.concurrency, p.rate), (1000, 32, None));
        assert_eq!(p.duration, Duration::from_secs(20));
        assert_eq!(a.connections, ConnectionsArg::New);
        let a = load_args(&["--baseline-only", "--devices", "5", "--count", "7"]);
        assert_eq!(a.plan().count, 7);
        assert!(a.scope.is_none(), "the baseline needs no scope");
        for bad in [
            &["load"][..],
            &["load", "--scope", "0ne00000001", "--duration", "0"],
            &["load", "--scope", "0ne00000001", "--concurrency", "100000"],
            &["load", "--baseline", "--baseline-only"],
        ] {
            let mut argv = vec!["dps"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn unsupported_combinations_are_refused_before_any_io() {
        let out = Output { json: true };
        let refused = [
            (
                &["--attestation", "x509", "--connections", "keep-alive"][..],
                "one device per connection",
            ),
            (
                &["--attestation", "x509", "--groups", "2"],
                "one enrollment group",
            ),
            (
                &["--attestation", "x509-individual", "--no-setup"],
                "--no-setup",
            ),
            (&["--x509-ca-name", "ca"], "for --attestation x509"),
        ];
        for (extra, why) in refused {
            let mut argv = vec!["--scope", "0ne00000001"];
            argv.extend(extra);
            let e = run(load_args(&argv), &None, None, out).await.unwrap_err();
            assert!(e.to_string().contains(why), "{extra:?}: {e}");
        }
        let mqtt = load_args(&[
            "--scope",
            "0ne00000001",
            "--transport",
            "mqtt",
            "--connections",
            "keep-alive",
        ]);
        let e = run(mqtt, &None, None, out).await.unwrap_err();
        assert!(e.to_string().contains("one device per connection"), "{e}");
        let rate = load_args(&["--scope", "0ne00000001", "--rate", "0"]);
        assert!(run(rate, &None, None, out).await.is_err());
    }
}
