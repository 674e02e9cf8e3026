//! End-to-end registrations per second over the network, HTTPS and MQTT measured in one run
//! against one in-process server (memory store), each registration a new TLS connection (the
//! factory case) driven by dps-client:
//!
//! ```text
//! cargo run --release -p dps-benches --bin e2erate -- --count 2000 --concurrency 32
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use dps_client::{Credential, FlowConfig, RegisterOptions, Transport, TrustedCa, register};
use dps_connect::InProcessHubRegistry;
use dps_service::{Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::{GROUP_KEY, SCOPE, SERVICE_HOST, fixture_scope};
use dps_types::{EnrollmentGroup, IdScope, RegistrationId, RegistrationStatus};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

#[derive(Parser)]
struct Args {
    /// Registrations per transport.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Concurrent devices.
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
}

fn pki() -> Result<(String, String, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), leaf.pem(), key.serialize_pem()))
}

async fn run(transport: Transport, name: &str, port: u16, ca: &str, args: &Args) -> Result<f64> {
    let per = args.count.div_ceil(args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (ca, name) = (ca.to_owned(), name.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let rid = format!("{name}-{w}-{i}");
                let mut o = RegisterOptions::new(
                    format!("localhost:{port}"),
                    IdScope::new(SCOPE)?,
                    RegistrationId::new(&rid)?,
                    Credential::GroupKey(GROUP_KEY.to_owned()),
                );
                o.ca = Some(TrustedCa::Pem(ca.clone().into_bytes()));
                o.transport = transport;
                let mut flow = FlowConfig::default();
                flow.min_retry_after = Duration::ZERO;
                o.flow = flow;
                let r = register(o).await?;
                anyhow::ensure!(
                    r.state.status == RegistrationStatus::Assigned,
                    "{rid} not assigned"
                );
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("task")??;
    }
    let rate = (per * args.concurrency) as f64 / started.elapsed().as_secs_f64();
    println!("{name:<6} {rate:>8.0} registrations/s (register + poll, new TLS connection each)");
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (ca, chain, key) = pki()?;
    let svc = Service::builder(MemoryStore::new(), InProcessHubRegistry::default())
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .options(ServiceOptions {
            retry_after_secs: 0,
            ..ServiceOptions::default()
        })
        .build();
    let group = serde_json::json!({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}}});
    svc.admin_for_scope(SCOPE)?
        .put::<EnrollmentGroup>("e2e", group, None)
        .await?;
    let tls = dps_server::tls::server_config(chain.as_bytes(), key.as_bytes())?;
    let https = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (hp, mp) = (https.local_addr()?.port(), mqtt.local_addr()?.port());
    tokio::spawn(dps_server::serve(
        https,
        tls.clone(),
        svc.clone(),
        std::future::pending(),
    ));
    tokio::spawn(dps_server::serve_mqtt(
        mqtt,
        tls,
        svc,
        std::future::pending(),
    ));
    println!(
        "{} registrations per transport, {} concurrent devices, one process:",
        args.count, args.concurrency
    );
    let h = run(Transport::Https, "https", hp, &ca, &args).await?;
    let m = run(Transport::Mqtt, "mqtt", mp, &ca, &args).await?;
    println!("mqtt / https = {:.2}", m / h);
    Ok(())
}
