//! A complete DPS inside another tokio program: build the service over a store and a hub
//! registry, configure an enrollment, serve HTTPS on a listener you bound, and register a
//! device through the same engine the network endpoint uses.
//!
//! Run with `cargo run -p dps-server --example embedded`.

use dps_alloc::{Hub, HubSet};
use dps_attest::sas::{SigningKey, generate_token};
use dps_connect::InProcessHubRegistry;
use dps_service::{DeviceCredential, RegisterRequest, ScopeConfig, Service};
use dps_store::MemoryStore;
use dps_types::{HubHostName, IdScope, IndividualEnrollment};

const KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One tenant with one linked hub, backed by the memory store and an in-process hub.
    let mut scope = ScopeConfig::new(IdScope::new("0ne00000001")?, "localhost");
    scope.hubs = HubSet::new(vec![Hub::new(
        HubHostName::new("hub.example.net")?,
        1,
        true,
    )]);
    let hubs = InProcessHubRegistry::default();
    let svc = Service::builder(MemoryStore::new(), hubs.clone())
        .scope(scope)
        .build();

    // Enroll a device (trusted, in-process; remote admins use the service API with SAS).
    let enrollment = serde_json::json!({
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": KEY } },
        "initialTwin": { "tags": { "site": "lab" } }
    });
    svc.admin_for_scope("0ne00000001")?
        .put::<IndividualEnrollment>("dev-1", enrollment, None)
        .await?;

    // Serve the device and service APIs over TLS on a port the OS picks.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let tls = dps_server::tls::server_config(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("DPS listening on https://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dps_server::serve(listener, tls, svc.clone(), async {
        let _ = stopped.await;
    }));

    // A device registers (here in-process; over HTTPS it is the same call).
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let token = generate_token(
        "0ne00000001/registrations/dev-1",
        &SigningKey::from_base64(KEY)?,
        expiry,
        None,
    );
    let op = svc
        .register(RegisterRequest {
            id_scope: "0ne00000001",
            registration_id: "dev-1",
            credential: DeviceCredential::Sas(&token),
            payload: None,
            legacy_api: false,
            source: None,
        })
        .await?;
    println!(
        "dev-1: {:?} on {:?}",
        op.status,
        op.registration_state.assigned_hub.map(|h| h.to_string())
    );
    println!("identities in the hub: {}", hubs.devices().len());

    let _ = stop.send(());
    server.await??;
    Ok(())
}
