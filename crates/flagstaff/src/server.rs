//! `flagstaff serve`, `flagstaff admin init` and `flagstaff audit verify`: the server process and
//! the scripts' way to set it up and check it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use flagstaff_app::{App, Initialized};
use flagstaff_events::{Pipeline, PipelineConfig};
use flagstaff_store::{EventStore, Store};

/// Where the data lives; shared by every command that opens the store.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Folder for the embedded SQLite database (created if missing).
    #[arg(long, env = "FLAGSTAFF_DATA_DIR", default_value = "./flagstaff-data")]
    data_dir: PathBuf,
    /// Use this database instead of SQLite under --data-dir, e.g. postgres://user@host/db.
    #[arg(long, env = "FLAGSTAFF_DATABASE_URL")]
    database_url: Option<String>,
    /// A file holding a secret of at least 32 bytes that anchors the audit log's newest entry
    /// on every change, so that `flagstaff audit verify` (given the same file) detects the
    /// deletion of the newest entries as well as edits. Keep it outside the data directory and
    /// the database, and give every node the same file.
    #[arg(long, env = "FLAGSTAFF_AUDIT_KEY_FILE")]
    audit_key_file: Option<PathBuf>,
}

impl StoreArgs {
    /// The events database: a second SQLite file beside the main one, or the same PostgreSQL
    /// database (its tables do not overlap), unless `explicit` names another.
    fn events_url(&self, explicit: Option<&str>) -> String {
        match (explicit, &self.database_url) {
            (Some(url), _) => url.to_owned(),
            (None, Some(url)) => url.clone(),
            (None, None) => format!(
                "sqlite://{}",
                self.data_dir.join("flagstaff-events.db").display()
            ),
        }
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Store> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
                restrict_data_dir(&self.data_dir)?;
                format!("sqlite://{}", self.data_dir.join("flagstaff.db").display())
            }
        };
        let mut store = Store::open(&url)
            .await
            .context("cannot open the database")?;
        if self.database_url.is_none() {
            restrict_data_dir(&self.data_dir)?;
        }
        if let Some(path) = &self.audit_key_file {
            let key = std::fs::read(path)
                .with_context(|| format!("cannot read the audit key file {}", path.display()))?;
            let key = key.trim_ascii();
            if key.len() < flagstaff_store::MIN_AUDIT_KEY_BYTES {
                bail!(
                    "the audit key in {} has {} bytes; it needs at least {} (e.g. `head -c 32 /dev/urandom | base64 > {}`)",
                    path.display(),
                    key.len(),
                    flagstaff_store::MIN_AUDIT_KEY_BYTES,
                    path.display()
                );
            }
            store = store.with_audit_key(key);
        }
        Ok(store)
    }
}

/// Arguments of `flagstaff serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on (port 0 picks a free port, reported in the log).
    #[arg(long, env = "FLAGSTAFF_LISTEN", default_value = "127.0.0.1:8030")]
    listen: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FLAGSTAFF_LOG_JSON")]
    log_json: bool,
    /// Seconds between heartbeat comments on SDK streams (SDKs reconnect after 5 minutes of
    /// silence).
    #[arg(long, env = "FLAGSTAFF_SDK_HEARTBEAT_SECONDS", default_value_t = 60)]
    sdk_heartbeat_seconds: u64,
    /// Most SDK streams served at once; more are told to retry later (503).
    #[arg(long, env = "FLAGSTAFF_MAX_SDK_STREAMS", default_value_t = 50_000)]
    max_sdk_streams: usize,
    /// Most browser and mobile streams served at once (counted apart from server SDK streams).
    #[arg(long, env = "FLAGSTAFF_MAX_CLIENT_STREAMS", default_value_t = 10_000)]
    max_client_streams: usize,
    /// Most browser and mobile streams of one environment.
    #[arg(
        long,
        env = "FLAGSTAFF_MAX_CLIENT_STREAMS_PER_ENVIRONMENT",
        default_value_t = 5_000
    )]
    max_client_streams_per_environment: usize,
    /// Milliseconds a client may take to send a request's head (also the idle time allowed
    /// between requests on a kept-alive connection); slower connections are closed.
    #[arg(
        long,
        env = "FLAGSTAFF_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,
    /// Most connections held at once; more are answered 503 with Retry-After and closed.
    #[arg(long, env = "FLAGSTAFF_MAX_CONNECTIONS", default_value_t = 15_000)]
    max_connections: usize,
    /// Most connections held at once from one client address.
    #[arg(
        long,
        env = "FLAGSTAFF_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 2_000
    )]
    max_connections_per_address: usize,
    /// Milliseconds a client may take to send a request body once its head has arrived;
    /// slower bodies are answered 408 and the connection is closed.
    #[arg(
        long,
        env = "FLAGSTAFF_BODY_READ_TIMEOUT_MS",
        default_value_t = flagstaff_http::DEFAULT_BODY_READ_TIMEOUT_MS
    )]
    body_read_timeout_ms: u64,
    /// Milliseconds between checks for changes made by other Flagstaff nodes sharing the
    /// database (changes made through this node reach SDKs at once).
    #[arg(long, env = "FLAGSTAFF_CHANGE_POLL_MS", default_value_t = 1000)]
    change_poll_ms: u64,
    /// Milliseconds the database may go unanswered before this node stops serving SDKs what
    /// it last knew: SDK streams end, SDK requests and /ready get 503 (a load balancer sends
    /// SDKs to another node) until the database answers again. At least three change polls;
    /// 0 serves the last data however old.
    #[arg(long, env = "FLAGSTAFF_STALE_AFTER_MS", default_value_t = 15_000)]
    stale_after_ms: u64,
    /// Database for analytics events (flag insights). Default: flagstaff-events.db under
    /// --data-dir, or the --database-url PostgreSQL database.
    #[arg(long, env = "FLAGSTAFF_EVENTS_DATABASE_URL")]
    events_database_url: Option<String>,
    /// Most analytics events waiting to be written; payloads beyond it are dropped and
    /// counted (SDKs are still answered 202).
    #[arg(
        long,
        env = "FLAGSTAFF_EVENTS_QUEUE_CAPACITY",
        default_value_t = 100_000
    )]
    events_queue_capacity: usize,
    /// Most bytes of analytics payloads (decoded JSON) waiting to be written; payloads beyond
    /// it are dropped and counted, like those beyond --events-queue-capacity.
    #[arg(
        long,
        env = "FLAGSTAFF_EVENTS_QUEUE_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    events_queue_bytes: usize,
    /// Event payloads per second accepted from browsers and phones per environment (bursts of
    /// twice that); more are answered 429 with Retry-After, which SDKs retry.
    #[arg(
        long,
        env = "FLAGSTAFF_MAX_CLIENT_EVENT_PAYLOADS_PER_SECOND",
        default_value_t = 1_000
    )]
    max_client_event_payloads_per_second: u32,
    /// Milliseconds between writes of aggregated analytics events.
    #[arg(long, env = "FLAGSTAFF_EVENTS_FLUSH_MS", default_value_t = 1000)]
    events_flush_ms: u64,
    /// Serve HTTPS (API, dashboard and every SDK endpoint, on the same port) with this PEM
    /// certificate chain, leaf first; needs --tls-key. SIGHUP reads both files again.
    #[cfg(feature = "tls")]
    #[arg(long, env = "FLAGSTAFF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[cfg(feature = "tls")]
    #[arg(long, env = "FLAGSTAFF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Single sign-on: the OpenID Provider's issuer URL (discovery at
    /// <issuer>/.well-known/openid-configuration). The sign-in page then offers "Sign in with
    /// SSO"; register <this server's URL>/sso/callback at the provider as the redirect URI.
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_ISSUER", requires = "oidc_client_id")]
    oidc_issuer: Option<String>,
    /// This server's client ID at the OpenID Provider.
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    /// Its client secret. Prefer the environment variable: other users of the machine can read
    /// a process's command line.
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_CLIENT_SECRET", hide_env_values = true)]
    oidc_client_secret: Option<String>,
    /// The base role of members created by their first SSO sign-in: noAccess, reader or writer
    /// (never admin: grant that by hand).
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_DEFAULT_ROLE", default_value = "reader", value_parser = ["noAccess", "reader", "writer"])]
    oidc_default_role: String,
    /// An ID-token claim listing groups (e.g. groups): at every SSO sign-in the member is put in
    /// exactly the existing teams whose keys it names.
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_GROUPS_CLAIM")]
    oidc_groups_claim: Option<String>,
    /// PEM certificate authorities to trust for the OpenID Provider besides the system's.
    #[cfg(feature = "oidc")]
    #[arg(long, env = "FLAGSTAFF_OIDC_CA_FILE")]
    oidc_ca_file: Option<PathBuf>,
    /// Whether members may sign in with a password (and join by invitation); false leaves single
    /// sign-on as the only way in.
    #[arg(long, env = "FLAGSTAFF_PASSWORD_SIGN_IN", default_value_t = true, action = clap::ArgAction::Set)]
    password_sign_in: bool,
    /// Let webhooks reach loopback, private and link-local addresses (receivers inside your
    /// network). Off by default, so that a webhook cannot be aimed at internal services.
    #[arg(long, env = "FLAGSTAFF_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    #[cfg(feature = "redis")]
    #[command(flatten)]
    redis: RedisArgs,
}

/// Where daemon-mode SDKs read flags: `serve` and `relay` take the same options.
#[cfg(feature = "redis")]
#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Write every environment's flags and segments to this Redis, in LaunchDarkly's persistent
    /// store layout, and keep them current: SDKs in daemon mode (`use_ldd`) read them from there
    /// (`redis://host:port[/db]`).
    #[arg(long, env = "FLAGSTAFF_REDIS_URL")]
    redis_url: Option<String>,
    /// The Redis key prefix of each environment; `{project}` and `{environment}` are replaced by
    /// its keys. Configure each daemon-mode SDK with its environment's prefix.
    #[arg(
        long,
        env = "FLAGSTAFF_REDIS_PREFIX",
        default_value = "flagstaff:{project}:{environment}"
    )]
    redis_prefix: String,
}

#[cfg(feature = "redis")]
impl RedisArgs {
    /// Starts writing `delivery`'s environments to Redis when a URL is given.
    pub fn start(
        &self,
        delivery: &Arc<flagstaff_delivery::Delivery>,
        discover_interval: Duration,
    ) -> anyhow::Result<()> {
        let Some(url) = &self.redis_url else {
            return Ok(());
        };
        flagstaff_delivery::redis_store::start(
            Arc::clone(delivery),
            flagstaff_delivery::redis_store::RedisStoreConfig {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                check_interval: Duration::from_secs(5),
                discover_interval,
            },
        )?;
        tracing::info!(prefix = %self.redis_prefix, "writing every environment to Redis for daemon-mode SDKs");
        Ok(())
    }
}

/// The dashboard, with single sign-on when an OpenID Provider is configured.
fn dashboard(args: &ServeArgs, app: App) -> anyhow::Result<Arc<flagstaff_dashboard::Dashboard>> {
    #[cfg(feature = "oidc")]
    if let (Some(issuer), Some(client_id)) = (&args.oidc_issuer, &args.oidc_client_id) {
        let default_role = match args.oidc_default_role.as_str() {
            "noAccess" => flagstaff_app::Role::NoAccess,
            "writer" => flagstaff_app::Role::Writer,
            _ => flagstaff_app::Role::Reader,
        };
        let ca_pem = match &args.oidc_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let config = flagstaff_dashboard::sso::OidcConfig {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: args.oidc_client_secret.clone(),
            default_role,
            groups_claim: args.oidc_groups_claim.clone(),
            ca_pem,
        };
        tracing::info!(%issuer, "single sign-on through this OpenID Provider");
        return flagstaff_dashboard::Dashboard::with_sso(app, config)
            .map_err(|e| anyhow::anyhow!("single sign-on: {e}"));
    }
    if !args.password_sign_in {
        tracing::warn!(
            "password sign-in is off and no OpenID Provider is configured: nobody can sign in to the dashboard"
        );
    }
    Ok(flagstaff_dashboard::Dashboard::new(app))
}

pub(crate) fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLAGSTAFF_LOG")
        .unwrap_or_else(|_| "info".into());
    // Colour only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn print_credentials(init: &Initialized) {
    println!(
        "Flagstaff is initialized. These credentials are shown once and stored only as hashes:"
    );
    println!();
    println!("  admin API token:  {}", init.admin_token);
    for env in &init.environments {
        println!();
        println!("  {}/{}", init.project.key, env.environment.key);
        println!("    SDK key:         {}", env.keys.sdk_key);
        println!("    mobile key:      {}", env.keys.mobile_key);
        println!("    client-side ID:  {}", env.keys.client_side_id);
    }
    println!();
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Limits the data directory to the server's own user: it holds the database, whose audit log
/// and HMAC key schedules are not for other users of the machine. The directory becomes `0700`
/// and every file in it `0600` (SQLite creates its files with the process's umask).
fn restrict_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    let store = Arc::new(args.store.open().await?);
    tracing::info!(backend = ?store.backend(), "database open");
    let events = Arc::new(
        EventStore::open(&args.store.events_url(args.events_database_url.as_deref()))
            .await
            .context("cannot open the events database")?,
    );
    let pipeline = Pipeline::start(
        Arc::clone(&events),
        PipelineConfig {
            queue_capacity: args.events_queue_capacity.max(1),
            queue_bytes: args.events_queue_bytes.max(1),
            flush_interval: Duration::from_millis(args.events_flush_ms.max(10)),
            // One clock for the server: the store's timestamps and the events' buckets agree.
            clock: store.clock().clone(),
            ..PipelineConfig::default()
        },
    );
    if args.store.database_url.is_none() {
        restrict_data_dir(&args.store.data_dir)?;
    }
    let app = App::new(Arc::clone(&store))
        .with_pipeline(Arc::clone(&pipeline))
        .with_password_sign_in(args.password_sign_in)
        .with_webhooks_allow_private(args.webhooks_allow_private);
    if !app.is_initialized().await? {
        match app.initialize().await {
            Ok(initialized) => print_credentials(&initialized),
            // Several nodes started at once on an empty database: one of them initializes it
            // (its commits conflict with nobody's), the others find it done.
            Err(
                flagstaff_app::AppError::AlreadyExists(_)
                | flagstaff_app::AppError::Conflict { .. },
            ) => {
                tracing::info!("another node initialized the database first");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let render: flagstaff_api::MetricsRender = Arc::new(move || prometheus.render());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let tls = load_tls(args)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, "listening on {scheme}://{address} (dashboard at {scheme}://{address}/)");
    let delivery = flagstaff_delivery::Delivery::start(
        app.clone(),
        flagstaff_delivery::DeliveryConfig {
            heartbeat_interval: Duration::from_secs(args.sdk_heartbeat_seconds.max(1)),
            change_poll_interval: Duration::from_millis(args.change_poll_ms.max(10)),
            max_streams: args.max_sdk_streams,
            max_client_streams: args.max_client_streams,
            max_client_streams_per_environment: args.max_client_streams_per_environment,
            max_client_event_payloads_per_second: args.max_client_event_payloads_per_second.max(1),
            header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(100)),
            max_connections: args.max_connections.max(1),
            max_connections_per_address: args.max_connections_per_address.max(1),
            stale_after: (args.stale_after_ms > 0)
                .then(|| Duration::from_millis(args.stale_after_ms)),
            ..flagstaff_delivery::DeliveryConfig::default()
        },
    )
    .await?;
    #[cfg(feature = "redis")]
    args.redis.start(
        &delivery,
        Duration::from_millis(args.change_poll_ms.max(10)),
    )?;
    flagstaff_http::set_body_read_timeout(Duration::from_millis(
        args.body_read_timeout_ms.max(100),
    ));
    tokio::spawn(remove_expired_hourly(app.clone()));
    // Scheduled changes run exactly once cluster-wide, and webhook deliveries are queued once,
    // whichever nodes run these (flagstaff-app's schedules.rs and webhooks.rs).
    tokio::spawn(app.clone().run_scheduler());
    tokio::spawn(app.clone().run_experiments());
    tokio::spawn(
        app.clone()
            .run_webhooks(flagstaff_app::webhooks::webhook_client(
                args.webhooks_allow_private,
            )),
    );
    let dashboard = dashboard(args, app.clone())?;
    let router = flagstaff_api::router(app, Some(render))
        .merge(flagstaff_delivery::router(Arc::clone(&delivery)))
        .merge(flagstaff_dashboard::router(Arc::clone(&dashboard)));
    let router = flagstaff_http::with_nosniff(with_freshness(router, Arc::clone(&delivery)));
    // The dashboard's live-update streams end with the server, like SDK streams.
    let shutdown = async move {
        shutdown_signal().await;
        dashboard.shutdown();
    };
    // Our own accept loop: SDK streams take a lean path, everything else goes to the router.
    // On shutdown it ends SDK streams (which never end by themselves) and drains requests.
    match tls {
        #[cfg(feature = "tls")]
        Some(tls) => {
            tokio::spawn(reload_tls_on_hangup(Arc::clone(&tls)));
            let router = with_hsts(router);
            flagstaff_delivery::serve_tls(listener, router, delivery, tls, shutdown).await?;
        }
        _ => flagstaff_delivery::serve(listener, router, delivery, shutdown).await?,
    }
    // Events accepted before the listener closed are written before the process ends.
    pipeline.close().await;
    events.close().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(feature = "tls")]
type TlsSetting = Option<Arc<flagstaff_delivery::tls::Tls>>;
#[cfg(not(feature = "tls"))]
type TlsSetting = Option<std::convert::Infallible>;

/// The TLS configuration `--tls-cert` and `--tls-key` name, read now so that a bad file stops
/// the server at start instead of failing every handshake.
#[cfg(feature = "tls")]
fn load_tls(args: &ServeArgs) -> anyhow::Result<TlsSetting> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(Arc::new(
            flagstaff_delivery::tls::Tls::load(cert, key)
                .context("cannot use --tls-cert/--tls-key")?,
        ))),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "tls"))]
fn load_tls(_args: &ServeArgs) -> anyhow::Result<TlsSetting> {
    Ok(None)
}

/// Reads the certificate and key again on every SIGHUP (after a renewal); open connections keep
/// the certificate they started with, and a reload that fails keeps the old one.
#[cfg(feature = "tls")]
async fn reload_tls_on_hangup(tls: Arc<flagstaff_delivery::tls::Tls>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the certificate will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(error) => {
                tracing::error!(%error, "SIGHUP: cannot reload the TLS certificate; keeping the current one")
            }
        }
    }
}

/// `/ready` answers `503` while delivery does not vouch for its data (the database went
/// unanswered for longer than `--stale-after-ms`), not only when the database fails a ping
/// now: a load balancer's health check then takes the node out until it has caught up.
fn with_freshness(
    router: axum::Router,
    delivery: Arc<flagstaff_delivery::Delivery>,
) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let delivery = Arc::clone(&delivery);
            async move {
                if request.uri().path() == "/ready" && !delivery.is_fresh() {
                    return axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"status": "stale"})),
                    ));
                }
                next.run(request).await
            }
        },
    ))
}

/// Tells browsers to use HTTPS for this host from now on (a year), once they have reached it
/// over HTTPS. Only when the server itself serves TLS: behind a proxy, the proxy decides.
#[cfg(feature = "tls")]
fn with_hsts(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_response(
        |mut response: axum::response::Response| async move {
            response.headers_mut().insert(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static("max-age=31536000"),
            );
            response
        },
    ))
}

/// Removes expired sessions, tokens and rotated keys from the database at start and every hour
/// (they stop working at their expiry whether or not this has run).
async fn remove_expired_hourly(app: App) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        if let Err(error) = app.remove_expired().await {
            tracing::warn!(%error, "cannot remove expired sessions, tokens and keys");
        }
    }
}

/// `flagstaff admin init`: what `serve` does on first start, for scripts.
pub async fn admin_init(store: &StoreArgs, json: bool) -> anyhow::Result<()> {
    let app = App::new(Arc::new(store.open().await?));
    if app.is_initialized().await? {
        bail!(
            "already initialized: credentials are shown only once; create a new token with the API"
        );
    }
    let init = app.initialize().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&init)?);
    } else {
        print_credentials(&init);
    }
    app.close().await;
    Ok(())
}

/// `flagstaff audit verify`: walks the hash chain; fails at the first broken link.
pub async fn audit_verify(store_args: &StoreArgs) -> anyhow::Result<()> {
    let store = store_args.open().await?;
    let verification = store.verify_audit().await?;
    store.close().await;
    match verification.first_broken {
        None => {
            let anchor = match (verification.anchored_seq, &store_args.audit_key_file) {
                (Some(seq), _) => format!("; the newest entry {seq} matches the anchored head"),
                (None, Some(_)) => {
                    "; no anchored head yet (the next change made with the key anchors it)".into()
                }
                (None, None) => "; the head is not anchored (without --audit-key-file the \
                    deletion of the newest entries cannot be detected)"
                    .into(),
            };
            println!(
                "audit log intact: {} entries, every hash and link verified{anchor}",
                verification.entries
            );
            Ok(())
        }
        Some(seq) => bail!(
            "audit log broken at entry {seq}: {} ({} entries before it verified)",
            verification.problem.unwrap_or_default(),
            verification.entries
        ),
    }
}
