//! `flagstaff relay`: the command line of the relay (`flagstaff-relay`), its configuration file
//! and the environment variables that override it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flagstaff_relay::{Relay, RelayConfig};

use crate::server::{init_logging, shutdown_signal};

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The configuration file (TOML): the upstream, and either a relay token or the
    /// environments to serve with their SDK key (and mobile key, client-side ID, secure mode).
    /// README.md "Run a relay" shows both. Optional with --upstream and a token.
    #[arg(
        long,
        env = "FLAGSTAFF_RELAY_CONFIG",
        required_unless_present_any = ["offline", "token"]
    )]
    config: Option<PathBuf>,
    /// A relay token: an API token whose roles allow `relayEnvironment`. The relay serves every
    /// environment the token may relay and follows additions, removals and key rotations
    /// upstream, receiving credential fingerprints only. Prefer the environment variable to
    /// the option (command lines are visible to other users); overrides the file.
    #[arg(long, env = "FLAGSTAFF_RELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve an offline bundle (`flagstaff export`) with no upstream, reloading it when the file
    /// changes; a bundle that does not read or verify is refused and the last good one kept.
    #[arg(long, env = "FLAGSTAFF_RELAY_OFFLINE", conflicts_with_all = ["config", "upstream"])]
    offline: Option<PathBuf>,
    /// With `--offline`: serve only bundles signed by this Ed25519 public key (PEM).
    #[arg(long, env = "FLAGSTAFF_RELAY_VERIFY_KEY", requires = "offline")]
    verify_key: Option<PathBuf>,
    /// The upstream's base URL (a Flagstaff server or another relay); overrides the file.
    #[arg(long, env = "FLAGSTAFF_RELAY_UPSTREAM")]
    upstream: Option<String>,
    /// Where SDKs connect (host:port); overrides the file (default 127.0.0.1:8031).
    #[arg(long, env = "FLAGSTAFF_RELAY_LISTEN")]
    listen: Option<String>,
    /// Where the last good data is kept for restarts; overrides the file.
    #[arg(long, env = "FLAGSTAFF_RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "FLAGSTAFF_LOG_JSON")]
    log_json: bool,
    /// Also write every environment to Redis for daemon-mode SDKs (as `serve --redis-url`;
    /// `{project}` and `{environment}` in the prefix are the names the configuration gives).
    #[cfg(feature = "redis")]
    #[command(flatten)]
    redis: crate::server::RedisArgs,
}

/// Reads the configuration and runs the relay until a shutdown signal.
pub async fn run(args: &RelayArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    if let Some(bundle) = &args.offline {
        return run_offline(args, bundle).await;
    }
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        // With a token and --upstream, everything else has defaults.
        None if args.token.is_some() && args.upstream.is_some() => "upstream = ''".to_owned(),
        None => anyhow::bail!("give --config, or --upstream with a relay token (or --offline)"),
    };
    let mut config: RelayConfig =
        toml::from_str(&text).map_err(|e| flagstaff_relay::ConfigError::Parse(e.to_string()))?;
    if let Some(token) = &args.token {
        config.token = Some(token.clone());
    }
    if let Some(upstream) = &args.upstream {
        config.upstream.clone_from(upstream);
    }
    if let Some(listen) = &args.listen {
        config.listen.clone_from(listen);
    }
    if let Some(data_dir) = &args.data_dir {
        config.data_dir.clone_from(data_dir);
    }
    config.check()?;
    let relay = Relay::start(&config).await?;
    if config.token.is_some() {
        tracing::info!(upstream = %config.upstream, "following the upstream with a relay token: environments come from it");
    } else {
        tracing::info!(upstream = %config.upstream, environments = config.environments.len(), "following the upstream");
    }
    serve(args, relay, &config.listen).await
}

/// Writes Redis when asked, then serves SDKs, `/status` and `/metrics` until a shutdown signal.
async fn serve(args: &RelayArgs, relay: Relay, listen: &str) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    #[cfg(feature = "redis")]
    args.redis.start(&relay.delivery, Duration::from_secs(1))?;
    #[cfg(not(feature = "redis"))]
    let _ = args;
    let router = relay.router(Some(Arc::new(move || prometheus.render())));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "relay listening on http://{address}");
    flagstaff_delivery::serve(
        listener,
        flagstaff_http::with_nosniff(router),
        Arc::clone(&relay.delivery),
        shutdown_signal(),
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// `flagstaff relay --offline bundle.tar.gz`: serve a bundle, no upstream.
async fn run_offline(args: &RelayArgs, bundle: &std::path::Path) -> anyhow::Result<()> {
    let verifying_key = match &args.verify_key {
        Some(path) => Some(flagstaff_relay::bundle::verifying_key_from_pem(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => {
            tracing::warn!("no --verify-key: the bundle's signature is not checked");
            None
        }
    };
    let config = flagstaff_relay::OfflineConfig {
        bundle: bundle.to_owned(),
        verifying_key,
        limits: flagstaff_relay::config::LimitsConfig::default(),
        reload_interval: Duration::from_secs(1),
    };
    let relay = Relay::start_offline(&config).await?;
    tracing::info!(bundle = %bundle.display(), "serving an offline bundle");
    serve(
        args,
        relay,
        args.listen.as_deref().unwrap_or("127.0.0.1:8031"),
    )
    .await
}
