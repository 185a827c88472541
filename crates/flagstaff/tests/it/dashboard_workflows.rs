//! Release workflows in the dashboard, in headless Debian chromium
//! (`sdk-clients/browser/workflows.mjs`): schedule "tomorrow 08:00 Pacific/Auckland", see it
//! pending and badged, cancel it; request a production change where approval is required, have
//! another member approve and apply it. The server's state is checked here through the API.
//! With `FLAGSTAFF_UPDATE_SCREENSHOTS=1` its screenshots replace those in docs/screenshots/.

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
fn a_launch_is_scheduled_cancelled_requested_approved_and_applied_in_the_dashboard() {
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
    let writer = json!({"email": "wes@example.com", "password": "writer password 1"});
    let admin = json!({"email": "ada@example.com", "password": "admin password 12"});
    rt.block_on(async {
        for (who, role) in [(&writer, "writer"), (&admin, "admin")] {
            api.post(
                "/members",
                &json!({"email": who["email"], "name": who["email"], "role": role, "password": who["password"]}),
            )
            .await;
        }
        api.post("/projects/default/flags", &json!({"key": "launch", "name": "Launch"}))
            .await;
        let env = api.get("/projects/default/environments/production").await;
        api.put(
            "/projects/default/environments/production",
            &json!({"name": env["name"], "approvals": {"required": true, "minApprovals": 1}}),
            env["version"].as_u64(),
        )
        .await;
    });
    let screenshots = dir.path().join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let report = Browser::run_script(
        "workflows.mjs",
        &json!({"base": base, "flag": "launch", "writer": writer, "admin": admin, "screenshots": screenshots}),
    );
    if std::env::var_os("FLAGSTAFF_UPDATE_SCREENSHOTS").is_some() {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        for entry in std::fs::read_dir(&screenshots).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    eprintln!("workflows report: {report:#}");
    // The form started in the browser's zone; the schedule reads back in Auckland's.
    assert_eq!(s(&report, "defaultZone"), "Europe/Berlin");
    let pending = s(&report, "pending");
    let date = s(&report, "date");
    assert!(
        pending.contains(&format!("{date} 08:00:00+13:00 (Pacific/Auckland)"))
            && pending.contains("turn targeting on"),
        "{pending}"
    );
    assert_eq!(s(&report, "badge"), "scheduled", "{report}");
    assert_eq!(s(&report, "afterCancel"), "Nothing is scheduled.");
    assert!(
        s(&report, "approvalNote").contains("need approval"),
        "{report}"
    );
    assert_eq!(s(&report, "saveLabel"), "Request approval");
    assert_eq!(s(&report, "requestStatus"), "waiting for review");
    assert!(s(&report, "requestDiff").contains("ON"), "{report}");
    assert_eq!(s(&report, "reviewers"), "Asked to review: ada@example.com");
    assert_eq!(
        report["writerMayApprove"], 0,
        "a requester cannot approve their own"
    );
    assert_eq!(s(&report, "approvedStatus"), "approved");
    assert_eq!(s(&report, "appliedStatus"), "applied");
    assert_eq!(s(&report, "stateAfter"), "ON");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
    let (schedules, flag, audit) = rt.block_on(async {
        (
            api.get("/projects/default/environments/test/scheduled-changes?finished=true")
                .await,
            api.get("/projects/default/environments/production/flags/launch")
                .await,
            api.get("/audit?key=launch&kind=targeting").await,
        )
    });
    assert_eq!(schedules["items"][0]["status"], "cancelled", "{schedules}");
    assert_eq!(flag["on"], true);
    let last = audit["items"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["actor"]
            .as_str()
            .unwrap()
            .starts_with("member:ada@example.com (change request"),
        "{last}"
    );
    assert_eq!(last["comment"], "launch in production");
}

/// The workflow forms refuse a request without the session's CSRF token and a member whose role
/// does not allow the action, and write nothing either way.
#[test]
fn workflow_forms_refuse_forged_and_unauthorized_posts() {
    use crate::dashboard::{Visitor, csrf_of};
    let dir = tempfile::tempdir().unwrap();
    let credentials = server::init(binary(), dir.path());
    let server = TestServer::start(binary(), dir.path(), "127.0.0.1:0", &[]);
    let base = server.base();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&base, &credentials.admin_token);
    rt.block_on(async {
        for (email, role) in [("wes@example.com", "writer"), ("rex@example.com", "reader")] {
            api.post(
                "/members",
                &json!({"email": email, "name": email, "role": role, "password": "correct horse battery"}),
            )
            .await;
        }
        api.post("/projects/default/flags", &json!({"key": "launch", "name": "Launch"}))
            .await;
    });
    let sign_in = |email: &'static str| {
        let base = base.clone();
        async move {
            let mut visitor = Visitor::new(&base);
            let page = visitor.get("/sign-in").await;
            let csrf = csrf_of(&page.body);
            let signed = visitor
                .form(
                    "/sign-in",
                    &[
                        ("csrf", csrf.as_str()),
                        ("email", email),
                        ("password", "correct horse battery"),
                    ],
                )
                .await;
            assert_eq!(signed.status, 303, "{}", signed.body);
            let flag = visitor.get("/projects/default/flags/launch?env=test").await;
            (visitor, csrf_of(&flag.body))
        }
    };
    rt.block_on(async {
        let (mut writer, csrf) = sign_in("wes@example.com").await;
        let schedule = [
            ("env", "test"),
            ("what", "on"),
            ("date", "2031-01-01"),
            ("time", "08:00"),
            ("time_zone", "Pacific/Auckland"),
        ];
        let path = "/projects/default/flags/launch/schedule";
        let forged = writer.form(path, &schedule).await;
        assert_eq!(forged.status, 403);
        let mut with_csrf = schedule.to_vec();
        with_csrf.push(("csrf", csrf.as_str()));
        let made = writer.form(path, &with_csrf).await;
        assert_eq!(made.status, 303, "{}", made.body);
        let bad_zone: Vec<(&str, &str)> = with_csrf
            .iter()
            .map(|&(k, v)| {
                if k == "time_zone" {
                    (k, "Mars/Olympus")
                } else {
                    (k, v)
                }
            })
            .collect();
        let refused = writer.form(path, &bad_zone).await;
        assert_eq!(refused.status, 400);
        assert!(refused.body.contains("time zone"), "{}", refused.body);
        let trigger = writer
            .form(
                "/projects/default/flags/launch/triggers/new",
                &[("env", "test"), ("op", "off")],
            )
            .await;
        assert_eq!(trigger.status, 403);

        let (mut reader, csrf) = sign_in("rex@example.com").await;
        let mut as_reader = schedule.to_vec();
        as_reader.push(("csrf", csrf.as_str()));
        assert_eq!(reader.form(path, &as_reader).await.status, 403);
        let page = reader.get("/projects/default/flags/launch?env=test").await;
        assert!(
            !page.body.contains("data-testid=\"schedule-form\""),
            "a reader is not offered Schedule…"
        );
        let listed = api
            .get("/projects/default/environments/test/scheduled-changes")
            .await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        let triggers = api
            .get("/projects/default/flags/launch/environments/test/triggers")
            .await;
        assert_eq!(triggers["items"], json!([]));

        // A request's page shows what it changes against the flag now, and what others changed
        // since it was requested.
        let request = api
            .post(
                "/projects/default/environments/test/change-requests",
                &json!({"flag": "launch", "instructions": [{"kind": "turnFlagOn"}]}),
            )
            .await;
        let targeting = api.get("/projects/default/environments/test/flags/launch").await;
        api.put(
            "/projects/default/environments/test/flags/launch",
            &json!({"targets": [{"variation": 0, "values": ["zed"]}], "offVariation": 1, "fallthrough": {"variation": 1}}),
            targeting["version"].as_u64(),
        )
        .await;
        let page = writer
            .get(&format!(
                "/projects/default/change-requests/{}",
                request["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Changed by others since it was requested"), "{}", page.body);
        assert!(page.body.contains("zed"), "{}", page.body);
        let elsewhere = writer
            .get(&format!(
                "/projects/other/change-requests/{}",
                request["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(elsewhere.status, 404, "a request is found only in its own project");
    });
}
