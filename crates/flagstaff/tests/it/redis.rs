//! Daemon mode: `flagstaff serve --redis-url` keeps LaunchDarkly's Redis persistent store layout
//! current, and the real LaunchDarkly SDKs (Python from PyPI, Node from npm with
//! `@launchdarkly/node-server-sdk-redis`) configured with a Redis store and `use_ldd` read their
//! flags from there, never from the server. Uses the Redis at `FLAGSTAFF_TEST_REDIS_URL`
//! (default: the machine's, 127.0.0.1:6379), each test under its own key prefix, removed at the
//! end. Without a reachable Redis these tests are skipped with a warning, unless
//! `FLAGSTAFF_REQUIRE_REDIS` is set (as on CI), where they fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flagstaff_testkit::conformance;
use flagstaff_testkit::sdk::{Driver, Sdk};
use serde_json::{Value, json};

use crate::sdks::{
    Mode, binary, eventually, flag_and_segment_changes_reach, fresh_server_with, load_variants,
    run_all_and_compare, runtime,
};

/// The Redis the tests write to, or `None` (skip) when it cannot be reached.
pub(crate) fn redis_url() -> Option<String> {
    let url = std::env::var("FLAGSTAFF_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match reachable {
        Ok(_) => Some(url),
        Err(e) if std::env::var_os("FLAGSTAFF_REQUIRE_REDIS").is_none() => {
            eprintln!(
                "!!! Redis at {url} is unreachable ({e}): skipping the daemon-mode tests !!!"
            );
            None
        }
        Err(e) => panic!("Redis is required (FLAGSTAFF_REQUIRE_REDIS) but {url} fails: {e}"),
    }
}

/// A key prefix no other test (or earlier run) uses, and removes its keys when dropped.
pub(crate) struct Prefix(pub(crate) String);

impl Prefix {
    pub(crate) fn new(test: &str) -> Prefix {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Prefix(format!("fs-test-{test}-{}-{nanos}", std::process::id()))
    }

    /// The `--redis-prefix` template under this prefix.
    pub(crate) fn template(&self) -> String {
        format!("{}:{{project}}:{{environment}}", self.0)
    }

    /// The prefix of one environment.
    pub(crate) fn of(&self, project: &str, environment: &str) -> String {
        format!("{}:{project}:{environment}", self.0)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(mut redis) = connect() else { return };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut redis)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut redis);
        }
    }
}

fn connect() -> redis::RedisResult<redis::Connection> {
    let url = std::env::var("FLAGSTAFF_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    redis::Client::open(url)?.get_connection()
}

/// The stored JSON of one item (`features` or `segments` hash), if any.
fn stored(redis: &mut redis::Connection, prefix: &str, kind: &str, key: &str) -> Option<Value> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}:{kind}"))
        .arg(key)
        .query(redis)
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

fn inited(redis: &mut redis::Connection, prefix: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(format!("{prefix}:$inited"))
        .query::<i64>(redis)
        .unwrap()
        == 1
}

#[test]
fn every_conformance_vector_evaluates_the_same_from_redis_in_daemon_mode() {
    let Some(variants) = conformance::variants() else {
        return;
    };
    if !Sdk::available() {
        return;
    }
    let Some(redis_url) = redis_url() else { return };
    let prefix = Prefix::new("vectors");
    let dir = tempfile::tempdir().unwrap();
    let template = prefix.template();
    let (server, api, _) = fresh_server_with(
        dir.path(),
        &["--redis-url", &redis_url, "--redis-prefix", &template],
    );
    let base = server.base();
    let rt = runtime();
    let loaded = load_variants(&rt, &api, &base, &variants);

    // Redis holds what the server serves, item for item, before any SDK reads it.
    let mut redis = connect().expect("Redis");
    for item in &loaded {
        let env_prefix = prefix.of(&item.project, "test");
        let complete = eventually(Duration::from_secs(20), || {
            inited(&mut redis, &env_prefix)
                && item.data.flags.values().all(|flag| {
                    stored(&mut redis, &env_prefix, "features", &flag.key)
                        .is_some_and(|s| s["version"] == flag.version)
                })
                && item.data.segments.values().all(|segment| {
                    stored(&mut redis, &env_prefix, "segments", &segment.key)
                        .is_some_and(|s| s["version"] == segment.version)
                })
        });
        assert!(
            complete,
            "Redis holds {} / {}",
            item.variant.file, item.variant.label
        );
    }

    let mode = Mode::Daemon {
        redis_url: &redis_url,
        prefix: &template,
    };
    let runs: Vec<(Sdk, Mode<'_>)> = Sdk::ALL.iter().map(|sdk| (*sdk, mode)).collect();
    run_all_and_compare("daemon mode, read from Redis", &base, &runs, &loaded);
    drop(server);
}

#[test]
fn daemon_mode_sdks_follow_changes_and_redis_never_moves_a_version_back() {
    if !Sdk::available() {
        return;
    }
    let Some(redis_url) = redis_url() else { return };
    let prefix = Prefix::new("live");
    let dir = tempfile::tempdir().unwrap();
    let template = prefix.template();
    let (server, api, sdk_key) = fresh_server_with(
        dir.path(),
        &["--redis-url", &redis_url, "--redis-prefix", &template],
    );
    let base = server.base();
    let rt = runtime();
    let env_prefix = prefix.of("default", "production");
    let targeting = "/projects/default/environments/production/flags/live";
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));
    let mut redis = connect().expect("Redis");
    assert!(eventually(Duration::from_secs(10), || stored(
        &mut redis,
        &env_prefix,
        "features",
        "live"
    )
    .is_some()));

    // Half a second of SDK cache: a change must show within it (plus our write).
    let mut drivers: Vec<Driver> = Sdk::ALL.into_iter().map(Driver::start).collect();
    let alice = json!({"kind": "user", "key": "alice", "country": "NZ"});
    for driver in &mut drivers {
        assert!(
            driver.open_daemon("d", &sdk_key, &base, &redis_url, &env_prefix, 0.5),
            "{} initializes from Redis",
            driver.sdk.name()
        );
        assert_eq!(
            driver.value("d", "live", &alice, &json!("default")),
            json!(false)
        );
    }
    flag_and_segment_changes_reach(&rt, &api, &mut drivers, "d");
    let all_see = |drivers: &mut Vec<Driver>, expected: &Value| {
        drivers.iter_mut().all(|d| {
            eventually(Duration::from_secs(5), || {
                d.value("d", "live", &alice, &json!("default")) == *expected
            })
        })
    };

    // Archiving removes the flag from what SDKs see: Redis holds a tombstone above the last
    // version, and the SDKs answer with the caller's default.
    let live_version = stored(&mut redis, &env_prefix, "features", "live").unwrap()["version"]
        .as_u64()
        .unwrap();
    rt.block_on(api.post("/projects/default/flags/live/archive", &json!({})));
    assert!(eventually(Duration::from_secs(5), || {
        stored(&mut redis, &env_prefix, "features", "live")
            .is_some_and(|s| s["deleted"] == true && s["version"].as_u64() > Some(live_version))
    }));
    assert!(
        all_see(&mut drivers, &json!("default")),
        "an archived flag is gone for both SDKs"
    );

    // Updates are version-checked in Redis: an item someone stored with a higher version (another
    // writer ahead of us) is not overwritten by an older one.
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "pinned", "name": "Pinned"}),
    ));
    assert!(eventually(Duration::from_secs(5), || stored(
        &mut redis,
        &env_prefix,
        "features",
        "pinned"
    )
    .is_some()));
    let mut ahead = stored(&mut redis, &env_prefix, "features", "pinned").unwrap();
    ahead["version"] = json!(1_000_000);
    ahead["on"] = json!(true);
    let _: () = redis::cmd("HSET")
        .arg(format!("{env_prefix}:features"))
        .arg("pinned")
        .arg(ahead.to_string())
        .query(&mut redis)
        .unwrap();
    let pinned = "/projects/default/environments/production/flags/pinned";
    let current = rt.block_on(api.get(pinned));
    rt.block_on(api.put(
        pinned,
        &json!({"on": false, "fallthrough": {"variation": 1}, "offVariation": 0}),
        current["version"].as_u64(),
    ));
    // The next change to any item proves the writer has passed this one.
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": false, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "marker", "name": "Marker"}),
    ));
    assert!(eventually(Duration::from_secs(5), || stored(
        &mut redis,
        &env_prefix,
        "features",
        "marker"
    )
    .is_some()));
    let kept = stored(&mut redis, &env_prefix, "features", "pinned").unwrap();
    assert_eq!(
        kept["version"], 1_000_000,
        "a lower version never overwrites"
    );
    assert_eq!(kept["on"], true);

    // Redis losing everything (a restart without persistence) is noticed and repaired.
    let _: () = redis::cmd("DEL")
        .arg(format!("{env_prefix}:$inited"))
        .arg(format!("{env_prefix}:features"))
        .arg(format!("{env_prefix}:segments"))
        .query(&mut redis)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || inited(&mut redis, &env_prefix)
            && stored(&mut redis, &env_prefix, "features", "marker").is_some()
            && stored(&mut redis, &env_prefix, "segments", "kiwis").is_some()),
        "the data set is written again"
    );
    drop(server);
}

#[test]
fn redis_settings_are_checked_and_an_unreachable_redis_does_not_stop_the_server() {
    let Some(redis_url) = redis_url() else { return };
    // A prefix that every environment would share is refused at start, with the reason.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--redis-url", &redis_url, "--redis-prefix", "launchdarkly"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--redis-prefix must contain {project} and {environment}"),
        "{stderr}"
    );

    // Redis down: SDKs that connect to the server are served as usual while the writer retries.
    let dir = tempfile::tempdir().unwrap();
    let (server, _api, sdk_key) = fresh_server_with(
        dir.path(),
        &[
            "--redis-url",
            "redis://127.0.0.1:1",
            "--redis-prefix",
            "x:{project}:{environment}",
        ],
    );
    let rt = runtime();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/sdk/latest-all", server.base()))
            .header("Authorization", &sdk_key)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    drop(server);
}

/// A relay writes the same store from its copy of the upstream (`relay --redis-url`, here through
/// its environment variables), so daemon-mode SDKs inside a customer's network need no path to
/// the server at all.
#[test]
fn a_relay_keeps_the_redis_store_current_for_daemon_mode_sdks() {
    use flagstaff_testkit::relay::{RelayEnvironment, TestRelay};
    if !Sdk::available() {
        return;
    }
    let Some(redis_url) = redis_url() else { return };
    let prefix = Prefix::new("relay");
    let dir = tempfile::tempdir().unwrap();
    let (server, api, sdk_key) = fresh_server_with(dir.path(), &[]);
    let rt = runtime();
    rt.block_on(api.post(
        "/projects/default/flags",
        &json!({"key": "live", "name": "Live"}),
    ));
    let relay_dir = tempfile::tempdir().unwrap();
    let template = prefix.template();
    let relay = TestRelay::start_with_env(
        binary(),
        relay_dir.path(),
        &server.base(),
        &[RelayEnvironment::production(&sdk_key)],
        "",
        &[
            ("FLAGSTAFF_REDIS_URL", redis_url.as_str()),
            ("FLAGSTAFF_REDIS_PREFIX", template.as_str()),
        ],
    );
    let env_prefix = prefix.of("default", "production");
    let mut redis = connect().expect("Redis");
    assert!(
        eventually(Duration::from_secs(10), || inited(&mut redis, &env_prefix)
            && stored(&mut redis, &env_prefix, "features", "live").is_some()),
        "the relay wrote the environment"
    );
    let mut driver = Driver::start(Sdk::Python);
    assert!(driver.open_daemon("d", &sdk_key, &relay.base(), &redis_url, &env_prefix, 0.5));
    let ann = json!({"kind": "user", "key": "ann"});
    assert_eq!(
        driver.value("d", "live", &ann, &json!("default")),
        json!(false)
    );
    let targeting = "/projects/default/environments/production/flags/live";
    let current = rt.block_on(api.get(targeting));
    rt.block_on(api.put(
        targeting,
        &json!({"on": true, "fallthrough": {"variation": 0}, "offVariation": 1}),
        current["version"].as_u64(),
    ));
    assert!(
        eventually(Duration::from_secs(10), || driver.value(
            "d",
            "live",
            &ann,
            &json!("default")
        ) == json!(true)),
        "a change on the server reaches the SDK through the relay and Redis"
    );
    drop(relay);
    drop(server);
}
