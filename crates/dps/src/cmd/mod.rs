//! The subcommands, one module each, and what they share: the service client built from the
//! global options, and parsing of ids and JSON flags into `anyhow` errors that name the flag.
//!
//! Each module turns its parsed arguments into `dps-client` calls and hands the results to
//! [`Output`](crate::output::Output); none prints on its own.

pub mod enrollment;
pub mod load;
pub mod operations;
pub mod record;
pub mod register;
pub mod registration;

use anyhow::{Context as _, Result, anyhow, bail};
use dps_client::{ServiceClient, TrustedCa};
use dps_types::{EnrollmentGroupId, RegistrationId};
use serde_json::Value;

/// The service client for `--connection-string` (or `DPS_CONNECTION_STRING`), trusting `ca`.
pub fn service(connection_string: &Option<String>, ca: Option<TrustedCa>) -> Result<ServiceClient> {
    let cs = connection_string.as_deref().ok_or_else(|| {
        anyhow!("no connection string: pass --connection-string or set DPS_CONNECTION_STRING")
    })?;
    Ok(ServiceClient::from_connection_string(cs, ca)?)
}

/// A registration ID from the command line.
pub fn registration_id(s: &str) -> Result<RegistrationId> {
    RegistrationId::new(s).with_context(|| format!("invalid registration id '{s}'"))
}

/// An enrollment group ID from the command line.
pub fn group_id(s: &str) -> Result<EnrollmentGroupId> {
    EnrollmentGroupId::new(s).with_context(|| format!("invalid enrollment group id '{s}'"))
}

/// Any JSON value given with `flag`.
pub fn parse_json(flag: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).with_context(|| format!("{flag} is not valid JSON"))
}

/// A JSON object given with `flag`.
pub fn parse_object(flag: &str, s: &str) -> Result<Value> {
    match parse_json(flag, s)? {
        v @ Value::Object(_) => Ok(v),
        _ => bail!("{flag} must be a JSON object"),
    }
}
