//! `dps`: register a device with a Device Provisioning Service and manage its enrollments,
//! enrollment groups and registration records. A thin shell over `dps-client`: it parses
//! arguments, calls the client, prints one line per item (or JSON with `--json`) and reports
//! errors as one `error: …` line on stderr.

mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use dps_client::{Credential, RegisterOptions, ServiceClient, TrustedCa, register_https};
use dps_types::{
    EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment, RegistrationId,
};
use serde_json::{Map, Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "dps",
    version,
    about = "Register devices with a Device Provisioning Service and manage its enrollments",
    after_help = "The dev server (dpsd) uses a self-signed CA: pass --ca <data_dir>/dev-ca.pem \
                  or set DPS_CA."
)]
struct Cli {
    /// Service connection string: HostName=HOST or HOST:PORT;SharedAccessKeyName=…;SharedAccessKey=…
    #[arg(
        long,
        env = "DPS_CONNECTION_STRING",
        hide_env_values = true,
        global = true,
        value_name = "STRING",
        help_heading = "Global options"
    )]
    connection_string: Option<String>,
    /// PEM file with the CA certificate that signed the server's certificate (instead of the
    /// system roots)
    #[arg(
        long,
        env = "DPS_CA",
        hide_env_values = true,
        global = true,
        value_name = "PEM",
        help_heading = "Global options"
    )]
    ca: Option<PathBuf>,
    /// Print JSON for scripts instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register a device with a symmetric key and print its assignment
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
}

#[derive(Debug, Args)]
struct RegisterArgs {
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

#[derive(Debug, Subcommand)]
enum EnrollmentCommand {
    /// Create an individual enrollment with symmetric-key attestation
    Create {
        /// Registration ID
        id: String,
        /// Device ID in the hub (default: the registration ID)
        #[arg(long, value_name = "ID")]
        device_id: Option<String>,
        #[command(flatten)]
        record: RecordArgs,
    },
    /// Show an enrollment
    Get {
        /// Registration ID
        id: String,
        /// Also fetch and show the symmetric keys
        #[arg(long)]
        show_keys: bool,
    },
    /// List all enrollments
    List,
    /// Delete an enrollment
    Delete {
        /// Registration ID
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create an enrollment group with symmetric-key attestation
    Create {
        /// Enrollment group ID
        id: String,
        #[command(flatten)]
        record: RecordArgs,
    },
    /// Show an enrollment group
    Get {
        /// Enrollment group ID
        id: String,
        /// Also fetch and show the group keys
        #[arg(long)]
        show_keys: bool,
    },
    /// List all enrollment groups
    List,
    /// Delete an enrollment group (its registration records stay)
    Delete {
        /// Enrollment group ID
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistrationCommand {
    /// Show a device's registration record
    Get {
        /// Registration ID
        id: String,
    },
    /// List the registration records of an enrollment group
    List {
        /// Enrollment group ID
        group_id: String,
    },
    /// Delete a registration record
    Delete {
        /// Registration ID
        id: String,
    },
}

/// What enrollments and groups share on creation.
#[derive(Debug, Args)]
struct RecordArgs {
    /// Primary symmetric key (default: generated by the service)
    #[arg(long, value_name = "B64")]
    key: Option<String>,
    /// Secondary symmetric key (default: generated by the service)
    #[arg(long, value_name = "B64")]
    secondary_key: Option<String>,
    /// IoT hub the devices may be assigned to (repeat for several; default: all linked hubs)
    #[arg(long = "hub", value_name = "HOST")]
    hubs: Vec<String>,
    /// Create it disabled (registrations are refused)
    #[arg(long)]
    disabled: bool,
    /// Initial twin tags (JSON object)
    #[arg(long, value_name = "JSON")]
    twin_tags: Option<String>,
    /// Initial twin desired properties (JSON object)
    #[arg(long, value_name = "JSON")]
    twin_desired: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ca_given = cli.ca.is_some();
    match run(cli).await {
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
    match cli.command {
        Command::Register(args) => register(args, ca, out).await,
        Command::Enrollment(cmd) => {
            enrollment(service(&cli.connection_string, ca)?, cmd, out).await
        }
        Command::Group(cmd) => group(service(&cli.connection_string, ca)?, cmd, out).await,
        Command::Registration(cmd) => {
            registration(service(&cli.connection_string, ca)?, cmd, out).await
        }
        Command::Operations => {
            let client = service(&cli.connection_string, ca)?;
            let ops = client
                .operations()
                .await
                .context("cannot read the operation counters")?;
            out.operations(&ops)
        }
    }
}

async fn register(args: RegisterArgs, ca: Option<TrustedCa>, out: output::Output) -> Result<()> {
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

fn service(connection_string: &Option<String>, ca: Option<TrustedCa>) -> Result<ServiceClient> {
    let cs = connection_string.as_deref().ok_or_else(|| {
        anyhow!("no connection string: pass --connection-string or set DPS_CONNECTION_STRING")
    })?;
    Ok(ServiceClient::from_connection_string(cs, ca)?)
}

async fn enrollment(
    client: ServiceClient,
    cmd: EnrollmentCommand,
    out: output::Output,
) -> Result<()> {
    match cmd {
        EnrollmentCommand::Create {
            id,
            device_id,
            record,
        } => {
            let enrollment = new_enrollment(&id, device_id.as_deref(), &record)?;
            let created = client
                .create_enrollment(&enrollment)
                .await
                .with_context(|| format!("cannot create enrollment {id}"))?;
            out.enrollment_created(&created, record.key.is_none())
        }
        EnrollmentCommand::Get { id, show_keys } => {
            let rid = registration_id(&id)?;
            let mut e = client
                .get_enrollment(&rid)
                .await
                .with_context(|| format!("cannot get enrollment {id}"))?;
            if show_keys {
                e.attestation = client
                    .enrollment_attestation(&rid)
                    .await
                    .with_context(|| format!("cannot read the keys of enrollment {id}"))?;
            }
            out.enrollments(&[e], show_keys)
        }
        EnrollmentCommand::List => {
            let all = client
                .list_enrollments()
                .await
                .context("cannot list enrollments")?;
            out.enrollments(&all, false)
        }
        EnrollmentCommand::Delete { id } => {
            client
                .delete_enrollment(&registration_id(&id)?, None)
                .await
                .with_context(|| format!("cannot delete enrollment {id}"))?;
            out.deleted("enrollment", &id)
        }
    }
}

async fn group(client: ServiceClient, cmd: GroupCommand, out: output::Output) -> Result<()> {
    match cmd {
        GroupCommand::Create { id, record } => {
            let group = new_group(&id, &record)?;
            let created = client
                .create_enrollment_group(&group)
                .await
                .with_context(|| format!("cannot create enrollment group {id}"))?;
            out.group_created(&created, record.key.is_none())
        }
        GroupCommand::Get { id, show_keys } => {
            let gid = group_id(&id)?;
            let mut g = client
                .get_enrollment_group(&gid)
                .await
                .with_context(|| format!("cannot get enrollment group {id}"))?;
            if show_keys {
                g.attestation = client
                    .enrollment_group_attestation(&gid)
                    .await
                    .with_context(|| format!("cannot read the keys of enrollment group {id}"))?;
            }
            out.groups(&[g], show_keys)
        }
        GroupCommand::List => {
            let all = client
                .list_enrollment_groups()
                .await
                .context("cannot list enrollment groups")?;
            out.groups(&all, false)
        }
        GroupCommand::Delete { id } => {
            client
                .delete_enrollment_group(&group_id(&id)?, None)
                .await
                .with_context(|| format!("cannot delete enrollment group {id}"))?;
            out.deleted("enrollment group", &id)
        }
    }
}

async fn registration(
    client: ServiceClient,
    cmd: RegistrationCommand,
    out: output::Output,
) -> Result<()> {
    match cmd {
        RegistrationCommand::Get { id } => {
            let r = client
                .get_registration(&registration_id(&id)?)
                .await
                .with_context(|| format!("cannot get registration {id}"))?;
            out.registrations(&[r])
        }
        RegistrationCommand::List { group_id: gid } => {
            let all = client
                .list_registrations(&group_id(&gid)?)
                .await
                .with_context(|| format!("cannot list the registrations of group {gid}"))?;
            out.registrations(&all)
        }
        RegistrationCommand::Delete { id } => {
            client
                .delete_registration(&registration_id(&id)?, None)
                .await
                .with_context(|| format!("cannot delete registration {id}"))?;
            out.deleted("registration", &id)
        }
    }
}

fn registration_id(s: &str) -> Result<RegistrationId> {
    RegistrationId::new(s).with_context(|| format!("invalid registration id '{s}'"))
}

fn group_id(s: &str) -> Result<EnrollmentGroupId> {
    EnrollmentGroupId::new(s).with_context(|| format!("invalid enrollment group id '{s}'"))
}

fn parse_json(flag: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).with_context(|| format!("{flag} is not valid JSON"))
}

fn parse_object(flag: &str, s: &str) -> Result<Value> {
    match parse_json(flag, s)? {
        v @ Value::Object(_) => Ok(v),
        _ => bail!("{flag} must be a JSON object"),
    }
}

/// The JSON members enrollments and groups share, from the command line.
fn record_fields(record: &RecordArgs) -> Result<Map<String, Value>> {
    let mut keys = Map::new();
    if let Some(k) = &record.key {
        keys.insert("primaryKey".into(), k.as_str().into());
    }
    if let Some(k) = &record.secondary_key {
        keys.insert("secondaryKey".into(), k.as_str().into());
    }
    let mut v = Map::new();
    v.insert(
        "attestation".into(),
        json!({"type": "symmetricKey", "symmetricKey": keys}),
    );
    v.insert(
        "provisioningStatus".into(),
        if record.disabled {
            "disabled"
        } else {
            "enabled"
        }
        .into(),
    );
    if !record.hubs.is_empty() {
        v.insert("iotHubs".into(), record.hubs.clone().into());
    }
    let mut twin = Map::new();
    if let Some(tags) = &record.twin_tags {
        twin.insert("tags".into(), parse_object("--twin-tags", tags)?);
    }
    if let Some(desired) = &record.twin_desired {
        twin.insert(
            "properties".into(),
            json!({"desired": parse_object("--twin-desired", desired)?}),
        );
    }
    if !twin.is_empty() {
        v.insert("initialTwin".into(), twin.into());
    }
    Ok(v)
}

fn new_enrollment(
    id: &str,
    device_id: Option<&str>,
    record: &RecordArgs,
) -> Result<IndividualEnrollment> {
    let mut v = record_fields(record)?;
    v.insert("registrationId".into(), id.into());
    if let Some(d) = device_id {
        v.insert("deviceId".into(), d.into());
    }
    serde_json::from_value(Value::Object(v)).context("invalid enrollment")
}

fn new_group(id: &str, record: &RecordArgs) -> Result<EnrollmentGroup> {
    let mut v = record_fields(record)?;
    v.insert("enrollmentGroupId".into(), id.into());
    serde_json::from_value(Value::Object(v)).context("invalid enrollment group")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

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

    #[test]
    fn enrollment_from_flags() {
        let cli = Cli::try_parse_from([
            "dps",
            "enrollment",
            "create",
            "dev-1",
            "--key",
            KEY,
            "--device-id",
            "device-one",
            "--hub",
            "hub-a.example.net",
            "--hub",
            "hub-b.example.net",
            "--disabled",
            "--twin-tags",
            r#"{"site":"lab"}"#,
            "--twin-desired",
            r#"{"interval":30}"#,
        ])
        .unwrap();
        let Command::Enrollment(EnrollmentCommand::Create {
            id,
            device_id,
            record,
        }) = cli.command
        else {
            panic!("not enrollment create");
        };
        let e = new_enrollment(&id, device_id.as_deref(), &record).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["registrationId"], "dev-1");
        assert_eq!(v["deviceId"], "device-one");
        assert_eq!(v["attestation"]["symmetricKey"]["primaryKey"], KEY);
        assert_eq!(v["provisioningStatus"], "disabled");
        assert_eq!(
            v["iotHubs"],
            json!(["hub-a.example.net", "hub-b.example.net"])
        );
        assert_eq!(v["initialTwin"]["tags"]["site"], "lab");
        assert_eq!(v["initialTwin"]["properties"]["desired"]["interval"], 30);
    }

    #[test]
    fn bad_flags_are_reported() {
        let record = |tags: Option<&str>, key: Option<&str>| RecordArgs {
            key: key.map(str::to_owned),
            secondary_key: None,
            hubs: Vec::new(),
            disabled: false,
            twin_tags: tags.map(str::to_owned),
            twin_desired: None,
        };
        let e = new_group("g1", &record(Some("[1]"), None)).unwrap_err();
        assert_eq!(format!("{e:#}"), "--twin-tags must be a JSON object");
        let e = new_group("g1", &record(None, Some("AAAA"))).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("invalid enrollment group: "),
            "{e:#}"
        );
        let e = new_enrollment("bad id", None, &record(None, None)).unwrap_err();
        assert!(format!("{e:#}").contains("registration id"), "{e:#}");
        let g = new_group("g1", &record(None, None)).unwrap();
        assert_eq!(
            serde_json::to_value(&g).unwrap()["attestation"],
            json!({"type": "symmetricKey"})
        );
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
