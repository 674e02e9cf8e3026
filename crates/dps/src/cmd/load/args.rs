//! `dps load`'s command line ([`LoadArgs`]) and the checks on it that need no I/O.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use dps_client::Connections;

use super::driver::Plan;
use super::setup::Attestation;

/// The most X.509 devices a run issues certificates to (about 3 KB of memory and 0.1 ms of
/// set-up each).
const MAX_X509_DEVICES: u64 = 100_000;

/// `dps load`'s options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Device endpoint [default: 127.0.0.1:8443 for https, 127.0.0.1:8883 for mqtt]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(super) host: Option<String>,
    /// ID scope of the DPS instance (dpsd prints it)
    #[arg(long, required_unless_present = "baseline_only")]
    pub(super) scope: Option<String>,
    /// Protocol the devices register over
    #[arg(long, value_enum, default_value_t = TransportArg::Https)]
    pub(super) transport: TransportArg,
    /// How the devices prove who they are
    #[arg(long, value_enum, default_value_t = AttestationArg::Individual)]
    pub(super) attestation: AttestationArg,
    /// Enrollment groups the devices are spread over (--attestation group; x509 uses one)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(super) groups: u64,
    /// Simulated devices
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(super) devices: u64,
    /// Registrations per pass, at most [default: --devices]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(super) count: Option<u64>,
    /// Seconds per pass, at most: no registration starts later
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(super) duration: u64,
    /// Registrations in flight, at most
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(super) concurrency: u64,
    /// Target registrations per second (open loop); as fast as possible when omitted
    #[arg(long)]
    pub(super) rate: Option<f64>,
    /// New TLS connection per device (the factory case) or kept-alive connections shared by
    /// all devices (the gateway case; HTTPS with symmetric keys only)
    #[arg(long, value_enum, default_value_t = ConnectionsArg::New)]
    pub(super) connections: ConnectionsArg,
    /// Passes over the fleet: the first registers the devices, later ones re-register them
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub(super) passes: u32,
    /// Do not create the enrollments: an earlier run with the same --prefix, --secret,
    /// --devices, --attestation and --groups did (not with x509-individual)
    #[arg(long)]
    pub(super) no_setup: bool,
    /// Registration IDs are PREFIX-0000000, PREFIX-0000001, …; groups PREFIX-group-00000, …
    #[arg(long, default_value = "load")]
    pub(super) prefix: String,
    /// Secret the devices' and groups' keys (and the X.509 CA's key) are derived from
    #[arg(long, default_value = "dps-load")]
    pub(super) secret: String,
    /// X.509: write the fleet's CA certificate to this file (to list it in dpsd's config as a
    /// [[scope.ca]] with verified = true)
    #[arg(long, value_name = "FILE")]
    pub(super) x509_ca_pem: Option<PathBuf>,
    /// X.509: the group trusts the dpsd [[scope.ca]] of this name (caReferences) instead of
    /// uploading the CA certificate (signingCertificates)
    #[arg(long, value_name = "NAME")]
    pub(super) x509_ca_name: Option<String>,
    /// Poll this many ms after the register answer, whatever Retry-After the server sends
    /// (default: as the server says, without the SDKs' 1 s minimum)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub(super) poll_after_ms: Option<u64>,
    /// Also measure a minimal HTTPS server on the same stack in this run, and report the ratio
    #[arg(long)]
    pub(super) baseline: bool,
    /// Measure only the baseline server (no DPS needed)
    #[arg(long, conflicts_with = "baseline")]
    pub(super) baseline_only: bool,
    /// Worker threads of the load generator [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(super) threads: Option<u64>,
    /// Worker threads of the baseline server [default: one per CPU]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(super) baseline_threads: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TransportArg {
    /// HTTPS
    Https,
    /// MQTT 3.1.1 over TLS (a connection per device)
    Mqtt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum AttestationArg {
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
pub(super) enum ConnectionsArg {
    /// A new TLS connection (full handshake) per device
    New,
    /// Kept-alive connections carrying many devices' requests
    KeepAlive,
}

pub(super) fn cpus() -> usize {
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

    pub(super) fn plan(&self) -> Plan {
        Plan {
            count: self.count.unwrap_or(self.devices),
            duration: Duration::from_secs(self.duration),
            concurrency: self.concurrency as usize,
            rate: self.rate,
        }
    }

    pub(super) fn describe(&self) -> String {
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

    /// The attestation, after refusing the combinations that cannot work, before any I/O.
    pub(super) fn checked(&self) -> Result<Attestation> {
        let attestation = match self.attestation {
            AttestationArg::Individual => Attestation::Individual,
            AttestationArg::Group => Attestation::Group,
            AttestationArg::X509 => Attestation::X509Group,
            AttestationArg::X509Individual => Attestation::X509Individual,
        };
        if self.transport == TransportArg::Mqtt && self.connections == ConnectionsArg::KeepAlive {
            bail!("MQTT authenticates one device per connection: use --connections new with mqtt");
        }
        if attestation.is_x509() && self.connections == ConnectionsArg::KeepAlive {
            bail!(
                "a TLS client certificate authenticates one device per connection, so X.509 devices \
                 cannot share kept-alive connections: use --connections new with x509"
            );
        }
        if attestation.is_x509() && self.devices > MAX_X509_DEVICES {
            bail!(
                "x509 devices get their certificates in memory before the run: at most \
                 {MAX_X509_DEVICES} --devices (use --count to register them more often)"
            );
        }
        if attestation == Attestation::X509Group && self.groups != 1 {
            bail!("--attestation x509 uses one enrollment group (its devices share one CA)");
        }
        if attestation == Attestation::X509Individual && self.no_setup {
            bail!(
                "x509-individual enrollments pin certificates issued in this run: it cannot \
                 reuse an earlier run's (--no-setup)"
            );
        }
        if self.x509_ca_name.is_some() && attestation != Attestation::X509Group {
            bail!("--x509-ca-name is for --attestation x509");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r <= 1e7)) {
            bail!("--rate must be between 0 and 10000000 registrations per second");
        }
        Ok(attestation)
    }
}

/// The client's connection mode for `--connections`.
pub(super) fn connections(c: ConnectionsArg) -> Connections {
    match c {
        ConnectionsArg::New => Connections::PerDevice,
        ConnectionsArg::KeepAlive => Connections::KeepAlive,
    }
}
