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
    /// The configuration file (TOML): the upstream, and the environments to serve with their
    /// SDK key (and mobile key, client-side ID, secure mode). README.md "Run a relay" shows one.
    #[arg(long, env = "FLAGSTAFF_RELAY_CONFIG")]
    config: PathBuf,
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
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let mut config: RelayConfig =
        toml::from_str(&text).map_err(|e| flagstaff_relay::ConfigError::Parse(e.to_string()))?;
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
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let relay = Relay::start(&config).await?;
    #[cfg(feature = "redis")]
    args.redis.start(&relay.delivery, Duration::from_secs(1))?;
    let router = relay.router(Some(Arc::new(move || prometheus.render())));
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, upstream = %config.upstream, environments = config.environments.len(), "relay listening on http://{address}");
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
