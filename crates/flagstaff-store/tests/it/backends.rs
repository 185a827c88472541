//! Throwaway stores for tests.

use std::future::Future;
use std::sync::Arc;

use flagstaff_store::Store;
use sqlx::Connection;

/// A store on a fresh database, and what it takes to clean up after it.
pub struct TestStore {
    pub store: Arc<Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_database: Option<(String, String)>,
}

impl TestStore {
    /// The same database with another `Store` (after the old one was moved or closed).
    pub fn with_store(self, store: Store) -> TestStore {
        TestStore {
            store: Arc::new(store),
            ..self
        }
    }

    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("flagstaff.db").display());
        TestStore {
            store: Arc::new(Store::open(&url).await.unwrap()),
            url,
            _dir: Some(dir),
            drop_database: None,
        }
    }

    /// `None` when PostgreSQL is unreachable and not required.
    pub async fn postgres() -> Option<TestStore> {
        let admin_url = std::env::var("FLAGSTAFF_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) if std::env::var_os("FLAGSTAFF_REQUIRE_POSTGRES").is_none() => {
                eprintln!("\n!!! SKIPPING POSTGRESQL: cannot connect to {admin_url}: {e} !!!\n");
                return None;
            }
            Err(e) => panic!(
                "PostgreSQL is required (FLAGSTAFF_REQUIRE_POSTGRES) but {admin_url} fails: {e}"
            ),
        };
        let name = format!("flagstaff_test_{}_{}", std::process::id(), rand_suffix());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base)
            .to_owned();
        let url = format!("{base}/{name}");
        Some(TestStore {
            store: Arc::new(Store::open(&url).await.unwrap()),
            url,
            _dir: None,
            drop_database: Some((admin_url, name)),
        })
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.drop_database {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// Runs `test` on SQLite and on PostgreSQL (when available).
pub async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = TestStore>,
{
    test(TestStore::sqlite().await).await.cleanup().await;
    if let Some(pg) = TestStore::postgres().await {
        test(pg).await.cleanup().await;
    }
}
