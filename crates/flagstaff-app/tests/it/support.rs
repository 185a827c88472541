//! A fresh app per test: SQLite in a temporary directory, the first start done, a manual clock.

use std::sync::Arc;

use flagstaff_app::model::{FlagDefinition, Targeting};
use flagstaff_app::{Actor, App, AppError, Clock, Initialized};
use flagstaff_app::{FlagRef, WriteMeta};
use flagstaff_store::Store;
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z: where the manual clock starts.
pub const START: i64 = 1_767_225_600_000;

pub struct Fixture {
    pub app: App,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub initialized: Initialized,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("flagstaff.db").display());
        let clock = Clock::manual(START);
        let store = Arc::new(
            Store::open(&url)
                .await
                .expect("open the store")
                .with_clock(clock.clone()),
        );
        let app = App::new(Arc::clone(&store));
        let initialized = app.initialize().await.expect("first start");
        Fixture {
            app,
            store,
            clock,
            initialized,
            _dir: dir,
        }
    }

    /// The folder holding the database (a second node opens the same file).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The same fixture letting webhooks reach loopback addresses.
    pub fn with_private_webhooks(mut self) -> Fixture {
        self.app = self.app.with_webhooks_allow_private(true);
        self
    }

    /// Creates a flag in project `default` from JSON (a definition).
    pub async fn flag(&self, definition: Value) -> Result<(), AppError> {
        let definition: FlagDefinition =
            serde_json::from_value(definition).expect("a definition's shape");
        self.app
            .create_flag(&Actor::system(), "default", definition, "test")
            .await
            .map(|_| ())
    }

    /// Replaces the given fields of a flag's targeting in `environment` and saves it.
    pub async fn targeting(
        &self,
        environment: &str,
        key: &str,
        fields: Value,
    ) -> Result<(), AppError> {
        let current = self
            .app
            .targeting(&Actor::system(), "default", environment, key)
            .await?;
        let mut document = serde_json::to_value(&current.value).expect("targeting as JSON");
        for (name, value) in fields.as_object().expect("an object of fields") {
            document[name] = value.clone();
        }
        let targeting: Targeting = serde_json::from_value(document).expect("targeting's shape");
        self.app
            .update_targeting(
                FlagRef {
                    project: "default",
                    environment,
                    key,
                },
                targeting,
                WriteMeta {
                    actor: &Actor::system(),
                    expected: current.version,
                    comment: "test",
                },
            )
            .await
            .map(|_| ())
    }

    /// Adds a member whose password is `correct horse battery`.
    pub async fn member(&self, email: &str, role: flagstaff_app::Role) {
        let member = flagstaff_app::Member {
            email: email.into(),
            name: email.into(),
            role,
            projects: None,
            custom_roles: Vec::new(),
        };
        self.app
            .create_member(&Actor::system(), member, "correct horse battery", "")
            .await
            .expect("member");
    }

    /// Creates or replaces a segment in `environment` from JSON.
    pub async fn segment(&self, environment: &str, segment: Value) -> Result<(), AppError> {
        let segment: flagstaff_protocol::Segment =
            serde_json::from_value(segment).expect("a segment's shape");
        let expected = self
            .app
            .segment(&Actor::system(), "default", environment, &segment.key)
            .await
            .ok()
            .map(|s| s.version);
        self.app
            .put_segment(
                &Actor::system(),
                "default",
                environment,
                segment,
                expected,
                "test",
            )
            .await
            .map(|_| ())
    }
}

/// A boolean flag's definition.
pub fn boolean(key: &str) -> Value {
    json!({"key": key, "name": key, "kind": "boolean"})
}

/// The code and field of a validation error, or a description of what came instead.
pub fn invalid(result: Result<(), AppError>) -> (String, String) {
    match result {
        Err(AppError::Invalid { code, field, .. }) => (code.as_str().to_owned(), field),
        other => (format!("not invalid: {other:?}"), String::new()),
    }
}
