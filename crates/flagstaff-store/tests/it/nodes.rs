//! Several nodes on one PostgreSQL database (issue 23): starting together, and hearing each
//! other's commits. PostgreSQL only; skipped with a warning where it is unreachable.

use std::sync::Arc;
use std::time::Duration;

use flagstaff_store::{AuditDraft, Change, EventStore, Expect, Store, Write};
use serde_json::json;
use sqlx::{Connection, Row};

use crate::backends::TestStore;

fn create(key: &str) -> Change {
    Change {
        writes: vec![Write::Put {
            kind: "flag".into(),
            scope: "p".into(),
            key: key.into(),
            body: json!({"key": key}),
            expect: Expect::Absent,
        }],
        audit: AuditDraft {
            actor: "tester".into(),
            action: "flag.create".into(),
            kind: "flag".into(),
            scope: "p".into(),
            key: key.into(),
            ..AuditDraft::default()
        },
    }
}

/// Waits until `store` has heard of `seq`, failing after a few seconds.
async fn hears(store: &Store, seq: u64) -> Duration {
    let started = std::time::Instant::now();
    let mut commits = store.watch_commits();
    tokio::time::timeout(Duration::from_secs(10), commits.wait_for(|at| *at >= seq))
        .await
        .unwrap_or_else(|_| panic!("the other node never heard of commit {seq}"))
        .unwrap();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_at_the_same_moment_on_an_empty_database_all_open_it() {
    let Some(database) = TestStore::empty_postgres_database().await else {
        return;
    };
    // As a deployment with replicas starts them: at once, each with both databases. Without
    // the migration lock taken before anything else, PostgreSQL fails some of them on
    // `pg_type_typname_nsp_index` (concurrent `CREATE TABLE IF NOT EXISTS`).
    let nodes: Vec<_> = (0..6)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move {
                let store = Store::open(&url).await.map_err(|e| e.to_string())?;
                let events = EventStore::open(&url).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((store, events))
            })
        })
        .collect();
    let mut opened = Vec::new();
    for node in nodes {
        opened.push(node.await.unwrap().expect("every node opens the database"));
    }
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    for table in ["schema_migrations", "event_schema_migrations"] {
        let rows = sqlx::query(&format!(
            "SELECT version, COUNT(*) AS n FROM {table} GROUP BY version ORDER BY version"
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "{table} records the migrations");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.get::<i64, _>("version"), i as i64 + 1, "{table}");
            assert_eq!(row.get::<i64, _>("n"), 1, "{table}: each migration once");
        }
    }
    // And they work: a write through one is read through another.
    opened[0].0.commit(create("a")).await.unwrap();
    assert!(
        opened[5]
            .0
            .get_live("flag", "p", "a")
            .await
            .unwrap()
            .is_some()
    );
    for (store, events) in opened {
        store.close().await;
        events.close().await;
    }
    drop(conn);
    database.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_wakes_the_other_nodes_at_once() {
    let Some(database) = TestStore::empty_postgres_database().await else {
        return;
    };
    let a = Arc::new(Store::open(&database.url).await.unwrap());
    let b = Store::open(&database.url).await.unwrap();
    let c = Store::open(&database.url).await.unwrap();
    // Give the listeners their moment to start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let seq = a.commit(create(&format!("f{i}"))).await.unwrap().audit_seq;
        // Nobody reads the feed here: only the notification can move B's and C's position.
        slowest = slowest.max(hears(&b, seq).await).max(hears(&c, seq).await);
        assert_eq!(b.last_commit(), seq);
    }
    // Far below the one-second head poll this replaces (a loaded CI machine is allowed a lot).
    assert!(
        slowest < Duration::from_millis(900),
        "slowest hint {slowest:?}"
    );

    // A commit that fails (a conflict) is not announced.
    let before = b.last_commit();
    assert!(a.commit(create("f0")).await.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.last_commit(), before);

    // The listening connection is cut (a restart of PostgreSQL, a network blip): B reconnects
    // and reads the head, so a commit made while it was deaf is still heard without a poll.
    let mut admin = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let cut = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(cut.len() >= 2, "the listeners were found and cut");
    let seq = a.commit(create("while-deaf")).await.unwrap().audit_seq;
    hears(&b, seq).await;
    hears(&c, seq).await;
    drop(admin);
    a.close().await;
    b.close().await;
    c.close().await;
    database.cleanup().await;
}
