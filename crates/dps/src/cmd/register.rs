//! `dps register`: provision a device the way it would from the field, over HTTPS with a SAS
//! token made from its own key or from its enrollment group's key.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use dps_client::{Credential, RegisterOptions, TrustedCa, register_https};
use dps_types::IdScope;

use super::{parse_json, registration_id};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Device endpoint, e.g. localhost:8443 (port 443 when omitted)
    #[arg(long, value_name = "HOST[:PORT]")]
    host: String,
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

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DeviceKey {
    /// The device's symmetric key (individual enrollment)
    #[arg(long, value_name = "B64")]
    key: Option<String>,
    /// The enrollment group's key; the device key is derived from it
    #[arg(long, value_name = "B64")]
    group_key: Option<String>,
}

/// Registers the device and prints where it was assigned.
pub async fn run(args: RegisterArgs, ca: Option<TrustedCa>, out: Output) -> Result<()> {
    let scope =
        IdScope::new(&args.scope).with_context(|| format!("invalid --scope '{}'", args.scope))?;
    let rid = registration_id(&args.registration_id)?;
    let credential = match (args.key.key, args.key.group_key) {
        (Some(k), _) => Credential::SymmetricKey(k),
        (None, Some(g)) => Credential::GroupKey(g),
        (None, None) => bail!("pass --key or --group-key"),
    };
    let mut opts = RegisterOptions::new(args.host, scope, rid.clone(), credential);
    opts.ca = ca;
    opts.payload = args
        .payload
        .as_deref()
        .map(|p| parse_json("--payload", p))
        .transpose()?;
    let result = register_https(opts)
        .await
        .with_context(|| format!("cannot register {rid}"))?;
    out.registered(&result)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser as _;

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
    }
}
