//! `dps`: register a device with a Device Provisioning Service and manage its enrollments,
//! enrollment groups and registration records. A thin shell over `dps-client`: it parses
//! arguments, calls the client, prints one line per item (or JSON with `--json`) and reports
//! errors as one `error: …` line on stderr.
//!
//! This file holds the command line ([`Cli`]), the dispatch to the subcommands in [`cmd`] and
//! the one place errors are printed ([`error_line`]). Results are printed by [`output`].

mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use dps_client::TrustedCa;

use cmd::enrollment::{EnrollmentCommand, GroupCommand};
use cmd::load::LoadArgs;
use cmd::register::RegisterArgs;
use cmd::registration::RegistrationCommand;

#[derive(Debug, Parser)]
#[command(
    name = "dps",
    version,
    about = "Register devices with a Device Provisioning Service and manage its enrollments",
    after_help = "The dev server (dpsd) uses a self-signed CA: pass --ca <data_dir>/dev-ca.pem \
                  or set DPS_CA.",
    next_help_heading = "Global options"
)]
struct Cli {
    /// Service connection string: HostName=HOST or HOST:PORT;SharedAccessKeyName=…;SharedAccessKey=…
    #[arg(long, global = true, value_name = "STRING")]
    #[arg(env = "DPS_CONNECTION_STRING", hide_env_values = true)]
    connection_string: Option<String>,
    /// PEM file with the CA certificate that signed the server's certificate (instead of the
    /// system roots)
    #[arg(long, global = true, value_name = "PEM")]
    #[arg(env = "DPS_CA", hide_env_values = true)]
    ca: Option<PathBuf>,
    /// Print JSON for scripts instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register a device with a symmetric key (over HTTPS or MQTT) and print its assignment
    Register(RegisterArgs),
    /// Manage individual enrollments
    #[command(subcommand)]
    Enrollment(EnrollmentCommand),
    /// Manage enrollment groups
    #[command(subcommand)]
    Group(GroupCommand),
    /// Inspect and delete registration records
    #[command(subcommand)]
    Registration(RegistrationCommand),
    /// Show the scope's operation counters
    Operations,
    /// Simulate a fleet of devices registering, and report throughput and latency
    Load(LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ca_given = cli.ca.is_some();
    // The load generator runs on every core; the other commands need one thread.
    let runtime = match &cli.command {
        Command::Load(args) => args.runtime(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::from(e).context("cannot start the tokio runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e, ca_given));
            ExitCode::FAILURE
        }
    }
}

/// The whole error chain on one line, plus a hint when the server's certificate was refused.
fn error_line(e: &anyhow::Error, ca_given: bool) -> String {
    let untrusted = e
        .chain()
        .filter_map(|c| c.downcast_ref::<dps_client::Error>())
        .any(dps_client::Error::is_untrusted_server);
    match (untrusted, ca_given) {
        (false, _) => format!("{e:#}"),
        (true, false) => format!(
            "{e:#} (pass --ca <data_dir>/dev-ca.pem, or set DPS_CA, to trust the server's CA)"
        ),
        (true, true) => format!(
            "{e:#} (the server's certificate does not verify against the CA given with --ca; \
             for dpsd pass <data_dir>/dev-ca.pem)"
        ),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ca = cli.ca.clone().map(TrustedCa::PemFile);
    let out = output::Output { json: cli.json };
    let cs = &cli.connection_string;
    match cli.command {
        Command::Register(args) => cmd::register::run(args, ca, out).await,
        Command::Enrollment(c) => cmd::enrollment::enrollment(cmd::service(cs, ca)?, c, out).await,
        Command::Group(c) => cmd::enrollment::group(cmd::service(cs, ca)?, c, out).await,
        Command::Registration(c) => cmd::registration::run(cmd::service(cs, ca)?, c, out).await,
        Command::Operations => cmd::operations::run(cmd::service(cs, ca)?, out).await,
        Command::Load(args) => cmd::load::run(args, cs, ca, out).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use anyhow::anyhow;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn untrusted_server_gets_a_ca_hint() {
        let e = anyhow::Error::from(dps_client::Error::UntrustedServer {
            host: "localhost:8443".into(),
            source: "invalid peer certificate: UnknownIssuer".into(),
        })
        .context("cannot register dev-1");
        let line = error_line(&e, false);
        assert_eq!(
            line,
            "cannot register dev-1: the server certificate of localhost:8443 is not trusted: \
             invalid peer certificate: UnknownIssuer (pass --ca <data_dir>/dev-ca.pem, or set \
             DPS_CA, to trust the server's CA)"
        );
        assert!(error_line(&e, true).contains("does not verify against the CA given with --ca"));
        let other = anyhow!("boom").context("outer");
        assert_eq!(error_line(&other, false), "outer: boom");
    }
}
