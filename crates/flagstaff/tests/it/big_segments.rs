//! Big segments (issue 22) as a user meets them: a segment created with `"unbounded": true`, a
//! list of a million keys uploaded in one streamed request (the server's memory does not grow by
//! the list's size), then membership right for included, excluded and absent keys through the
//! browser endpoint (evalx), OFREP, and LaunchDarkly's Python SDK reading Flagstaff's Redis
//! big-segment store, which reports `HEALTHY`, and `STALE` once the server stops synchronizing.
//! Beside them, the attacks: no token, a reader, a small segment, a bad list.

use std::time::{Duration, Instant};

use base64::Engine as _;
use flagstaff_testkit::sdk::{Driver, Sdk};
use serde_json::{Value, json};

use crate::redis::{Prefix, redis_url};
use crate::sdks::{eventually, fresh_server_with, runtime};

const MEMBERS: usize = 1_000_000;

/// A context key of the list: padded so that the list (~78 MB) is far larger than what the
/// server's memory may grow by anyway while it writes a million rows (SQLite's page caches,
/// the allocator's arenas: about 20 MB measured, whatever the list's size).
fn member(i: usize) -> String {
    format!("customer-{i:07}-{}", "x".repeat(60))
}

fn post_list(
    base: &str,
    token: &str,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .post(format!(
                "{base}/api/v1/projects/default/environments/production/segments/vip/members{query}"
            ))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn a_million_key_big_segment_evaluates_everywhere() {
    let Some(url) = redis_url() else { return };
    if !Sdk::available() {
        return;
    }
    let prefix = Prefix::new("big");
    let dir = tempfile::tempdir().unwrap();
    let template = prefix.template();
    let (mut server, api, sdk_key) = fresh_server_with(
        dir.path(),
        &["--redis-url", &url, "--redis-prefix", &template],
    );
    let base = server.base();
    let rt = runtime();
    let environment = rt.block_on(api.get("/projects/default/environments/production"));
    let client_side_id = environment["clientSideId"].as_str().unwrap().to_owned();
    let admin = api.token().to_owned();

    let segment = rt.block_on(api.post(
        "/projects/default/environments/production/segments",
        &json!({"key": "vip", "unbounded": true, "unboundedContextKind": "user",
            "rules": [{"clauses": [{"attribute": "plan", "op": "in", "values": ["gold"]}]}]}),
    ));
    assert_eq!(segment["generation"], 1, "{segment}");
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "perk", "name": "Perk", "variations": [{"value": false}, {"value": true}],
            "clientSideAvailability": {"usingEnvironmentId": true, "usingMobileKey": true}}),
    ));
    let targeting = "/projects/default/environments/production/flags/perk";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 0,
            "rules": [{"variation": 1, "clauses": [{"attribute": "", "op": "segmentMatch", "values": ["vip"]}]}]}),
        current["version"].as_u64(),
    ));

    // The attacks first: nothing is read before the caller is authorized.
    let reader = rt.block_on(api.post("/tokens", &json!({"name": "r", "role": "reader"})));
    let reader = reader["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        post_list(&base, "", "", "text/plain", b"a\n".to_vec()).0,
        401
    );
    assert_eq!(
        post_list(&base, &sdk_key, "", "text/plain", b"a\n".to_vec()).0,
        401
    );
    let (code, refusal) = post_list(&base, &reader, "", "text/plain", b"a\n".to_vec());
    assert_eq!(
        (code, refusal["code"].as_str()),
        (403, Some("forbidden")),
        "{refusal}"
    );
    let (code, refusal) = post_list(
        &base,
        &admin,
        "?list=everyone",
        "text/plain",
        b"a\n".to_vec(),
    );
    assert_eq!(
        (code, refusal["field"].as_str()),
        (400, Some("list")),
        "{refusal}"
    );
    let (code, refusal) = post_list(
        &base,
        &admin,
        "",
        "text/plain",
        b"ok\nbad\x07key\n".to_vec(),
    );
    assert_eq!(
        (code, refusal["field"].as_str()),
        (400, Some("line 2")),
        "{refusal}"
    );
    rt.block_on(api.post(
        "/projects/default/environments/production/segments",
        &json!({"key": "small", "included": ["a"]}),
    ));
    let small = runtime().block_on(async {
        reqwest::Client::new()
            .post(format!(
                "{base}/api/v1/projects/default/environments/production/segments/small/members"
            ))
            .bearer_auth(&admin)
            .body("b\n")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    assert_eq!(small["field"], "unbounded", "{small}");

    // Small uploads first (each upload is a generation the Redis store copies whole, so the
    // big one comes last): one key excluded (JSON), one added and removed again (text, CSV).
    let excluded = member(5);
    let (code, summary) = post_list(
        &base,
        &admin,
        "?list=excluded",
        "application/json",
        serde_json::to_vec(&json!([excluded])).unwrap(),
    );
    assert_eq!(
        (code, summary["excluded"].as_u64()),
        (200, Some(1)),
        "{summary}"
    );
    let removed = member(6);
    let (code, _) = post_list(
        &base,
        &admin,
        "",
        "text/plain",
        format!("{removed}\n").into_bytes(),
    );
    assert_eq!(code, 200);
    let (code, summary) = post_list(
        &base,
        &admin,
        "?op=remove",
        "text/csv",
        format!("\"{removed}\",note\n").into_bytes(),
    );
    assert_eq!(
        (code, summary["changed"].as_u64()),
        (200, Some(1)),
        "{summary}"
    );

    // A million keys (all but those two) in one streamed request.
    let mut list = Vec::with_capacity(MEMBERS * 80);
    for i in (0..MEMBERS).filter(|i| *i != 5 && *i != 6) {
        list.extend_from_slice(member(i).as_bytes());
        list.push(b'\n');
    }
    let list_bytes = list.len() as u64;
    let resident_before = server.resident_kib();
    let started = Instant::now();
    let (code, summary) = post_list(&base, &admin, "?list=included&op=add", "text/plain", list);
    let elapsed = started.elapsed();
    assert_eq!(code, 200, "{summary}");
    // The refused list above applied nothing: its bad line came before its first batch ended.
    assert_eq!(summary["included"], MEMBERS - 2, "{summary}");
    assert_eq!(summary["received"], MEMBERS - 2, "{summary}");
    let grown_kib = server.resident_kib().saturating_sub(resident_before);
    eprintln!(
        "uploaded {} keys ({list_bytes} bytes) in {elapsed:?}; resident memory grew by {grown_kib} KiB",
        MEMBERS - 2
    );
    assert!(
        grown_kib * 1024 < list_bytes / 2,
        "the list is streamed, not held: memory grew by {grown_kib} KiB for a {list_bytes}-byte list"
    );
    let counts =
        rt.block_on(api.get("/projects/default/environments/production/segments/vip/members"));
    assert_eq!(counts, json!({"included": MEMBERS - 2, "excluded": 1}));

    // Who gets the perk: an included key, an excluded key (even with the gold plan), a removed
    // key and a stranger (no rule matches), and a stranger on the gold plan (the rule).
    let cases = [
        (json!({"kind": "user", "key": member(7)}), true),
        (json!({"kind": "user", "key": member(MEMBERS - 1)}), true),
        (
            json!({"kind": "user", "key": excluded, "plan": "gold"}),
            false,
        ),
        (json!({"kind": "user", "key": removed}), false),
        (json!({"kind": "user", "key": "stranger"}), false),
        (
            json!({"kind": "user", "key": "stranger", "plan": "gold"}),
            true,
        ),
    ];
    for (context, expected) in &cases {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.to_string());
        let evalx = runtime().block_on(async {
            reqwest::get(format!(
                "{base}/sdk/evalx/{client_side_id}/contexts/{encoded}?withReasons=true"
            ))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
        });
        assert_eq!(
            evalx["perk"]["value"],
            json!(expected),
            "evalx {context}: {evalx}"
        );
        let mut ofrep_context = context.clone();
        let object = ofrep_context.as_object_mut().unwrap();
        let key = object.remove("key").unwrap();
        object.insert("targetingKey".into(), key);
        let ofrep = runtime().block_on(async {
            reqwest::Client::new()
                .post(format!("{base}/ofrep/v1/evaluate/flags/perk"))
                .bearer_auth(&sdk_key)
                .json(&json!({"context": ofrep_context}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        });
        assert_eq!(ofrep["value"], json!(expected), "OFREP {context}: {ofrep}");
    }

    // LaunchDarkly's Python SDK in daemon mode with the Redis big-segment store.
    let env_prefix = prefix.of("default", "production");
    let mut python = Driver::start(Sdk::Python);
    let opened = python.send(
        &json!({"cmd": "open", "id": "b", "sdkKey": sdk_key, "baseUri": base,
        "startWait": 5,
        "redis": {"url": url, "prefix": env_prefix, "cacheSeconds": 0.2},
        "bigSegments": {"url": url, "prefix": env_prefix, "staleAfterSeconds": 12,
            "statusPollSeconds": 0.5, "cacheSeconds": 0.1}}),
    );
    assert_eq!(opened["initialized"], true, "{opened}");
    let detail = |python: &mut Driver, context: &Value| {
        python.evaluate(
            "b",
            &[json!({"flagKey": "perk", "context": context, "default": "none"})],
        )[0]
        .clone()
    };
    for (context, expected) in &cases {
        assert!(
            eventually(Duration::from_secs(120), || {
                let result = detail(&mut python, context);
                result["value"] == json!(expected)
                    && result["reason"]["bigSegmentsStatus"] == "HEALTHY"
            }),
            "Python with the Redis big-segment store, {context}: {}",
            detail(&mut python, context)
        );
    }
    // The server stops: nothing synchronizes the store any more, and the SDK says so.
    server.stop();
    assert!(
        eventually(Duration::from_secs(30), || {
            detail(&mut python, &cases[0].0)["reason"]["bigSegmentsStatus"] == "STALE"
        }),
        "{}",
        detail(&mut python, &cases[0].0)
    );
}
