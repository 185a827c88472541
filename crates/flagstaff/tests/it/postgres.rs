//! Throwaway PostgreSQL databases for the tests that run several nodes.

/// A number that differs between calls (the clock's nanoseconds), for database names.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A fresh PostgreSQL database for this test, dropped at the end; `None` when PostgreSQL is
/// unreachable and not required.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    pub async fn create() -> Option<Database> {
        use sqlx::Connection;
        let admin = std::env::var("FLAGSTAFF_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if std::env::var_os("FLAGSTAFF_REQUIRE_POSTGRES").is_none() => {
                eprintln!("skipping: PostgreSQL at {admin}: {e}");
                return None;
            }
            Err(e) => panic!("PostgreSQL is required but {admin} fails: {e}"),
        };
        let name = format!("flagstaff_nodes_{}_{}", std::process::id(), unique());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        Some(Database {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub async fn drop_it(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}
