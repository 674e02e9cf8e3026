//! `dps operations`: the scope's operation counters (a dps-rs extension of the service API).

use anyhow::{Context as _, Result};
use dps_client::ServiceClient;

use crate::output::Output;

/// Reads the counters and prints them.
pub async fn run(client: ServiceClient, out: Output) -> Result<()> {
    let ops = client
        .operations()
        .await
        .context("cannot read the operation counters")?;
    out.operations(&ops)
}
