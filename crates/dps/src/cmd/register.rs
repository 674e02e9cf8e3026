//! `dps register`: provision a device the way it would from the field, over HTTPS or MQTT with
//! a SAS token made from its own key or from its enrollment group's key, or with an X.509
//! certificate presented in TLS (`--cert` and `--key` PEM files).

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use dps_client::{ClientIdentity, Credential, RegisterOptions, Transport, TrustedCa, register};
use dps_types::IdScope;

use super::{parse_json, registration_id};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Device endpoint, e.g. localhost:8443 (port 443 for https, 8883 for mqtt when omitted)
    #[arg(long, value_name = "HOST[:PORT]")]
    host: String,
    /// Protocol to register over
    #[arg(long, value_enum, default_value_t = TransportArg::Https)]
    transport: TransportArg,
    /// ID scope of the DPS instance
    #[arg(long)]
    scope: String,
    /// The device's registration ID
    #[arg(long, value_name = "ID")]
    registration_id: String,
    #[command(flatten)]
    key: DeviceKey,
    /// Custom allocation payload (JSON), e.g. '{"modelId":"dtmi:…"}'
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
}

/// `--transport`: the command line's names for [`Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// HTTPS (PUT …/register, GET …/operations/{id})
    Https,
    /// MQTT 3.1.1 over TLS ($dps/registrations/… topics)
    Mqtt,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Https => Self::Https,
            TransportArg::Mqtt => Self::Mqtt,
        }
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct DeviceKey {
    /// The device's symmetric key (individual enrollment); with --cert, the PEM file of the
    /// certificate's private key
    #[arg(long, value_name = "B64|PEM FILE", conflicts_with = "group_key")]
    key: Option<String>,
    /// The enrollment group's key; the device key is derived from it
    #[arg(long, value_name = "B64")]
    group_key: Option<String>,
    /// X.509: the device certificate PEM file (leaf first, then any intermediates); its
    /// subject CN must be the registration ID
    #[arg(
        long,
        value_name = "PEM FILE",
        requires = "key",
        conflicts_with = "group_key"
    )]
    cert: Option<std::path::PathBuf>,
}

/// Registers the device and prints where it was assigned.
pub async fn run(args: RegisterArgs, ca: Option<TrustedCa>, out: Output) -> Result<()> {
    let scope =
        IdScope::new(&args.scope).with_context(|| format!("invalid --scope '{}'", args.scope))?;
    let rid = registration_id(&args.registration_id)?;
    let credential = match (args.key.cert, args.key.key, args.key.group_key) {
        (Some(cert), Some(key), _) => Credential::X509(ClientIdentity::from_files(cert, key)?),
        (None, Some(k), _) => Credential::SymmetricKey(k),
        (None, None, Some(g)) => Credential::GroupKey(g),
        _ => bail!("pass --key, --group-key, or --cert with --key"),
    };
    let mut opts = RegisterOptions::new(args.host, scope, rid.clone(), credential);
    opts.transport = args.transport.into();
    opts.ca = ca;
    opts.payload = args
        .payload
        .as_deref()
        .map(|p| parse_json("--payload", p))
        .transpose()?;
    let result = register(opts)
        .await
        .with_context(|| format!("cannot register {rid}"))?;
    out.registered(&result)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser as _;

    use super::{Transport, TransportArg};
    use crate::{Cli, Command};

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn register_needs_exactly_one_key() {
        let base = [
            "dps",
            "register",
            "--host",
            "localhost:8443",
            "--scope",
            "0ne00000001",
            "--registration-id",
            "dev-1",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        let mut both = base.to_vec();
        both.extend(["--key", KEY, "--group-key", KEY]);
        assert!(Cli::try_parse_from(both).is_err());
        let mut one = base.to_vec();
        one.extend(["--group-key", KEY, "--ca", "/tmp/ca.pem", "--json"]);
        let cli = Cli::try_parse_from(one).unwrap();
        assert!(cli.json);
        assert_eq!(cli.ca, Some(PathBuf::from("/tmp/ca.pem")));
        let Command::Register(args) = cli.command else {
            panic!("not register");
        };
        assert_eq!(args.key.group_key.as_deref(), Some(KEY));
        assert_eq!(args.transport, TransportArg::Https, "https by default");
    }

    #[test]
    fn register_over_mqtt() {
        let cli = Cli::try_parse_from([
            "dps",
            "register",
            "--host",
            "localhost",
            "--scope",
            "0ne00000001",
            "--registration-id",
            "dev-1",
            "--key",
            KEY,
            "--transport",
            "mqtt",
        ])
        .unwrap();
        let Command::Register(args) = cli.command else {
            panic!("not register");
        };
        assert_eq!(Transport::from(args.transport), Transport::Mqtt);
        let bad = Cli::try_parse_from([
            "dps",
            "register",
            "--host",
            "localhost",
            "--scope",
            "0ne00000001",
            "--registration-id",
            "dev-1",
            "--key",
            KEY,
            "--transport",
            "amqp",
        ]);
        assert!(bad.is_err());
    }

    #[test]
    fn register_with_a_certificate_needs_its_key() {
        let base = [
            "dps",
            "register",
            "--host",
            "localhost:8443",
            "--scope",
            "0ne00000001",
            "--registration-id",
            "dev-1",
        ];
        let mut cert_only = base.to_vec();
        cert_only.extend(["--cert", "dev.pem"]);
        assert!(Cli::try_parse_from(cert_only).is_err());
        let mut with_group = base.to_vec();
        with_group.extend(["--cert", "dev.pem", "--key", "k.pem", "--group-key", KEY]);
        assert!(Cli::try_parse_from(with_group).is_err());
        let mut x509 = base.to_vec();
        x509.extend(["--cert", "dev.pem", "--key", "dev-key.pem"]);
        let Command::Register(args) = Cli::try_parse_from(x509).unwrap().command else {
            panic!("not register");
        };
        assert_eq!(args.key.cert, Some(PathBuf::from("dev.pem")));
        assert_eq!(args.key.key.as_deref(), Some("dev-key.pem"));
    }
}
