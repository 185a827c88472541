//! A Flagstaff API on a fresh SQLite database, and a small client for it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flagstaff_app::{App, Initialized};
use flagstaff_events::{Pipeline, PipelineConfig};
use flagstaff_store::{EventStore, Store};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApi {
    pub router: axum::Router,
    pub app: App,
    pub init: Initialized,
    /// The events pipeline, when built `with_insights`.
    pub pipeline: Option<Arc<Pipeline>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

impl TestApi {
    pub async fn new() -> TestApi {
        TestApi::build(false).await
    }

    /// With an events pipeline and its own events database, as `flagstaff serve` runs.
    pub async fn with_insights() -> TestApi {
        TestApi::build(true).await
    }

    async fn build(insights: bool) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!(
            "sqlite://{}",
            dir.path().join("db.sqlite").display()
        ))
        .await
        .unwrap();
        let mut app = App::new(Arc::new(store));
        let mut pipeline = None;
        if insights {
            let events = EventStore::open(&format!(
                "sqlite://{}",
                dir.path().join("events.sqlite").display()
            ))
            .await
            .unwrap();
            let started = Pipeline::start(Arc::new(events), PipelineConfig::default());
            app = app.with_pipeline(Arc::clone(&started));
            pipeline = Some(started);
        }
        let init = app.initialize().await.unwrap();
        TestApi {
            router: flagstaff_api::router(app.clone(), None),
            app,
            init,
            pipeline,
            _dir: dir,
        }
    }

    pub fn admin(&self) -> &str {
        &self.init.admin_token
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => Body::from(json.to_string()),
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, etag, body }
    }

    /// A request whose body is sent as given, JSON or not.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            etag: None,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(self.admin()), &[], None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            path,
            Some(self.admin()),
            &[("x-flagstaff-comment", "testing")],
            Some(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, version: &str, body: Value) -> Reply {
        self.call(
            Method::PUT,
            path,
            Some(self.admin()),
            &[("if-match", version), ("x-flagstaff-comment", "testing")],
            Some(body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, version: &str, body: Value) -> Reply {
        self.call(
            Method::PATCH,
            path,
            Some(self.admin()),
            &[("if-match", version)],
            Some(body),
        )
        .await
    }
}

impl TestApi {
    /// The same API letting webhooks reach loopback addresses (a receiver in the test).
    pub fn with_private_webhooks(mut self) -> TestApi {
        self.app = self.app.clone().with_webhooks_allow_private(true);
        self.router = flagstaff_api::router(self.app.clone(), None);
        self
    }
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

/// A webhook receiver on 127.0.0.1: answers the given statuses in turn, then 200; with
/// `hold`, every request waits until the test releases it.
pub struct Receiver {
    pub url: String,
    pub received: Arc<std::sync::Mutex<Vec<Received>>>,
    pub release: Arc<tokio::sync::Semaphore>,
}

impl Receiver {
    pub async fn start(statuses: Vec<u16>, hold: bool) -> Receiver {
        let received: Arc<std::sync::Mutex<Vec<Received>>> = Arc::default();
        let release = Arc::new(tokio::sync::Semaphore::new(if hold {
            0
        } else {
            tokio::sync::Semaphore::MAX_PERMITS
        }));
        let statuses = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            statuses,
        )));
        let (got, gate) = (Arc::clone(&received), Arc::clone(&release));
        let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (got, gate, statuses) =
                (Arc::clone(&got), Arc::clone(&gate), Arc::clone(&statuses));
            async move {
                got.lock().unwrap().push(Received {
                    headers,
                    body: body.to_vec(),
                });
                let _permit = gate.acquire().await;
                let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url,
            received,
            release,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits (up to `seconds`) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, seconds: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while self.count() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.received.lock().unwrap().clone()
    }
}
