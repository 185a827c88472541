//! A server with delivery and the management API on a random port.

use std::sync::Arc;
use std::time::Duration;

use flagstaff_app::model::{FlagDefinition, Targeting};
use flagstaff_app::{Actor, App};
use flagstaff_app::{FlagRef, WriteMeta};
use flagstaff_delivery::{Delivery, DeliveryConfig};
use flagstaff_store::Store;
use futures_util::StreamExt;
use serde_json::{Value, json};

pub struct Server {
    pub base: String,
    pub app: App,
    pub admin: Actor,
    pub sdk_key: String,
    pub mobile_key: String,
    pub client_side_id: String,
    pub delivery: Arc<Delivery>,
    pub store: Arc<Store>,
    /// The database's URL, for another node on it.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Delivery over `app` served on a random port: its base URL and the plane.
pub async fn serve_delivery(app: App, config: DeliveryConfig) -> (String, Arc<Delivery>) {
    let delivery = Delivery::start(app, config).await.unwrap();
    let router = flagstaff_delivery::router(Arc::clone(&delivery));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = Arc::clone(&delivery);
    tokio::spawn(async move {
        flagstaff_delivery::serve(listener, router, serving, std::future::pending())
            .await
            .unwrap();
    });
    (base, delivery)
}

pub async fn start(config: DeliveryConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("f.db").display());
    let store = Arc::new(Store::open(&url).await.unwrap());
    let app = App::new(Arc::clone(&store));
    let init = app.initialize().await.unwrap();
    let admin = app.authenticate(&init.admin_token).await.unwrap();
    let (base, delivery) = serve_delivery(app.clone(), config).await;
    Server {
        url,
        base,
        app,
        admin,
        sdk_key: init.environments[0].keys.sdk_key.clone(),
        mobile_key: init.environments[0].keys.mobile_key.clone(),
        client_side_id: init.environments[0].keys.client_side_id.clone(),
        delivery,
        store,
        _dir: dir,
    }
}

impl Server {
    /// Waits until delivery has published every change committed so far (its position reaches
    /// the change feed's head), instead of sleeping a fixed time.
    pub async fn caught_up(&self) {
        let head = self.app.head().await.unwrap();
        flagstaff_testkit::eventually(Duration::from_secs(10), "delivery catches up", || async {
            (self.delivery.position() >= head).then_some(())
        })
        .await;
    }
}

pub fn fast() -> DeliveryConfig {
    DeliveryConfig {
        heartbeat_interval: Duration::from_millis(200),
        change_poll_interval: Duration::from_millis(100),
        ..DeliveryConfig::default()
    }
}

/// A client that neither pools connections nor decompresses (tests look at the raw bytes).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// An open SSE response and what has been read of it.
pub struct Stream {
    pub response_headers: reqwest::header::HeaderMap,
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    pub text: String,
    pub ended: bool,
}

impl Stream {
    pub async fn open(base: &str, path: &str, key: &str) -> Stream {
        let request = client()
            .get(format!("{base}{path}"))
            .header("Authorization", key);
        Stream::from_request(request, path).await
    }

    pub async fn from_request(request: reqwest::RequestBuilder, path: &str) -> Stream {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        Stream {
            response_headers: response.headers().clone(),
            body: response.bytes_stream().boxed(),
            text: String::new(),
            ended: false,
        }
    }

    /// Reads until `text` contains `needle` or 5 s pass.
    pub async fn read_until(&mut self, needle: &str) -> bool {
        self.read_until_count(needle, 1).await
    }

    /// Reads until `needle` occurs `count` times (or 5 s pass).
    pub async fn read_until_count(&mut self, needle: &str, count: usize) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.text.matches(needle).count() < count {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_)) | None) => {
                    self.ended = true;
                    return false;
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads until the server ends the response or 5 s pass; whether it ended.
    pub async fn read_to_end(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_)) | None) => {
                    self.ended = true;
                    return true;
                }
                Err(_) => return false,
            }
        }
    }

    /// The `data` of every event named `name`, parsed.
    pub fn events(&self, name: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for block in self.text.split("\n\n") {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v);
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v);
                }
            }
            if event == Some(name) {
                out.push(serde_json::from_str(data.unwrap()).unwrap());
            }
        }
        out
    }
}

/// Creates a boolean flag (off everywhere) in `default`.
pub async fn create_flag(server: &Server, key: &str) {
    let definition: FlagDefinition =
        serde_json::from_value(json!({"key": key, "name": key})).unwrap();
    server
        .app
        .create_flag(&server.admin, "default", definition, "")
        .await
        .unwrap();
}

/// Changes a flag's targeting in `default/production`.
pub async fn set_targeting(server: &Server, key: &str, change: impl FnOnce(&mut Targeting)) {
    let current = server
        .app
        .targeting(&server.admin, "default", "production", key)
        .await
        .unwrap();
    let mut targeting: Targeting = current.value.clone();
    change(&mut targeting);
    server
        .app
        .update_targeting(
            FlagRef {
                project: "default",
                environment: "production",
                key,
            },
            targeting,
            WriteMeta {
                actor: &server.admin,
                expected: current.version,
                comment: "",
            },
        )
        .await
        .unwrap();
}

/// Turns a flag on in `default/production`.
pub async fn turn_on(server: &Server, key: &str) {
    set_targeting(server, key, |t| t.on = true).await;
}

/// Changes settings of `default/production` as the API does, and waits until delivery has
/// applied them.
pub async fn update_environment(server: &Server, settings: flagstaff_app::EnvironmentSettings) {
    let env = server
        .app
        .environment(&server.admin, "default", "production")
        .await
        .unwrap();
    server
        .app
        .update_environment(
            flagstaff_app::EnvRef {
                project: "default",
                environment: "production",
            },
            &env.value.name,
            settings,
            WriteMeta {
                actor: &server.admin,
                expected: env.version,
                comment: "",
            },
        )
        .await
        .unwrap();
    server.caught_up().await;
}
