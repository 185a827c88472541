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
        let (url, admin_url, name) = empty_postgres().await?;
        Some(TestStore {
            store: Arc::new(Store::open(&url).await.unwrap()),
            url,
            _dir: None,
            drop_database: Some((admin_url, name)),
        })
    }

    /// A throwaway PostgreSQL database with no store opened on it yet.
    pub async fn empty_postgres_database() -> Option<EmptyDatabase> {
        let (url, admin_url, name) = empty_postgres().await?;
        Some(EmptyDatabase {
            url,
            drop_database: (admin_url, name),
        })
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.drop_database {
            drop_database(&admin_url, &name).await;
        }
    }
}

/// A fresh PostgreSQL database, dropped with [`EmptyDatabase::cleanup`].
pub struct EmptyDatabase {
    pub url: String,
    drop_database: (String, String),
}

impl EmptyDatabase {
    pub async fn cleanup(self) {
        drop_database(&self.drop_database.0, &self.drop_database.1).await;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Creates a database: (its URL, the admin URL, its name).
async fn empty_postgres() -> Option<(String, String, String)> {
    {
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
        Some((url, admin_url, name))
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
