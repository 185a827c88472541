//! What every backend must do.

use std::sync::Arc;

use flagstaff_store::{AuditDraft, AuditQuery, Change, Expect, Store, StoreError, Write};
use serde_json::json;

use crate::backends::{TestStore, on_every_backend};

fn put(key: &str, body: serde_json::Value, expect: Expect) -> Write {
    Write::Put {
        kind: "flag".into(),
        scope: "p".into(),
        key: key.into(),
        body,
        expect,
    }
}

fn change(writes: Vec<Write>, action: &str) -> Change {
    Change {
        writes,
        audit: AuditDraft {
            actor: "tester".into(),
            action: action.into(),
            kind: "flag".into(),
            scope: "p".into(),
            key: "k".into(),
            comment: "why".into(),
            before: None,
            after: Some(json!({"x": 1})),
        },
    }
}

fn conflict_version(result: Result<flagstaff_store::Committed, StoreError>) -> Option<u64> {
    match result {
        Err(StoreError::Conflict { current, .. }) => current,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_are_versioned_and_checked() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        let first = s
            .commit(change(
                vec![put("a", json!({"v": 1}), Expect::Absent)],
                "create",
            ))
            .await
            .unwrap();
        assert_eq!(first.versions, vec![1]);
        // A second create of the same key conflicts and reports the live version.
        assert_eq!(
            conflict_version(
                s.commit(change(vec![put("a", json!({}), Expect::Absent)], "create"))
                    .await
            ),
            Some(1)
        );
        // An update from the version we read succeeds; a stale one conflicts.
        let second = s
            .commit(change(
                vec![put("a", json!({"v": 2}), Expect::Version(1))],
                "update",
            ))
            .await
            .unwrap();
        assert_eq!(second.versions, vec![2]);
        assert_eq!(
            conflict_version(
                s.commit(change(
                    vec![put("a", json!({"v": 3}), Expect::Version(1))],
                    "update"
                ))
                .await
            ),
            Some(2)
        );
        let doc = s.get_live("flag", "p", "a").await.unwrap().unwrap();
        assert_eq!(
            (doc.version, doc.body),
            (2, json!({"v": 2})),
            "the stale write changed nothing"
        );
        // Updating something that does not exist conflicts with no current version.
        assert_eq!(
            conflict_version(
                s.commit(change(
                    vec![put("zz", json!({}), Expect::Version(1))],
                    "update"
                ))
                .await
            ),
            None
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_failed_change_writes_nothing_at_all() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        s.commit(change(vec![put("a", json!(1), Expect::Absent)], "create"))
            .await
            .unwrap();
        // The first write would succeed, the second conflicts: neither lands, nor the audit entry.
        let result = s
            .commit(change(
                vec![
                    put("b", json!(2), Expect::Absent),
                    put("a", json!(3), Expect::Absent),
                ],
                "both",
            ))
            .await;
        assert!(matches!(result, Err(StoreError::Conflict { .. })));
        assert!(s.get("flag", "p", "b").await.unwrap().is_none());
        let entries = s
            .audit(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(entries.len(), 1, "only the first change is audited");
        t
    })
    .await;
}

#[tokio::test]
async fn versions_grow_across_delete_and_recreate() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        s.commit(change(vec![put("a", json!(1), Expect::Absent)], "create"))
            .await
            .unwrap();
        s.commit(change(vec![put("a", json!(2), Expect::Any)], "update"))
            .await
            .unwrap();
        let deleted = s
            .commit(change(
                vec![Write::Delete {
                    kind: "flag".into(),
                    scope: "p".into(),
                    key: "a".into(),
                    expect: Expect::Version(2),
                }],
                "delete",
            ))
            .await
            .unwrap();
        assert_eq!(deleted.versions, vec![3]);
        let tombstone = s.get("flag", "p", "a").await.unwrap().unwrap();
        assert!(tombstone.deleted);
        assert_eq!(
            tombstone.body,
            json!(2),
            "a tombstone keeps its last content"
        );
        assert!(s.get_live("flag", "p", "a").await.unwrap().is_none());
        assert!(s.list("flag", "p").await.unwrap().is_empty());
        assert_eq!(s.list_with_tombstones("flag", "p").await.unwrap().len(), 1);
        // Deleting again conflicts: there is nothing live to delete.
        let again = s
            .commit(change(
                vec![Write::Delete {
                    kind: "flag".into(),
                    scope: "p".into(),
                    key: "a".into(),
                    expect: Expect::Any,
                }],
                "delete",
            ))
            .await;
        assert_eq!(conflict_version(again), None);
        // Re-created, it continues from the tombstone's version.
        let recreated = s
            .commit(change(vec![put("a", json!(4), Expect::Absent)], "create"))
            .await
            .unwrap();
        assert_eq!(recreated.versions, vec![4]);
        t
    })
    .await;
}

#[tokio::test]
async fn audit_entries_are_queryable_and_chained() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        for (i, actor) in ["ann", "bob", "ann"].iter().enumerate() {
            let mut c = change(
                vec![put(&format!("f{i}"), json!(i), Expect::Absent)],
                "create",
            );
            c.audit.actor = (*actor).into();
            c.audit.key = format!("f{i}");
            s.commit(c).await.unwrap();
        }
        let all = s
            .audit(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let newest = s
            .audit(&AuditQuery {
                limit: 2,
                newest_first: true,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
        let older = s
            .audit(&AuditQuery {
                limit: 10,
                newest_first: true,
                before_seq: Some(2),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(older.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(all[0].prev_hash, flagstaff_store::GENESIS_HASH);
        assert_eq!(all[1].prev_hash, all[0].hash);
        assert_eq!(all[0].after, Some(json!({"x": 1})));
        let by_ann = s
            .audit(&AuditQuery {
                actor: Some("ann".into()),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(by_ann.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
        let by_key = s
            .audit(&AuditQuery {
                kind: Some("flag".into()),
                scope: Some("p".into()),
                key: Some("f1".into()),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(by_key.len(), 1);
        let page = s
            .audit(&AuditQuery {
                after_seq: Some(1),
                limit: 1,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        let future = s
            .audit(&AuditQuery {
                since: Some(all[2].at + 60_000),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(future.is_empty());
        let verification = s.verify_audit().await.unwrap();
        assert_eq!((verification.entries, verification.first_broken), (3, None));
        t
    })
    .await;
}

#[tokio::test]
async fn tampering_with_the_audit_log_is_detected() {
    on_every_backend(|t: TestStore| async move {
        for i in 0..4 {
            t.store
                .commit(change(
                    vec![put(&format!("f{i}"), json!(i), Expect::Absent)],
                    "create",
                ))
                .await
                .unwrap();
        }
        // Edit entry 2 behind the store's back, as someone with database access might.
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&t.url)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET comment = 'nothing to see' WHERE seq = 2")
            .execute(&mut conn)
            .await
            .unwrap();
        let verification = t.store.verify_audit().await.unwrap();
        assert_eq!(verification.first_broken, Some(2), "{verification:?}");
        assert_eq!(verification.entries, 1);
        // Deleting an entry is caught too.
        sqlx::query("DELETE FROM audit_log WHERE seq <= 2")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(t.store.verify_audit().await.unwrap().first_broken, Some(3));
        t
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_neither_lose_updates_nor_break_the_chain() {
    on_every_backend(|t: TestStore| async move {
        let store = Arc::clone(&t.store);
        store
            .commit(change(
                vec![put("counter", json!(0), Expect::Absent)],
                "create",
            ))
            .await
            .unwrap();
        // Read-modify-write with retries on conflict: every increment must land exactly once.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    loop {
                        let doc = store
                            .get_live("flag", "p", "counter")
                            .await
                            .unwrap()
                            .unwrap();
                        let next = doc.body.as_i64().unwrap() + 1;
                        match store
                            .commit(change(
                                vec![put("counter", json!(next), Expect::Version(doc.version))],
                                "increment",
                            ))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let doc = store
            .get_live("flag", "p", "counter")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc.body, json!(40));
        assert_eq!(doc.version, 41);
        let verification = store.verify_audit().await.unwrap();
        assert_eq!(
            (verification.entries, verification.first_broken),
            (41, None)
        );
        t
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_everything() {
    on_every_backend(|t: TestStore| async move {
        t.store
            .commit(change(
                vec![put("a", json!({"kept": true}), Expect::Absent)],
                "create",
            ))
            .await
            .unwrap();
        t.store.close().await;
        let reopened = Store::open(&t.url).await.unwrap();
        assert_eq!(
            reopened
                .get_live("flag", "p", "a")
                .await
                .unwrap()
                .unwrap()
                .body,
            json!({"kept": true})
        );
        assert_eq!(reopened.verify_audit().await.unwrap().entries, 1);
        t.with_store(reopened)
    })
    .await;
}

#[tokio::test]
async fn the_change_feed_lists_every_commit_in_order_and_wakes_watchers() {
    on_every_backend(|t: TestStore| async move {
        assert_eq!(t.store.head().await.unwrap(), 0);
        let mut watch = t.store.watch_commits();
        let first = t
            .store
            .commit(change(vec![put("a", json!(1), Expect::Absent)], "create"))
            .await
            .unwrap();
        assert!(watch.has_changed().unwrap(), "a commit wakes watchers");
        assert_eq!(*watch.borrow_and_update(), first.audit_seq);
        // A refused change appends nothing to the feed.
        assert!(
            t.store
                .commit(change(vec![put("a", json!(2), Expect::Absent)], "create"))
                .await
                .is_err()
        );
        let second = t
            .store
            .commit(change(vec![put("b", json!(1), Expect::Absent)], "update"))
            .await
            .unwrap();
        assert_eq!(t.store.head().await.unwrap(), second.audit_seq);
        let all = t.store.changes_after(0, 100).await.unwrap();
        let seqs: Vec<u64> = all.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![first.audit_seq, second.audit_seq]);
        assert_eq!(
            (
                all[1].action.as_str(),
                all[1].kind.as_str(),
                all[1].scope.as_str()
            ),
            ("update", "flag", "p")
        );
        let after_first = t.store.changes_after(first.audit_seq, 100).await.unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(t.store.changes_after(0, 1).await.unwrap().len(), 1);
        // A second handle on the same database starts its watch at the head.
        t.store.close().await;
        let reopened = Store::open(&t.url).await.unwrap();
        assert_eq!(*reopened.watch_commits().borrow(), second.audit_seq);
        t.with_store(reopened)
    })
    .await;
}

#[tokio::test]
async fn purging_removes_documents_and_tombstones_outright_and_nothing_else() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        s.commit(change(
            vec![
                put("live", json!({}), Expect::Absent),
                put("gone", json!({}), Expect::Absent),
                put("kept", json!({}), Expect::Absent),
            ],
            "create",
        ))
        .await
        .unwrap();
        s.commit(change(
            vec![Write::Delete {
                kind: "flag".into(),
                scope: "p".into(),
                key: "gone".into(),
                expect: Expect::Any,
            }],
            "delete",
        ))
        .await
        .unwrap();
        let head = s.head().await.unwrap();
        let purged = s
            .purge(
                "flag",
                "p",
                &["live".into(), "gone".into(), "never-existed".into()],
            )
            .await
            .unwrap();
        assert_eq!(purged, 2, "the live document and the tombstone");
        assert!(s.get("flag", "p", "live").await.unwrap().is_none());
        assert!(s.get("flag", "p", "gone").await.unwrap().is_none());
        assert!(s.get_live("flag", "p", "kept").await.unwrap().is_some());
        assert_eq!(s.head().await.unwrap(), head, "no audit entry, no change");
        assert!(s.verify_audit().await.unwrap().first_broken.is_none());
        t
    })
    .await;
}

#[tokio::test]
async fn with_an_audit_key_deleting_the_newest_entries_is_detected() {
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    on_every_backend(|t: TestStore| async move {
        let keyed = Store::open(&t.url).await.unwrap().with_audit_key(KEY);
        for i in 0..4 {
            keyed
                .commit(change(
                    vec![put(&format!("a{i}"), json!(i), Expect::Absent)],
                    "create",
                ))
                .await
                .unwrap();
        }
        let verification = keyed.verify_audit().await.unwrap();
        assert_eq!(
            (verification.first_broken, verification.anchored_seq),
            (None, Some(4)),
            "{verification:?}"
        );
        // Without the key the shorter chain would look intact: the hash chain alone cannot
        // tell that entries 3 and 4 ever existed.
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&t.url)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_log WHERE seq >= 3")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(t.store.verify_audit().await.unwrap().first_broken, None);
        let verification = keyed.verify_audit().await.unwrap();
        assert_eq!(verification.first_broken, Some(3), "{verification:?}");
        assert!(
            verification.problem.as_deref().unwrap().contains("removed"),
            "{verification:?}"
        );
        // Re-anchoring the shorter chain needs the key: a MAC made with another is refused.
        let other = Store::open(&t.url)
            .await
            .unwrap()
            .with_audit_key(b"another key, another key, another");
        sqlx::query("DELETE FROM audit_log")
            .execute(&mut conn)
            .await
            .unwrap();
        other
            .commit(change(vec![put("b", json!(1), Expect::Absent)], "create"))
            .await
            .unwrap();
        let verification = keyed.verify_audit().await.unwrap();
        assert_eq!(verification.first_broken, Some(1), "{verification:?}");
        assert!(verification.problem.as_deref().unwrap().contains("key"));
        // Entries written by a server without the key are reported after the anchored head.
        t.store
            .commit(change(vec![put("c", json!(1), Expect::Absent)], "create"))
            .await
            .unwrap();
        let verification = other.verify_audit().await.unwrap();
        assert_eq!(verification.first_broken, Some(2), "{verification:?}");
        keyed.close().await;
        other.close().await;
        t
    })
    .await;
}
