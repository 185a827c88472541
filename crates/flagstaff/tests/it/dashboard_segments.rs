//! Segments people can read (issue 20): a 50,000-key segment's pages stay small — counts, the
//! first keys, search and paging, never the whole list in the list, the page, a review or the
//! history — its keys change by pasting through a counted review, its rules still change in the
//! editor without touching the keys, and the page says which flags use it.

use std::path::Path;

use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::json;

use crate::dashboard::csrf_of;
use crate::dashboard_product::signed_in;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

/// Pages of a 50,000-key segment stay under this many bytes.
const PAGE_LIMIT: usize = 200_000;

#[test]
fn a_fifty_thousand_key_segment_is_readable_and_changes_by_paste() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let api = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let keys: Vec<String> = (0..50_000).map(|i| format!("customer-{i:05}")).collect();
        let made = api
            .post(
                "/projects/default/environments/test/segments",
                &json!({"key": "customers", "included": keys}),
            )
            .await;
        assert_eq!(made["key"], "customers");
        api.post("/projects/default/flags", &json!({"key": "checkout", "name": "Checkout"}))
            .await;
        api.put(
            "/projects/default/environments/test/flags/checkout",
            &json!({"offVariation": 1, "fallthrough": {"variation": 1}, "rules": [{"variation": 0,
                "clauses": [{"attribute": "segmentMatch", "op": "segmentMatch", "values": ["customers"]}]}]}),
            Some(1),
        )
        .await;
        let mut pm = signed_in(&api, &base, "pm@example.com", "writer").await;

        let list = pm.get("/projects/default/segments?env=test").await;
        assert!(list.body.len() < PAGE_LIMIT, "the list is {} bytes", list.body.len());
        assert!(list.body.contains("Includes 50,000 user keys: customer-00000"), "counted");
        let path = "/projects/default/segments/customers?env=test";
        let page = pm.get(path).await;
        assert!(page.body.len() < PAGE_LIMIT, "the page is {} bytes", page.body.len());
        assert!(page.body.contains("50,000 matching · page 1 of 500"));
        assert!(page.body.contains("flag checkout"), "used by checkout");
        assert!(!page.body.contains("customer-49999"), "the last key is not printed");
        // Search and paging.
        let found = pm
            .get("/projects/default/segments/customers?env=test&list=included:user&q=customer-4999")
            .await;
        assert!(found.body.contains("10 matching"), "customer-49990 to customer-49999");
        assert!(found.body.contains("<code>customer-49999</code>"));
        let last = pm
            .get("/projects/default/segments/customers?env=test&list=included:user&page=499")
            .await;
        assert!(last.body.contains("<code>customer-49999</code>"));

        // Paste: three new keys and two to remove, reviewed as counts, then saved.
        let csrf = csrf_of(&page.body);
        let paste = |op: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("env", "test".to_owned()),
                ("list", "included".to_owned()),
                ("kind", "user".to_owned()),
                ("add", "new-1\nnew-2, new-3 customer-00001".to_owned()),
                ("remove", "customer-00002 customer-00003 nobody".to_owned()),
                ("op", op.to_owned()),
            ]
        };
        let keys_path = "/projects/default/segments/customers/keys";
        let fields = paste("review");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let review = pm.form(keys_path, &fields).await;
        assert_eq!(review.status, 200);
        for line in [
            "+ 3 user keys included: new-1, new-2, new-3",
            "1 of the keys to add are already included",
            "− 2 user keys no longer included: customer-00002, customer-00003",
            "1 of the keys to remove are not included anyway",
        ] {
            assert!(review.body.contains(line), "{line:?} in the review");
        }
        let fields = paste("save");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let saved = pm.form(keys_path, &fields).await;
        assert_eq!(saved.status, 303, "{}", saved.body);
        let stored = api
            .get("/projects/default/environments/test/segments/customers")
            .await;
        let included = stored["included"].as_array().unwrap();
        assert_eq!(included.len(), 50_001);
        assert!(included.contains(&json!("new-3")) && !included.contains(&json!("customer-00002")));

        // The editor's proposal without the lists (what it sends for a large segment) changes
        // the rules and keeps every key; its review is small.
        let version = stored["version"].as_u64().unwrap();
        let proposal = json!({"environment": "test", "version": version, "comment": "pros too",
            "segment": {"key": "customers", "rules": [{"clauses": [
                {"attribute": "plan", "op": "in", "values": ["pro"]}]}]}});
        let reviewed = pm
            .json("/projects/default/segments/customers/review", &proposal, Some(&csrf), None)
            .await;
        assert_eq!(reviewed.status, 200, "{}", reviewed.body);
        assert!(reviewed.body.len() < 5_000, "the review is {} bytes", reviewed.body.len());
        let saved = pm
            .json("/projects/default/segments/customers/save", &proposal, Some(&csrf), None)
            .await;
        assert_eq!(saved.status, 200, "{}", saved.body);
        let stored = api
            .get("/projects/default/environments/test/segments/customers")
            .await;
        assert_eq!(stored["included"].as_array().unwrap().len(), 50_001);
        assert_eq!(stored["rules"][0]["clauses"][0]["attribute"], "plan");

        // The history of all this stays small too.
        let history = pm.get("/projects/default/history?env=test").await;
        eprintln!(
            "bytes: segment list {}, segment page {}, review {}, history {}",
            list.body.len(),
            page.body.len(),
            reviewed.body.len(),
            history.body.len()
        );
        assert!(history.body.len() < PAGE_LIMIT, "the history is {} bytes", history.body.len());
        assert!(history.body.contains("3 user keys included: new-1, new-2, new-3"));

        // A reader cannot paste keys.
        let mut reader = signed_in(&api, &base, "r@example.com", "reader").await;
        let page = reader.get(path).await;
        assert!(!page.body.contains("data-testid=\"segment-keys\""));
        let csrf = csrf_of(&page.body);
        let refused = reader
            .form(
                keys_path,
                &[("csrf", csrf.as_str()), ("env", "test"), ("add", "intruder"), ("op", "save")],
            )
            .await;
        assert_eq!(refused.status, 403);
    });
}

#[test]
fn a_segment_is_copied_to_another_environment_and_overwrites_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let api = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        api.post(
            "/projects/default/environments/test/segments",
            &json!({"key": "beta", "included": ["ada", "bob"], "rules": [{"clauses": [
                {"attribute": "email", "op": "endsWith", "values": ["@example.com"]}]}]}),
        )
        .await;
        let mut pm = signed_in(&api, &base, "pm@example.com", "writer").await;
        let page = pm.get("/projects/default/segments/beta?env=test").await;
        assert!(page.body.contains("data-testid=\"segment-copy\""));
        let csrf = csrf_of(&page.body);
        let copy = "/projects/default/segments/beta/copy";
        // Production is critical: without the typed key nothing is copied.
        let refused = pm
            .form(
                copy,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("to", "production"),
                ],
            )
            .await;
        assert_eq!(refused.status, 400);
        assert!(
            refused.body.contains("type the segment key “beta”"),
            "{}",
            refused.body
        );
        let copied = pm
            .form(
                copy,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("to", "production"),
                    ("confirm", "beta"),
                ],
            )
            .await;
        assert_eq!(copied.status, 303, "{}", copied.body);
        assert_eq!(
            copied.location,
            "/projects/default/segments/beta?env=production"
        );
        let there = api
            .get("/projects/default/environments/production/segments/beta")
            .await;
        assert_eq!(there["included"], json!(["ada", "bob"]));
        assert_eq!(
            there["rules"][0]["clauses"][0]["values"],
            json!(["@example.com"])
        );
        let here = api
            .get("/projects/default/environments/test/segments/beta")
            .await;
        assert_ne!(
            there["salt"], here["salt"],
            "the copy has a salt of its own"
        );
        // Again: it exists now, so only "replace" overwrites it.
        api.put(
            "/projects/default/environments/test/segments/beta",
            &json!({"key": "beta", "included": ["carla"]}),
            here["version"].as_u64(),
        )
        .await;
        let exists = pm
            .form(
                copy,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("to", "production"),
                    ("confirm", "beta"),
                ],
            )
            .await;
        assert_eq!(exists.status, 400);
        assert!(
            exists.body.contains("already has a segment"),
            "{}",
            exists.body
        );
        let replaced = pm
            .form(
                copy,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("to", "production"),
                    ("confirm", "beta"),
                    ("replace", "on"),
                ],
            )
            .await;
        assert_eq!(replaced.status, 303);
        let there = api
            .get("/projects/default/environments/production/segments/beta")
            .await;
        assert_eq!(there["included"], json!(["carla"]));
        // Forged and readers' copies are refused.
        let forged = pm
            .form(
                copy,
                &[("env", "test"), ("to", "production"), ("confirm", "beta")],
            )
            .await;
        assert_eq!(forged.status, 403);
        let mut reader = signed_in(&api, &base, "r@example.com", "reader").await;
        let page = reader.get("/projects/default/segments/beta?env=test").await;
        assert!(!page.body.contains("segment-copy"));
        let csrf = csrf_of(&page.body);
        let refused = reader
            .form(
                copy,
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("to", "production"),
                    ("confirm", "beta"),
                    ("replace", "on"),
                ],
            )
            .await;
        assert_eq!(refused.status, 403);
    });
}

#[test]
fn a_segment_has_a_name_and_description_that_people_read_and_sdks_never_get() {
    let started = crate::dashboard_product::start();
    let (_, base, rt, api) = started.parts();
    rt.block_on(async {
        let mut pm = signed_in(api, base, "pm@example.com", "writer").await;
        let list = pm.get("/projects/default/segments?env=test").await;
        let csrf = csrf_of(&list.body);
        let created = pm
            .form(
                "/projects/default/segments",
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("key", "beta"),
                    ("name", "Beta testers"),
                    ("description", "Customers who asked for early features"),
                ],
            )
            .await;
        assert_eq!(created.status, 303, "{}", created.body);
        let list = pm.get("/projects/default/segments?env=test").await;
        assert!(list.body.contains(">Beta testers</a>"), "{}", list.body);
        assert!(list.body.contains("Customers who asked for early features"));
        let page = pm.get("/projects/default/segments/beta?env=test").await;
        assert!(
            page.body.contains("<h1>Beta testers"),
            "the name heads the page"
        );
        assert!(page.body.contains("data-testid=\"segment-description\""));

        // Renaming through the editor's review and save, said in words.
        let stored = api
            .get("/projects/default/environments/test/segments/beta")
            .await;
        let mut segment = stored.clone();
        segment["name"] = json!("Early access");
        let proposal = json!({"environment": "test", "version": stored["version"],
            "comment": "clearer", "segment": segment});
        let reviewed = pm
            .json(
                "/projects/default/segments/beta/review",
                &proposal,
                Some(&csrf),
                None,
            )
            .await;
        assert_eq!(reviewed.status, 200, "{}", reviewed.body);
        assert!(
            reviewed.body.contains("Name: Beta testers"),
            "{}",
            reviewed.body
        );
        assert!(
            reviewed.body.contains("Name: Early access"),
            "{}",
            reviewed.body
        );
        let saved = pm
            .json(
                "/projects/default/segments/beta/save",
                &proposal,
                Some(&csrf),
                None,
            )
            .await;
        assert_eq!(saved.status, 200, "{}", saved.body);
        let stored = api
            .get("/projects/default/environments/test/segments/beta")
            .await;
        assert_eq!(stored["name"], "Early access");
        assert_eq!(
            stored["description"],
            "Customers who asked for early features"
        );

        // SDKs of the environment get the segment, without either (keys are shown once:
        // a rotation gives one for this test).
        let rotated = api
            .post(
                "/projects/default/environments/test/keys/sdk/rotate",
                &json!({}),
            )
            .await;
        let sdk_key = rotated["sdkKey"].as_str().unwrap().to_owned();
        let (text, data) = crate::dashboard_product::sdk_data(base, &sdk_key).await;
        assert!(data["segments"]["beta"].is_object(), "{text}");
        assert!(
            !text.contains("Early access") && !text.contains("early features"),
            "{text}"
        );
    });
}

/// A server of its own (its folder, the process, an admin API client, a runtime).
fn fresh() -> (tempfile::TempDir, TestServer, Api, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let api = Api::new(&server.base(), &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (dir, server, api, rt)
}

#[test]
fn a_big_segment_is_created_and_filled_from_the_dashboard() {
    let (_dir, server, api, rt) = fresh();
    let base = server.base();
    rt.block_on(async {
        let mut pm = signed_in(&api, &base, "pm@example.com", "writer").await;
        let list = pm.get("/projects/default/segments?env=test").await;
        let csrf = csrf_of(&list.body);
        let created = pm
            .form(
                "/projects/default/segments",
                &[
                    ("csrf", csrf.as_str()),
                    ("env", "test"),
                    ("key", "vip"),
                    ("name", "VIPs"),
                    ("unbounded", "on"),
                    ("unbounded_kind", ""),
                ],
            )
            .await;
        assert_eq!(created.status, 303, "{}", created.body);
        let stored = api
            .get("/projects/default/environments/test/segments/vip")
            .await;
        assert_eq!(
            (
                stored["unbounded"].clone(),
                stored["unboundedContextKind"].clone()
            ),
            (json!(true), json!("user"))
        );
        let path = "/projects/default/segments/vip?env=test";
        let page = pm.get(path).await;
        assert!(
            page.body.contains("data-testid=\"big-included\">0<"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("data-upload-list"),
            "a writer gets the upload form"
        );

        // The page's script sends the file as the body, with the CSRF header.
        let upload = "/projects/default/segments/vip/members?env=test&list=included&op=add";
        let forged = pm.text(upload, "a\nb\n", None).await;
        assert_eq!(forged.status, 403, "no CSRF token: {}", forged.body);
        let uploaded = pm
            .text(upload, "alice\nbob\n\"carol, jr\",x\n", Some(&csrf))
            .await;
        assert_eq!(uploaded.status, 200, "{}", uploaded.body);
        let summary: serde_json::Value = serde_json::from_str(&uploaded.body).unwrap();
        assert_eq!(summary["included"], 3, "{summary}");
        let bad = pm.text(upload, "ok\n\u{7}\n", Some(&csrf)).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("line 2"), "{}", bad.body);
        let page = pm.get(path).await;
        assert!(
            page.body.contains("data-testid=\"big-included\">3<"),
            "counts follow"
        );

        // A reader sees the counts, not the form, and cannot upload.
        let mut reader = signed_in(&api, &base, "reader@example.com", "reader").await;
        let seen = reader.get(path).await;
        assert!(seen.body.contains("big-included") && !seen.body.contains("data-upload-list"));
        let reader_csrf = csrf_of(&seen.body);
        let refused = reader.text(upload, "mallory\n", Some(&reader_csrf)).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let counts = api
            .get("/projects/default/environments/test/segments/vip/members")
            .await;
        assert_eq!(counts, json!({"included": 3, "excluded": 0}));
    });
}

#[test]
fn a_big_segment_is_filled_from_a_file_in_chromium() {
    if !flagstaff_testkit::sdk::Browser::available() {
        return;
    }
    let (_dir, server, api, rt) = fresh();
    let base = server.base();
    rt.block_on(api.post(
        "/members",
        &json!({"email": "pm@example.com", "name": "PM", "role": "writer", "password": "correct horse battery"}),
    ));
    let report = flagstaff_testkit::sdk::Browser::run_script(
        "big_segment.mjs",
        &json!({"base": base, "user": {"email": "pm@example.com", "password": "correct horse battery"},
            "list": "key,since\nann,2024\nben,2025\n\"c, d\",2026\n"}),
    );
    assert_eq!(report["includedBefore"], "0", "{report}");
    assert_eq!(report["includedAfter"], "4", "{report}");
    assert_eq!(report["excludedAfter"], "0", "{report}");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
    let counts = rt.block_on(api.get("/projects/default/environments/test/segments/loyal/members"));
    // The CSV's header line is a key like any other: lists are keys, not tables.
    assert_eq!(counts, json!({"included": 4, "excluded": 0}), "{report}");
}
