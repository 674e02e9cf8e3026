//! `dps load`: a fleet of simulated devices registering against a running DPS, with the
//! throughput and latency it got, optionally next to a same-run baseline (a minimal HTTPS
//! server on the same stack, [`baseline`]) so the figure reads as a ratio to what this
//! machine's TLS and HTTP stack can do at all.
//!
//! [`setup`] creates the fleet's enrollments through the bulk API (and, for X.509, [`pki`]
//! issues the devices' certificates first), [`driver`] runs the bounded
//! worker loop (closed loop or a target rate), [`report`] keeps the HDR histograms and prints
//! text or JSON. Every run is bounded in count and time and targets 127.0.0.1 unless `--host`
//! says otherwise.

pub mod baseline;
pub mod driver;
pub mod pki;
pub mod report;
pub mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use dps_client::{Connections, FlowConfig, HttpsFleet, MqttFleet, RegisterOptions, TrustedCa};
use dps_types::{IdScope, RegistrationId};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use self::baseline::Baseline;
use self::driver::{Options, Plan, Target};
use self::report::Stats;
use self::setup::{Attestation, CaTrust, Fleet};
use crate::output::Output;

/// The most X.509 devices a run issues certificates to (about 3 KB of memory and 0.1 ms of
/// set-up each).
const MAX_X509_DEVICES: u64 = 100_000;

/// `dps load`'s options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Device endpoint [default: 127.0.0.1:8443 for https, 127.0.0.1:8883 for mqtt]
    #[arg(long, value_name = "HOST[:PORT]")]
    host: Option<String>,
    /// ID scope of the DPS instance (dpsd prints it)
    #[arg(long, required_unless_present = "baseline_only")]
    scope: Option<String>,
    /// Protocol the devices register over
    #[arg(long, value_enum, default_value_t = TransportArg::Https)]
    transport: TransportArg,
    /// How the devices prove who they are
    #[arg(long, value_enum, default_value_t = AttestationArg::Individual)]
    attestation: AttestationArg,
    /// Enrollment groups the devices are spread over (--attestation group; x509 uses one)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    groups: u64,
    /// Simulated devices
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    devices: u64,
    /// Registrations per pass, at most [default: --devices]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    count: Option<u64>,
    /// Seconds per pass, at most: no registration starts later
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Registrations in flight, at most
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Target registrations per second (open loop); as fast as possible when omitted
    #[arg(long)]
    rate: Option<f64>,
    /// New TLS connection per device (the factory case) or kept-alive connections shared by
    /// all devices (the gateway case; HTTPS with symmetric keys only)
    #[arg(long, value_enum, default_value_t = ConnectionsArg::New)]
    connections: ConnectionsArg,
    /// Passes over the fleet: the first registers the devices, later ones re-register them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    passes: u32,
    /// Do not create the enrollments: an earlier run with the same --prefix, --secret,
    /// --devices, --attestation and --groups did (not with x509-individual)
    #[arg(long)]
    no_setup: bool,
    /// Registration IDs are PREFIX-0000000, PREFIX-0000001, …; groups PREFIX-group-00000, …
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Secret the devices' and groups' keys (and the X.509 CA's key) are derived from
    #[arg(long, default_value = "dps-load")]
    secret: String,
    /// X.509: write the fleet's CA certificate to this file (to list it in dpsd's config as a
    /// [[scope.ca]] with verified = true)
    #[arg(long, value_name = "FILE")]
    x509_ca_pem: Option<PathBuf>,
    /// X.509: the group trusts the dpsd [[scope.ca]] of this name (caReferences) instead of
    /// uploading the CA certificate (signingCertificates)
    #[arg(long, value_name = "NAME")]
    x509_ca_name: Option<String>,
    /// Poll this many ms after the register answer, whatever Retry-After the server sends
    /// (default: as the server says, without the SDKs' 1 s minimum)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    poll_after_ms: Option<u64>,
    /// Also measure a minimal HTTPS server on the same stack in this run, and report the ratio
    #[arg(long)]
    baseline: bool,
    /// Measure only the baseline server (no DPS needed)
    #[arg(long, conflicts_with = "baseline")]
    baseline_only: bool,
    /// Worker threads of the load generator [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Worker threads of the baseline server [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    baseline_threads: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// HTTPS
    Https,
    /// MQTT 3.1.1 over TLS (a connection per device)
    Mqtt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AttestationArg {
    /// An individual enrollment and key per device
    Individual,
    /// Group members: keys derived from their enrollment group's key
    Group,
    /// X.509 device certificates from one CA, members of one enrollment group trusting it
    X509,
    /// X.509 device certificates, each pinned by an individual enrollment
    X509Individual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConnectionsArg {
    /// A new TLS connection (full handshake) per device
    New,
    /// Kept-alive connections carrying many devices' requests
    KeepAlive,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl LoadArgs {
    /// The runtime the load generator runs on: `--threads` workers.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let threads = self.threads.map_or_else(cpus, |t| t as usize);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }

    fn plan(&self) -> Plan {
        Plan {
            count: self.count.unwrap_or(self.devices),
            duration: Duration::from_secs(self.duration),
            concurrency: self.concurrency as usize,
            rate: self.rate,
        }
    }

    fn describe(&self) -> String {
        let conns = match (self.transport, self.connections) {
            (TransportArg::Mqtt, _) => "a connection per device",
            (_, ConnectionsArg::New) => "a new TLS connection per device",
            (_, ConnectionsArg::KeepAlive) => "kept-alive connections",
        };
        let keys = match self.attestation {
            AttestationArg::Group => format!("group keys ({} groups)", self.groups),
            AttestationArg::Individual => "individual keys".into(),
            AttestationArg::X509 => "x509 certificates (1 group)".into(),
            AttestationArg::X509Individual => "x509 certificates (individual)".into(),
        };
        let pace = self
            .rate
            .map_or("as fast as possible".into(), |r| format!("{r}/s target"));
        format!(
            "{:?} over {conns}, {keys}, {} devices, {} in flight, {pace}",
            self.transport, self.devices, self.concurrency
        )
        .to_lowercase()
    }
}

/// Runs the load (and the baseline) and prints the report.
pub async fn run(
    args: LoadArgs,
    connection_string: &Option<String>,
    ca: Option<TrustedCa>,
    out: Output,
) -> Result<()> {
    let attestation = match args.attestation {
        AttestationArg::Individual => Attestation::Individual,
        AttestationArg::Group => Attestation::Group,
        AttestationArg::X509 => Attestation::X509Group,
        AttestationArg::X509Individual => Attestation::X509Individual,
    };
    if args.transport == TransportArg::Mqtt && args.connections == ConnectionsArg::KeepAlive {
        bail!("MQTT authenticates one device per connection: use --connections new with mqtt");
    }
    if attestation.is_x509() && args.connections == ConnectionsArg::KeepAlive {
        bail!(
            "a TLS client certificate authenticates one device per connection, so X.509 devices \
             cannot share kept-alive connections: use --connections new with x509"
        );
    }
    if attestation.is_x509() && args.devices > MAX_X509_DEVICES {
        bail!(
            "x509 devices get their certificates in memory before the run: at most \
             {MAX_X509_DEVICES} --devices (use --count to register them more often)"
        );
    }
    if attestation == Attestation::X509Group && args.groups != 1 {
        bail!("--attestation x509 uses one enrollment group (its devices share one CA)");
    }
    if attestation == Attestation::X509Individual && args.no_setup {
        bail!(
            "x509-individual enrollments pin certificates issued in this run: it cannot \
             reuse an earlier run's (--no-setup)"
        );
    }
    if args.x509_ca_name.is_some() && attestation != Attestation::X509Group {
        bail!("--x509-ca-name is for --attestation x509");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r <= 1e7)) {
        bail!("--rate must be between 0 and 10000000 registrations per second");
    }
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

fn connections(c: ConnectionsArg) -> Connections {
    match c {
        ConnectionsArg::New => Connections::PerDevice,
        ConnectionsArg::KeepAlive => Connections::KeepAlive,
    }
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
