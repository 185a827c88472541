//! Release workflows in the dashboard, in headless Debian chromium
//! (`sdk-clients/browser/workflows.mjs`): schedule "tomorrow 08:00 Pacific/Auckland", see it
//! pending and badged, cancel it; request a production change where approval is required, have
//! another member approve and apply it. The server's state is checked here through the API.

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
    let report = Browser::run_script(
        "workflows.mjs",
        &json!({"base": base, "flag": "launch", "writer": writer, "admin": admin}),
    );
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
    assert!(s(&report, "badge").contains("scheduled"), "{report}");
    assert_eq!(s(&report, "afterCancel"), "Nothing is scheduled.");
    assert!(
        s(&report, "approvalNote").contains("need approval"),
        "{report}"
    );
    assert_eq!(s(&report, "saveLabel"), "Request approval");
    assert_eq!(s(&report, "requestStatus"), "waiting for review");
    assert!(s(&report, "requestDiff").contains("ON"), "{report}");
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
