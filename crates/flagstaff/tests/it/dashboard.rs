//! The web dashboard in headless Debian chromium, driven by playwright-core
//! (`sdk-clients/browser/dashboard.mjs`) against `flagstaff serve`: a new admin signs in through
//! the first-run page, creates a boolean flag, adds a rule and a 30 % rollout, turns it on in
//! production with a comment, reads the history entry and its diff, tests a context and sees
//! the matching rule, restores an earlier version, sees a change made elsewhere arrive live,
//! resolves a conflicting save; a reader finds no controls and is refused by the server.
//! Everything the script saw is checked here, and the server's state through the API.
//!
//! With `FLAGSTAFF_UPDATE_SCREENSHOTS=1` the screenshots it takes replace docs/screenshots/.

use std::path::Path;

use flagstaff_testkit::sdk::Browser;
use flagstaff_testkit::server::{self, Api, TestServer};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flagstaff"))
}

fn s(report: &Value, key: &str) -> String {
    report[key]
        .as_str()
        .unwrap_or_else(|| panic!("the report has no {key}: {report}"))
        .to_owned()
}

#[test]
fn people_manage_flags_in_the_dashboard_and_readers_cannot_change_them() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&base, &credentials.admin_token);
    // The reader exists before anyone signs in; the admin is created through the first-run page.
    // (Creating a member through the API does not skip first run: that page is for the first
    // member only, so the admin page must come first.)
    let screenshots = dir.path().join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let admin = json!({"email": "ada@example.com", "name": "Ada Admin", "password": "correct horse battery"});
    let reader = json!({"email": "rex@example.com", "password": "reader password 1"});

    // The reader is added once the admin exists: the script signs the admin in first, so
    // the member is created from a second thread when the first-run page has been used.
    let api_base = base.clone();
    let token = credentials.admin_token.clone();
    let reader_for_thread = reader.clone();
    let adder =
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let api = Api::new(&api_base, &token);
            rt.block_on(async {
                for _ in 0..600 {
                    let (_, members) = api.call(reqwest::Method::GET, "/members", None, None).await;
                    if members["items"].as_array().is_some_and(|m| !m.is_empty()) {
                        let (status, body) = api
                        .call(
                            reqwest::Method::POST,
                            "/members",
                            Some(&json!({"email": reader_for_thread["email"], "name": "Rex Reader",
                                "role": "reader", "password": reader_for_thread["password"]})),
                            None,
                        )
                        .await;
                        assert_eq!(status, 201, "{body}");
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                panic!("the admin never appeared");
            });
        });

    let report = Browser::run_script(
        "dashboard.mjs",
        &json!({"base": base, "adminToken": credentials.admin_token, "admin": admin,
            "reader": reader, "screenshots": screenshots}),
    );
    adder.join().unwrap();
    eprintln!("dashboard report: {report:#}");

    // First run and the new flag.
    assert!(
        s(&report, "wrongTokenError").contains("not an admin API token"),
        "{report}"
    );
    assert_eq!(s(&report, "emptyState"), "No flags yet");
    assert_eq!(s(&report, "role"), "admin");
    assert_eq!(s(&report, "suggestedKey"), "new-checkout");
    assert!(s(&report, "flagTitle").starts_with("New checkout"));
    assert_eq!(s(&report, "initialState"), "OFF");
    // The rollout's shares always add up to 100 %.
    assert_eq!(s(&report, "rolloutFalse"), "70");
    assert_eq!(s(&report, "rolloutTotal"), "Total 100 %");
    assert!(
        s(&report, "summaryAfterRule")
            .contains(r#"Rule 1: if user country is one of "DE", "FR", serve true"#),
        "{report}"
    );
    assert_eq!(s(&report, "stateAfterToggle"), "ON");

    // History: who, what, why and the readable diff.
    let head = s(&report, "historyHead");
    assert!(
        head.starts_with("ada@example.com changed targeting"),
        "{head}"
    );
    assert_eq!(
        s(&report, "historyComment"),
        "Launch: rules and 30 % rollout"
    );
    assert_eq!(report["historyAdded"], json!(["+added: Targeting is ON"]));
    assert_eq!(
        report["historyRemoved"],
        json!(["−removed: Targeting is OFF"])
    );

    // Test a context: a German user matches rule 1, shown and highlighted on the flag page.
    assert_eq!(s(&report, "testValue"), "true");
    assert_eq!(s(&report, "testReason"), "Matched rule 1");
    assert_eq!(
        s(&report, "testRule"),
        r#"if user country is one of "DE", "FR", serve true"#
    );
    assert!(s(&report, "highlightedRule").starts_with("Rule 1: if user country"));

    // A segment from a pasted list.
    assert_eq!(
        s(&report, "segmentSummary"),
        "Includes 3 user keys: anna, bob, carla"
    );

    // Restore, live update, conflict.
    assert_eq!(s(&report, "stateAfterRestore"), "OFF");
    assert_eq!(s(&report, "liveState"), "ON");
    assert!(
        s(&report, "conflictBanner").contains("changed this flag while you were editing"),
        "{report}"
    );
    assert!(
        s(&report, "conflictMessage").contains("Someone else saved a change"),
        "{report}"
    );
    assert!(
        s(&report, "summaryAfterConflict").contains("Serve true to user qa-anna"),
        "{report}"
    );

    // The reader: no controls, and the server refuses the change anyway.
    assert_eq!(s(&report, "readerRole"), "reader");
    assert_eq!(
        report["readerControls"],
        json!({"toggle": 0, "editor": 0, "createFlag": 0, "archive": 0})
    );
    assert_eq!(report["readerSave"]["status"], json!(403), "{report}");
    assert_eq!(report["readerSave"]["body"]["code"], json!("forbidden"));
    assert_eq!(report["readerCreateFlagLink"], json!(0));
    assert!(s(&report, "listRow").contains("New checkout"));
    assert_eq!(
        report["consoleErrors"],
        json!([]),
        "no script errors in the pages"
    );

    // The server's state, through the API: every change landed as the page said, with the
    // comments and the member as the actor.
    let targeting =
        rt.block_on(api.get("/projects/default/environments/production/flags/new-checkout"));
    assert_eq!(targeting["on"], json!(true), "{targeting}");
    assert_eq!(
        targeting["rules"][0]["clauses"][0],
        json!({"contextKind": "user", "attribute": "country", "op": "in", "values": ["DE", "FR"], "negate": false})
    );
    assert_eq!(targeting["rules"][0]["variation"], json!(0));
    assert_eq!(
        targeting["fallthrough"]["rollout"]["variations"],
        json!([{"variation": 0, "weight": 30000}, {"variation": 1, "weight": 70000}])
    );
    assert_eq!(
        targeting["targets"],
        json!([{"values": ["qa-anna"], "variation": 0}])
    );
    let audit =
        rt.block_on(api.get("/audit?kind=targeting&scope=default/production&key=new-checkout"));
    let comments: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["comment"].as_str().unwrap()))
        .collect();
    assert!(
        comments.contains(&("member:ada@example.com", "Launch: rules and 30 % rollout")),
        "{comments:?}"
    );
    assert!(
        comments.contains(&("member:ada@example.com", "Restore: not ready yet")),
        "{comments:?}"
    );
    assert!(
        !comments.iter().any(|(actor, _)| actor.contains("rex")),
        "the reader changed nothing: {comments:?}"
    );

    if std::env::var_os("FLAGSTAFF_UPDATE_SCREENSHOTS").is_some() {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&screenshots).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
}

/// A browser-less client of the dashboard: no redirects followed, cookies kept by hand.
pub(crate) struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

pub(crate) struct Page {
    pub status: u16,
    pub location: String,
    set_cookies: Vec<String>,
    pub body: String,
}

impl Visitor {
    pub(crate) fn new(base: &str) -> Visitor {
        Visitor {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: Default::default(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request
            .header("cookie", cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            set_cookies,
            body: response.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    pub(crate) async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(fields);
        self.send(request).await
    }

    async fn form_owned(&mut self, path: &str, fields: &[(&str, String)]) -> Page {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.form(path, &fields).await
    }

    /// POSTs `body` as `text/plain` (a file the page's script sends), with a CSRF header.
    pub(crate) async fn text(&mut self, path: &str, body: &str, csrf: Option<&str>) -> Page {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "text/plain")
            .body(body.to_owned());
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        self.send(request).await
    }

    pub(crate) async fn json(
        &mut self,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
        origin: Option<&str>,
    ) -> Page {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.send(request).await
    }
}

/// The value of `<input type="hidden" name="csrf" value="...">` or the csrf meta tag.
pub(crate) fn csrf_of(body: &str) -> String {
    for marker in ["name=\"csrf\" value=\"", "name=\"csrf-token\" content=\""] {
        if let Some(start) = body.find(marker) {
            let rest = &body[start + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no CSRF token in the page: {body}");
}

#[test]
fn sessions_csrf_and_first_run_protect_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut ada = Visitor::new(&base);
        // No member yet: everything leads to first run, which needs the printed admin token.
        let home = ada.get("/").await;
        assert_eq!((home.status, home.location.as_str()), (303, "/setup"));
        let setup = ada.get("/setup").await;
        assert_eq!(setup.status, 200);
        let csrf = csrf_of(&setup.body);
        let setup_form = |token: &str, csrf: &str| {
            vec![
                ("token", token.to_owned()),
                ("name", "Ada".to_owned()),
                ("email", "ada@example.com".to_owned()),
                ("password", "correct horse battery".to_owned()),
                ("csrf", csrf.to_owned()),
            ]
        };
        // Without the form's double-submit cookie (a cross-site post): refused.
        let mut stranger = Visitor::new(&base);
        let forged = stranger
            .form_owned("/setup", &setup_form(&credentials.admin_token, &csrf))
            .await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        let wrong = ada.form_owned("/setup", &setup_form("fst_wrong", &csrf)).await;
        assert_eq!(wrong.status, 401);
        let csrf = csrf_of(&wrong.body);
        let done = ada
            .form_owned("/setup", &setup_form(&credentials.admin_token, &csrf))
            .await;
        assert_eq!((done.status, done.location.as_str()), (303, "/"), "{}", done.body);
        let session = done
            .set_cookies
            .iter()
            .find(|c| c.starts_with("flagstaff_session="))
            .expect("a session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
        // First run is over for everyone.
        let again = stranger.get("/setup").await;
        assert_eq!((again.status, again.location.as_str()), (303, "/sign-in"));

        // Signed in: pages render, with the security headers.
        let flags = ada.get("/projects/default/flags").await;
        assert_eq!(flags.status, 200);
        assert!(flags.body.contains("No flags yet"));
        let csrf = csrf_of(&flags.body);
        for path in [
            "/projects/default/segments",
            "/projects/default/test",
            "/projects/default/history",
            "/projects/default/environments",
            "/members",
            "/tokens",
        ] {
            let page = ada.get(path).await;
            assert_eq!(page.status, 200, "{path}: {}", page.body);
        }
        let unknown = ada.get("/projects/default/flags/nope").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("Not found"));

        // Create a flag through the form; a bad one is shown again with the field marked.
        let bad = ada
            .form(
                "/projects/default/flags",
                &[("csrf", csrf.as_str()), ("name", "Sizes"), ("kind", "multivariate"), ("value_type", "number"), ("variations", "1\nten")],
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(
            bad.body.contains("&#34;ten&#34; is not a number") && bad.body.contains("(variations[1])"),
            "{}",
            bad.body
        );
        let created = ada
            .form("/projects/default/flags", &[("csrf", csrf.as_str()), ("name", "Dark mode")])
            .await;
        assert_eq!(created.status, 303, "{}", created.body);
        assert!(created.location.starts_with("/projects/default/flags/dark-mode"));
        let without_csrf = ada.form("/projects/default/flags", &[("name", "Sneaky")]).await;
        assert_eq!(without_csrf.status, 403);

        // Scripts' saves need the CSRF header and our own origin.
        let page = ada.get("/projects/default/flags/dark-mode?env=test").await;
        let csrf = csrf_of(&page.body);
        let proposal = json!({"environment": "test", "targeting": {"on": true, "offVariation": 1, "fallthrough": {"variation": 0}}, "version": 1});
        let review_path = "/projects/default/flags/dark-mode/review";
        let no_token = ada.json(review_path, &proposal, None, None).await;
        assert_eq!(no_token.status, 403);
        assert!(no_token.body.contains("\"csrf\""));
        let foreign = ada.json(review_path, &proposal, Some(&csrf), Some("http://evil.example")).await;
        assert_eq!(foreign.status, 403);
        let review = ada.json(review_path, &proposal, Some(&csrf), Some(&base)).await;
        assert_eq!(review.status, 200, "{}", review.body);
        let review: Value = serde_json::from_str(&review.body).unwrap();
        assert_eq!(review["changed"], json!(true));
        assert!(review["html"].as_str().unwrap().contains("Targeting is ON"));
        // A broken proposal is a structured error naming the field.
        let invalid = ada
            .json(review_path, &json!({"environment": "test", "targeting": {"on": true, "offVariation": 7}}), Some(&csrf), None)
            .await;
        assert_eq!(invalid.status, 400);
        let invalid: Value = serde_json::from_str(&invalid.body).unwrap();
        assert_eq!(invalid["field"], json!("offVariation"), "{invalid}");
        // Malformed JSON gets the same structured error, never a plain-text rejection.
        let request = ada
            .http
            .post(format!("{base}{review_path}"))
            .header("content-type", "application/json")
            .header("x-csrf-token", &csrf)
            .body("{\"environment\": \"test\", \"targeting\": {\"on\": \"yes\"}}");
        let malformed = ada.send(request).await;
        assert_eq!(malformed.status, 400);
        let malformed: Value = serde_json::from_str(&malformed.body).unwrap();
        assert_eq!(malformed["code"], json!("invalid_body"), "{malformed}");
        assert_eq!(malformed["field"], json!("targeting.on"), "{malformed}");
        let request = ada
            .http
            .post(format!("{base}{review_path}"))
            .header("content-type", "application/json")
            .header("x-csrf-token", &csrf)
            .body("{\"environment\": \"test\", \"targeting\": ");
        let truncated = ada.send(request).await;
        assert_eq!(truncated.status, 400);
        let truncated: Value = serde_json::from_str(&truncated.body).unwrap();
        assert_eq!(truncated["code"], json!("invalid_body"), "{truncated}");
        // An oversized body gets the API's answer (the extractor is shared): 413, not 400.
        let huge = format!("{{\"environment\": \"test\", \"targeting\": {{\"salt\": \"{}\"}}}}", "x".repeat(1 << 20));
        let request = ada
            .http
            .post(format!("{base}{review_path}"))
            .header("content-type", "application/json")
            .header("x-csrf-token", &csrf)
            .body(huge);
        let oversized = ada.send(request).await;
        assert_eq!(oversized.status, 413, "{}", oversized.body);
        let oversized: Value = serde_json::from_str(&oversized.body).unwrap();
        assert_eq!(oversized["code"], json!("payload_too_large"), "{oversized}");
        // A stale version is a conflict with the current version.
        let save_path = "/projects/default/flags/dark-mode/targeting";
        let saved = ada.json(save_path, &proposal, Some(&csrf), None).await;
        assert_eq!(saved.status, 200, "{}", saved.body);
        let stale = ada.json(save_path, &proposal, Some(&csrf), None).await;
        assert_eq!(stale.status, 409);
        let stale: Value = serde_json::from_str(&stale.body).unwrap();
        assert_eq!(stale["code"], json!("version_conflict"));
        assert!(stale["currentVersion"].as_u64().unwrap() > 1);

        // The list follows every change (it is cached between changes): on in test, off in
        // production; archived, it moves to the archived view.
        let list = ada.get("/projects/default/flags?env=test&q=dark").await;
        let row = &list.body[list.body.find("data-flag=\"dark-mode\"").unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("aria-checked=\"true\" aria-label=\"Dark mode in Test: on; turn off\"")
                && row.contains("class=\"pill toggle off\" role=\"switch\" aria-checked=\"false\"")
                && row.contains("aria-label=\"Dark mode in Production: off; turn on"),
            "{row}"
        );
        let archived = ada
            .form(
                "/projects/default/flags/dark-mode/archive",
                &[("csrf", csrf.as_str()), ("env", "test"), ("archived", "true")],
            )
            .await;
        assert_eq!(archived.status, 303);
        let live = ada.get("/projects/default/flags?env=test").await;
        assert!(!live.body.contains("data-flag=\"dark-mode\""));
        let archive_view = ada.get("/projects/default/flags?env=test&archived=1").await;
        assert!(archive_view.body.contains("data-flag=\"dark-mode\""));

        // Signed out: the session ends on the server, so the old cookie is useless, and the live
        // updates the page had open end too.
        let old_cookie = ada.cookies.clone();
        let cookie_header = old_cookie
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut live = reqwest::Client::new()
            .get(format!("{base}/projects/default/live"))
            .header("cookie", &cookie_header)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        let out = ada.form("/sign-out", &[("csrf", csrf.as_str())]).await;
        assert_eq!((out.status, out.location.as_str()), (303, "/sign-in"));
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            // Whatever was already on its way may still arrive; then the stream ends.
            while let Ok(Some(_)) = live.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the live stream is still open after sign-out");
        let mut thief = Visitor::new(&base);
        thief.cookies = old_cookie;
        let refused = thief.get("/projects/default/flags").await;
        assert_eq!(refused.status, 303);
        assert_eq!(refused.location, "/sign-in?next=/projects/default/flags");
        let script = thief.json(review_path, &proposal, Some(&csrf), None).await;
        assert_eq!(script.status, 401);

        // Sign-in: a wrong password is refused; `next` cannot point off-site.
        let form = ada.get("/sign-in?next=//evil.example/x").await;
        let csrf = csrf_of(&form.body);
        let wrong = ada
            .form("/sign-in", &[("email", "ada@example.com"), ("password", "not the password"), ("csrf", csrf.as_str()), ("next", "//evil.example/x")])
            .await;
        assert_eq!(wrong.status, 401);
        let csrf = csrf_of(&wrong.body);
        let signed_in = ada
            .form("/sign-in", &[("email", "ada@example.com"), ("password", "correct horse battery"), ("csrf", csrf.as_str()), ("next", "//evil.example/x")])
            .await;
        assert_eq!((signed_in.status, signed_in.location.as_str()), (303, "/"));
        // Variants that browsers turn into another host once they strip whitespace.
        for next in ["/\t/evil.example", "/\n/evil.example", "/ /evil.example", "/\\evil.example"] {
            let form = ada.get("/sign-in").await;
            let csrf = csrf_of(&form.body);
            let signed_in = ada
                .form("/sign-in", &[("email", "ada@example.com"), ("password", "correct horse battery"), ("csrf", csrf.as_str()), ("next", next)])
                .await;
            assert_eq!((signed_in.status, signed_in.location.as_str()), (303, "/"), "{next:?}");
        }
    });
}

/// Issue 18 end to end over real HTTP: an admin invites a support person with a kill-switch
/// role; they choose their own password on the invitation page, turn a production flag off
/// through the dashboard's save, cannot change its rules, cannot reach the admin pages, and the
/// audit log names them.
#[test]
fn a_support_person_joins_by_invitation_and_may_only_use_the_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let admin = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        admin
            .post("/projects/default/flags", &json!({"key": "checkout", "name": "Checkout", "tags": ["web"]}))
            .await;
        let targeting = "/projects/default/environments/production/flags/checkout";
        let (status, on) = admin
            .call(reqwest::Method::PATCH, targeting, Some(&json!([{"op": "replace", "path": "/on", "value": true}])), Some(1))
            .await;
        assert_eq!(status, 200, "{on}");
        admin
            .post("/roles", &json!({"key": "kill-switch", "name": "Support", "policy": [
                {"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]},
                {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}]}))
            .await;
        let invited = admin
            .post("/invitations", &json!({"email": "sam@example.com", "customRoles": ["kill-switch"]}))
            .await;
        let path = s(&invited, "path");

        // Sam opens the link and chooses a password; a forged post (no form cookie) is refused.
        let mut stranger = Visitor::new(&base);
        let mut sam = Visitor::new(&base);
        let page = sam.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("sam@example.com"));
        let csrf = csrf_of(&page.body);
        let forged = stranger
            .form(&path, &[("name", "Mallory"), ("password", "correct horse battery"), ("csrf", &csrf)])
            .await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        let short = sam
            .form(&path, &[("name", "Sam"), ("password", "short"), ("csrf", &csrf)])
            .await;
        assert_eq!(short.status, 400, "{}", short.body);
        assert!(short.body.contains("12 characters"), "{}", short.body);
        let csrf = csrf_of(&short.body);
        let joined = sam
            .form(&path, &[("name", "Sam", ), ("password", "correct horse battery"), ("csrf", &csrf)])
            .await;
        assert_eq!((joined.status, joined.location.as_str()), (303, "/"), "{}", joined.body);
        let used = stranger.get(&path).await;
        assert_eq!(used.status, 404);
        assert!(used.body.contains("does not work"));

        // The kill switch through the dashboard's save; rules are refused, naming the action.
        let flag_page = sam.get("/projects/default/flags/checkout?env=production").await;
        assert_eq!(flag_page.status, 200, "{}", flag_page.body);
        // The page offers the kill switch and says what the roles leave out.
        assert!(flag_page.body.contains("id=\"toggle\""), "{}", flag_page.body);
        assert!(
            flag_page.body.contains("data-testid=\"access-note\"") && flag_page.body.contains("change rules"),
            "{}",
            flag_page.body
        );
        // Nothing else is offered: no targeting editor, no archive, no "Create flag".
        assert!(!flag_page.body.contains("data-testid=\"editor\""), "{}", flag_page.body);
        assert!(!flag_page.body.contains("/archive\""), "{}", flag_page.body);
        let list = sam.get("/projects/default/flags?env=production").await;
        assert_eq!(list.status, 200);
        assert!(!list.body.contains("data-testid=\"new-flag\""), "{}", list.body);
        let csrf = csrf_of(&flag_page.body);
        let mut off = admin.get(targeting).await;
        // The API shows the version inside the document; the dashboard sends it beside it.
        off.as_object_mut().unwrap().remove("version");
        off["on"] = json!(false);
        let save = "/projects/default/flags/checkout/targeting";
        let saved = sam
            .json(save, &json!({"environment": "production", "targeting": off, "version": 2, "comment": "incident 7"}), Some(&csrf), Some(&base))
            .await;
        assert_eq!(saved.status, 200, "{}", saved.body);
        let mut rule = off.clone();
        rule["rules"] = json!([{"variation": 0, "clauses": [{"attribute": "key", "op": "in", "values": ["x"]}]}]);
        let refused = sam
            .json(save, &json!({"environment": "production", "targeting": rule, "version": 3}), Some(&csrf), Some(&base))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let refused: Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(refused["action"], "updateRules", "{refused}");
        assert_eq!(refused["resource"], "proj/default:env/production;critical:flag/checkout;web");
        let members = sam.get("/members").await;
        assert_eq!(members.status, 403);

        let stored = admin.get(targeting).await;
        assert_eq!((stored["on"].clone(), stored["version"].clone()), (json!(false), json!(3)));
        let audit = admin.get("/audit?key=checkout&kind=targeting").await;
        let last = audit["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((s(&last, "actor"), s(&last, "comment")), ("member:sam@example.com".to_owned(), "incident 7".to_owned()));
    });
}

/// Roles and teams through the dashboard's forms: the common-case form writes the policy it
/// describes, the JSON editor's mistakes name the field, teams take members and roles, and a
/// role still held cannot be deleted.
#[test]
fn admins_write_roles_and_teams_in_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let admin = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        admin
            .post("/members", &json!({"email": "ada@example.com", "name": "Ada", "role": "admin", "password": "correct horse battery"}))
            .await;
        let mut ada = Visitor::new(&base);
        let sign_in = ada.get("/sign-in").await;
        let csrf = csrf_of(&sign_in.body);
        let signed = ada
            .form("/sign-in", &[("email", "ada@example.com"), ("password", "correct horse battery"), ("csrf", &csrf)])
            .await;
        assert_eq!(signed.status, 303, "{}", signed.body);
        let page = ada.get("/roles").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = csrf_of(&page.body);
        let created = ada
            .form("/roles", &[("csrf", &csrf), ("name", "Support"), ("key", "support"), ("action_updateOn", "on"),
                              ("environment", "production"), ("project", "*"), ("tag", "")])
            .await;
        assert_eq!((created.status, created.location.as_str()), (303, "/roles"), "{}", created.body);
        let role = admin.get("/roles/support").await;
        assert_eq!(
            role["policy"],
            json!([{"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]},
                   {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}])
        );
        let typo = ada
            .form("/roles", &[("csrf", &csrf), ("mode", "json"), ("name", "Bad"), ("key", "bad"),
                              ("policy", r#"[{"effect": "allow", "actions": ["updateOnn"], "resources": ["proj/*"]}]"#)])
            .await;
        assert_eq!(typo.status, 400, "{}", typo.body);
        assert!(typo.body.contains("policy[0].actions[0]"), "{}", typo.body);
        let team = ada
            .form("/teams", &[("csrf", &csrf), ("key", "desk"), ("name", "Desk"),
                              ("member_ada@example.com", "on"), ("role_support", "on")])
            .await;
        assert_eq!(team.status, 303, "{}", team.body);
        let stored = admin.get("/teams/desk").await;
        assert_eq!((stored["members"].clone(), stored["customRoles"].clone()), (json!(["ada@example.com"]), json!(["support"])));
        let held = ada
            .form("/roles/support/delete", &[("csrf", &csrf), ("version", "1")])
            .await;
        assert_eq!(held.status, 400, "{}", held.body);
        assert!(held.body.contains("team:desk"), "{}", held.body);
        let members = ada.get("/members").await;
        assert!(members.body.contains("Desk"), "{}", members.body);
        // Without the CSRF token: refused, nothing written.
        let forged = ada.form("/roles", &[("name", "X"), ("key", "x")]).await;
        assert_eq!(forged.status, 403);
        let (status, _) = admin.call(reqwest::Method::GET, "/roles/x", None, None).await;
        assert_eq!(status, 404);
    });
}

/// The support person of issue 18 in a real browser: joins by invitation, uses the kill switch
/// on a production flag through the review dialog, and a rule change from the same page is
/// refused with the action to ask for. The audit log names them.
#[test]
fn a_support_person_turns_a_flag_off_in_chromium_and_nothing_else() {
    if !Browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let admin = Api::new(&base, &credentials.admin_token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = rt.block_on(async {
        admin
            .post("/projects/default/flags", &json!({"key": "checkout", "name": "Checkout", "tags": ["web"]}))
            .await;
        let (status, on) = admin
            .call(
                reqwest::Method::PATCH,
                "/projects/default/environments/production/flags/checkout",
                Some(&json!([{"op": "replace", "path": "/on", "value": true}])),
                Some(1),
            )
            .await;
        assert_eq!(status, 200, "{on}");
        admin
            .post("/roles", &json!({"key": "kill-switch", "name": "Support", "policy": [
                {"effect": "allow", "actions": ["viewProject"], "resources": ["proj/*"]},
                {"effect": "allow", "actions": ["updateOn"], "resources": ["proj/*:env/production:flag/*"]}]}))
            .await;
        let invited = admin
            .post("/invitations", &json!({"email": "sam@example.com", "customRoles": ["kill-switch"]}))
            .await;
        s(&invited, "path")
    });
    let report = Browser::run_script(
        "support.mjs",
        &json!({"base": base, "invitation": path, "flag": "/projects/default/flags/checkout",
                "key": "checkout", "password": "correct horse battery"}),
    );
    eprintln!("support report: {report:#}");
    assert!(
        s(&report, "invitedAs").contains("sam@example.com"),
        "{report}"
    );
    assert_eq!(s(&report, "role"), "noAccess");
    let note = s(&report, "accessNote");
    assert!(
        note.contains("kill-switch")
            && note.contains("change rules")
            && note.contains("updateRules"),
        "{note}"
    );
    assert_eq!(
        (s(&report, "stateBefore"), s(&report, "stateAfter")),
        ("ON".to_owned(), "OFF".to_owned())
    );
    assert!(s(&report, "toggleDiff").contains("OFF"), "{report}");
    assert_eq!(report["ruleSave"]["status"], 403, "{report}");
    assert_eq!(
        report["ruleSave"]["body"]["action"], "updateRules",
        "{report}"
    );
    assert_eq!(report["consoleErrorsBeforeRefusal"], json!([]), "{report}");
    let (stored, audit) = rt.block_on(async {
        (
            admin
                .get("/projects/default/environments/production/flags/checkout")
                .await,
            admin.get("/audit?key=checkout&kind=targeting").await,
        )
    });
    assert_eq!(
        (stored["on"].clone(), stored["rules"].clone()),
        (json!(false), json!([]))
    );
    let last = audit["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(s(&last, "actor"), "member:sam@example.com");
    assert_eq!(s(&last, "comment"), "incident: checkout errors");
}
