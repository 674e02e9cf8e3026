//! dpsd: the dps-rs reference server. It parses configuration, picks the storage backend,
//! installs logging and wires the HTTPS listener; everything else lives in the libraries.
//!
//! `dpsd` with no arguments runs a development instance: one scope, one in-process linked hub,
//! a dev CA and server certificate and a service key generated under `./dps-data`.

mod alloc_config;
mod ca;
mod config;
mod devca;
mod hubs;
mod probe;
mod store;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use dps_service::{Service, ServiceOptions};
use dps_store::MemoryStore;

use crate::store::AnyStore;
use scopes::build_scope;

use crate::config::Config;

/// The dps-rs Device Provisioning Service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Without one, a development instance runs.
    #[arg(long, env = "DPSD_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `[listen] https`.
    #[arg(long, env = "DPSD_LISTEN_HTTPS")]
    listen_https: Option<std::net::SocketAddr>,
    /// Overrides `[listen] mqtt` (MQTT over TLS; default 127.0.0.1:8883 without a config file).
    #[arg(long, env = "DPSD_LISTEN_MQTT")]
    listen_mqtt: Option<std::net::SocketAddr>,
    /// Overrides `[storage] data_dir`.
    #[arg(long, env = "DPSD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `[storage] kind` (`embedded`, the default; `memory`; or `postgres`).
    #[arg(long, env = "DPSD_STORAGE_KIND")]
    storage_kind: Option<String>,
    /// Overrides `[storage] url` (PostgreSQL).
    #[arg(long, env = "DPSD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,dps_server=debug`.
    #[arg(long, env = "DPSD_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, env = "DPSD_LOG_JSON")]
    log_json: bool,
}

fn main() {
    let args = Args::parse();
    install_logging(&args);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn install_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: Args) -> Result<()> {
    let dev = args.config.is_none();
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if dev {
        cfg.listen.mqtt = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8883)));
    }
    if let Some(a) = args.listen_mqtt {
        cfg.listen.mqtt = Some(a);
    }
    if let Some(a) = args.listen_https {
        cfg.listen.https = a;
    }
    if let Some(d) = args.data_dir {
        cfg.storage.data_dir = d;
    }
    if let Some(k) = args.storage_kind {
        cfg.storage.kind = k;
    }
    if let Some(u) = args.database_url {
        cfg.storage.url = Some(u);
    }
    std::fs::create_dir_all(&cfg.storage.data_dir).with_context(|| {
        format!(
            "creating the data directory {}",
            cfg.storage.data_dir.display()
        )
    })?;
    let store = open_store(&cfg.storage).await?;
    if dev {
        cfg.scopes = vec![config::dev_scope(&cfg.storage.data_dir)?];
    }
    let (chain, key, dev_ca) = match &cfg.tls {
        Some(t) => (t.cert.clone(), t.key.clone(), None),
        None => {
            let mut names: Vec<String> = cfg
                .scopes
                .iter()
                .map(|s| s.service_host_name.clone())
                .collect();
            names.push(cfg.listen.https.ip().to_string());
            let d = devca::ensure(&cfg.storage.data_dir, &names)?;
            (d.chain, d.key, Some(d.ca))
        }
    };
    let tls = dps_server::tls::server_config(
        &std::fs::read(&chain).with_context(|| format!("reading {}", chain.display()))?,
        &std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
    )
    .context("loading the TLS certificate")?;
    let embedded = hubs::journaled_registry(&cfg.scopes, &store).await?;
    let (router, _embedded) = hubs::build_router(&cfg.scopes, embedded)?;
    let mut builder = Service::builder(store, router).options(ServiceOptions {
        retry_after_secs: cfg.service.retry_after_secs,
        ..ServiceOptions::default()
    });
    let mut seen = std::collections::HashSet::new();
    let mut probe_targets = Vec::new();
    for s in &cfg.scopes {
        if !seen.insert(s.id_scope.to_ascii_lowercase()) {
            bail!("id_scope {} is configured twice", s.id_scope);
        }
        if cfg.scopes.len() > 1
            && cfg
                .scopes
                .iter()
                .filter(|o| {
                    o.service_host_name
                        .eq_ignore_ascii_case(&s.service_host_name)
                })
                .count()
                > 1
        {
            bail!(
                "service_host_name {} is shared by several scopes: the service API tells scopes apart by host name",
                s.service_host_name
            );
        }
        if s.hubs.is_empty() {
            tracing::warn!(id_scope = %s.id_scope, "scope has no linked hub: registrations will fail");
        }
        let mut sc = build_scope(s)?;
        probe_targets.extend(alloc_config::apply(&cfg.allocation, s, &mut sc)?);
        builder = builder.scope(sc);
    }
    let svc = builder.build();
    let listener = tokio::net::TcpListener::bind(cfg.listen.https)
        .await
        .with_context(|| format!("binding {}", cfg.listen.https))?;
    let addr = listener.local_addr()?;
    let mqtt = match cfg.listen.mqtt {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a} (MQTT)"))?;
            Some(l)
        }
        None => None,
    };
    let mqtt_addr = mqtt
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    let shutdown = shutdown_signal()?;
    print_banner(&cfg, addr, mqtt_addr, dev_ca.as_deref(), dev);
    tracing::info!(%addr, mqtt = ?mqtt_addr, scopes = cfg.scopes.len(), storage = %cfg.storage.kind, "dpsd listening");
    // One shutdown signal fans out to every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(probe::run(
        probe_targets,
        cfg.allocation.probe.clone(),
        wait(stopped.clone()),
    ));
    let https = dps_server::serve(listener, tls.clone(), svc.clone(), wait(stopped.clone()));
    let mqtt_task = async {
        match mqtt {
            Some(l) => dps_server::serve_mqtt(l, tls, svc, wait(stopped)).await,
            None => Ok(()),
        }
    };
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (a, b, ()) = tokio::join!(https, mqtt_task, signal);
    a?;
    b?;
    tracing::info!("dpsd stopped");
    Ok(())
}

async fn open_store(s: &config::Storage) -> Result<AnyStore> {
    match s.kind.as_str() {
        "memory" => Ok(AnyStore::Memory(MemoryStore::new())),
        "embedded" => {
            let path = s.data_dir.join("dps.redb");
            let store = dps_store_redb::RedbStore::open(&path)
                .with_context(|| format!("opening the embedded store {}", path.display()))?;
            Ok(AnyStore::Embedded(store))
        }
        "postgres" => {
            let url = s
                .url
                .as_deref()
                .context("storage kind \"postgres\" needs [storage] url (or DPSD_DATABASE_URL)")?;
            let mut pg = dps_store_pg::PgConfig::new(url);
            if let Some(schema) = &s.schema {
                pg.schema = schema.clone();
            }
            if let Some(n) = s.max_connections {
                pg.max_connections = n;
            }
            pg.tls = s.pg_tls()?;
            let store = dps_store_pg::PgStore::connect(&pg)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(AnyStore::Postgres(store))
        }
        other => {
            bail!("unknown storage kind {other:?} (use \"embedded\", \"memory\" or \"postgres\")")
        }
    }
}

/// Prints where the server is and how to reach it. The banner is written in one piece and a
/// closed stdout (a supervisor that stopped reading) is ignored rather than fatal.
fn print_banner(
    cfg: &Config,
    addr: std::net::SocketAddr,
    mqtt: Option<std::net::SocketAddr>,
    ca: Option<&std::path::Path>,
    dev: bool,
) {
    use std::fmt::Write as _;
    let port = addr.port();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "dpsd listening on https://{addr} (device and service API)"
    );
    if let Some(m) = mqtt {
        let _ = writeln!(
            b,
            "  MQTT (TLS): mqtts://{m}  MQTT over WebSocket: wss://{addr}/$iothub/websocket"
        );
    }
    for s in &cfg.scopes {
        let _ = writeln!(
            b,
            "  ID scope: {}  service host: {}",
            s.id_scope, s.service_host_name
        );
    }
    if let Some(ca) = ca {
        let abs = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_path_buf());
        let _ = writeln!(b, "  trust root (dev CA): {}", abs.display());
    }
    if dev {
        // Only the development instance prints its generated key, so a new user can connect.
        if let Some((s, p)) = cfg
            .scopes
            .first()
            .and_then(|s| s.policies.first().map(|p| (s, p)))
        {
            let _ = writeln!(
                b,
                "  service connection string: HostName={}:{port};SharedAccessKeyName={};SharedAccessKey={}",
                s.service_host_name, p.name, p.primary_key
            );
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, b.as_bytes());
    let _ = std::io::Write::flush(&mut out);
}

/// Installs the SIGINT/SIGTERM handlers now (before the banner tells anyone the server is up)
/// and returns a future that completes when either arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown requested");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested");
        })
    }
}

mod scopes {
    //! Turns a `[[scope]]` section into the service's scope configuration.
    use anyhow::{Context, Result, anyhow};
    use dps_attest::sas::SigningKey;
    use dps_service::{AccessPolicy, Right, ScopeConfig};
    use dps_types::{AllocationPolicy, HubHostName, IdScope};

    pub fn build_scope(s: &crate::config::Scope) -> Result<ScopeConfig> {
        let id = IdScope::new(&s.id_scope).with_context(|| format!("id_scope {:?}", s.id_scope))?;
        let mut sc = ScopeConfig::new(id, s.service_host_name.clone());
        sc.allocation_policy = AllocationPolicy::parse(&s.allocation_policy).ok_or_else(|| {
            anyhow!(
                "scope {}: unknown allocation_policy {:?}",
                s.id_scope,
                s.allocation_policy
            )
        })?;
        let hubs = s
            .hubs
            .iter()
            .map(|h| {
                let host = HubHostName::new(&h.host_name)
                    .with_context(|| format!("hub host_name {:?}", h.host_name))?;
                Ok(dps_alloc::Hub::new(
                    host,
                    h.allocation_weight,
                    h.apply_allocation_policy,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        sc.hubs = dps_alloc::HubSet::new(hubs);
        sc.cas = crate::ca::load_all(&s.cas, crate::ca::unix_now())?;
        for p in &s.policies {
            let key =
                |k: &str| SigningKey::from_base64(k).map_err(|e| anyhow!("policy {}: {e}", p.name));
            let rights = p
                .rights
                .iter()
                .flat_map(|r| r.split(','))
                .filter(|r| !r.trim().is_empty())
                .map(|r| {
                    Right::parse(r).ok_or_else(|| anyhow!("policy {}: unknown right {r:?}", p.name))
                })
                .collect::<Result<Vec<_>>>()?;
            sc.policies.push(AccessPolicy {
                name: p.name.clone(),
                primary: key(&p.primary_key)?,
                secondary: p.secondary_key.as_deref().map(key).transpose()?,
                rights,
            });
        }
        Ok(sc)
    }
}
