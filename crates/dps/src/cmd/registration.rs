//! `dps registration`: show, list and delete the registration records devices leave behind.

use anyhow::{Context as _, Result};
use clap::Subcommand;
use dps_client::ServiceClient;

use super::{group_id, registration_id};
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum RegistrationCommand {
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

/// Runs one `dps registration …` command.
pub async fn run(client: ServiceClient, cmd: RegistrationCommand, out: Output) -> Result<()> {
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
