//! The OpenAPI document must not drift from the code: the committed file equals the generated
//! document, the server serves it, and every documented operation reaches a real handler.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::TestApi;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[test]
fn committed_document_matches_the_code() {
    let generated =
        serde_json::to_string_pretty(&flagstaff_api::openapi::document()).unwrap() + "\n";
    if std::env::var_os("FLAGSTAFF_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/flagstaff-api/openapi.json is out of date: run FLAGSTAFF_UPDATE_OPENAPI=1 cargo test -p flagstaff-api openapi and commit it"
    );
}

#[tokio::test]
async fn the_server_serves_it_and_every_documented_operation_exists() {
    let api = TestApi::new().await;
    let served = api
        .call(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, flagstaff_api::openapi::document());
    let paths = served.body["paths"].as_object().unwrap();
    let mut operations = 0;
    for (template, methods) in paths {
        let path = format!("/api/v1{template}")
            .replace("{project}", "default")
            .replace("{environment}", "production")
            .replace("{key}", "some-key")
            .replace("{kind}", "sdk")
            .replace("{id}", "tok-none")
            .replace("{email}", "nobody@example.com");
        for method in methods.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let reply = api
                .call(
                    method.clone(),
                    &path,
                    Some(api.admin()),
                    &[("if-match", "\"1\"")],
                    Some(Value::Object(Default::default())),
                )
                .await;
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            assert_ne!(
                reply.body["message"], "no such API endpoint",
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");
}
