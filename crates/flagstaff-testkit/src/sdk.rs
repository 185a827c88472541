//! The real LaunchDarkly SDKs, each in a child process running a small driver
//! (`sdk-clients/{python,node}`) that reads one JSON command per line and answers one line.
//! `sdk-clients/install` (run by `scripts/test`) installs them into ignored folders.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::workspace_root;

/// Which SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// PyPI `launchdarkly-server-sdk`.
    Python,
    /// npm `@launchdarkly/node-server-sdk`.
    Node,
}

impl Sdk {
    /// Both.
    pub const ALL: [Sdk; 2] = [Sdk::Python, Sdk::Node];

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::Node => "node",
        }
    }

    fn command(self) -> (PathBuf, PathBuf) {
        let root = workspace_root().join("sdk-clients");
        match self {
            Sdk::Python => (
                root.join("python/.venv/bin/python"),
                root.join("python/driver.py"),
            ),
            Sdk::Node => ("node".into(), root.join("node/driver.mjs")),
        }
    }

    fn installed(self) -> bool {
        let root = workspace_root().join("sdk-clients");
        match self {
            Sdk::Python => root.join("python/.venv/.installed").exists(),
            Sdk::Node => root.join("node/node_modules/.installed").exists(),
        }
    }

    /// Whether the SDKs are installed. When they are not, the test is skipped with a loud
    /// warning, or fails if `FLAGSTAFF_REQUIRE_SDKS` is set (as it is on CI).
    pub fn available() -> bool {
        if Sdk::ALL.iter().all(|sdk| sdk.installed()) {
            return true;
        }
        let message = "the LaunchDarkly SDKs are not installed: run sdk-clients/install";
        if std::env::var_os("FLAGSTAFF_REQUIRE_SDKS").is_some() {
            panic!("{message} (FLAGSTAFF_REQUIRE_SDKS is set)");
        }
        eprintln!("\n!!! SKIPPING REAL-SDK TESTS: {message} !!!\n");
        false
    }
}

/// Runs `sdk-clients/node/<script>` with `input` as JSON on stdin and returns the JSON it
/// prints (the OpenFeature OFREP provider runs this way, `ofrep.mjs`). Panics with the script's
/// stderr when it fails.
pub fn run_node_script(script: &str, input: &Value) -> Value {
    run_script_in("sdk-clients/node", script, input)
}

fn run_script_in(folder: &str, script: &str, input: &Value) -> Value {
    let path = workspace_root().join(folder).join(script);
    let mut child = Command::new("node")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node {}: {e}", path.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the script's input");
    let output = child.wait_with_output().expect("the script's output");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A child process that answers one JSON line per JSON command line.
#[derive(Debug)]
pub struct LineProcess {
    name: &'static str,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl LineProcess {
    /// Starts `program script`.
    pub fn start(name: &'static str, program: &Path, script: &Path) -> LineProcess {
        LineProcess::start_with_env(name, program, script, &[])
    }

    /// Starts `program script` with extra environment variables.
    pub fn start_with_env(
        name: &'static str,
        program: &Path,
        script: &Path,
        env: &[(&str, &str)],
    ) -> LineProcess {
        let mut child = Command::new(program)
            .arg(script)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {name} driver: {e}"));
        let input = child.stdin.take().expect("stdin is piped");
        let output = BufReader::new(child.stdout.take().expect("stdout is piped"));
        LineProcess {
            name,
            child,
            input,
            output,
        }
    }

    /// Sends one command and returns the answer; panics on a driver error.
    pub fn send(&mut self, command: &Value) -> Value {
        writeln!(self.input, "{command}").expect("write to the driver");
        self.input.flush().expect("flush to the driver");
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .expect("read from the driver");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{} driver answered {line:?} to {command}: {e}", self.name));
        if let Some(error) = answer.get("error") {
            panic!("{} driver failed on {command}: {error}", self.name);
        }
        answer
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// LaunchDarkly's browser SDK in headless chromium (`sdk-clients/browser/driver.mjs`).
#[derive(Debug)]
pub struct Browser;

impl Browser {
    /// Whether the browser SDK, playwright-core and chromium are installed; like
    /// [`Sdk::available`], a loud skip, or a failure when `FLAGSTAFF_REQUIRE_SDKS` is set.
    pub fn available() -> bool {
        let installed = workspace_root()
            .join("sdk-clients/browser/node_modules/.installed")
            .exists()
            && Path::new(&chromium()).exists();
        if installed {
            return true;
        }
        let message = "the browser SDK or chromium is not installed: run sdk-clients/install";
        if std::env::var_os("FLAGSTAFF_REQUIRE_SDKS").is_some() {
            panic!("{message} (FLAGSTAFF_REQUIRE_SDKS is set)");
        }
        eprintln!("\n!!! SKIPPING BROWSER TESTS: {message} !!!\n");
        false
    }

    /// Starts the driver (one chromium for all pages).
    pub fn start() -> LineProcess {
        Browser::start_trusting(None)
    }

    /// Starts the driver with chromium trusting, for HTTPS, exactly the server key whose
    /// SubjectPublicKeyInfo has this SHA-256 (base64), as a test's throwaway certificate needs.
    pub fn start_trusting(spki_sha256: Option<&str>) -> LineProcess {
        LineProcess::start_with_env(
            "browser",
            Path::new("node"),
            &workspace_root().join("sdk-clients/browser/driver.mjs"),
            &[(
                "FLAGSTAFF_BROWSER_TRUSTED_SPKI",
                spki_sha256.unwrap_or_default(),
            )],
        )
    }

    /// Runs `sdk-clients/browser/<script>` (a playwright-core script that drives chromium
    /// itself, like `dashboard.mjs`) with `input` as JSON on stdin; returns the JSON it prints.
    pub fn run_script(script: &str, input: &Value) -> Value {
        run_script_in("sdk-clients/browser", script, input)
    }

    /// The browser SDK's UMD build, served to test pages.
    pub fn sdk_script() -> Vec<u8> {
        std::fs::read(workspace_root().join(
            "sdk-clients/browser/node_modules/launchdarkly-js-client-sdk/dist/ldclient.min.js",
        ))
        .expect("the browser SDK is installed")
    }
}

fn chromium() -> String {
    std::env::var("FLAGSTAFF_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// A running SDK driver process.
#[derive(Debug)]
pub struct Driver {
    /// Which SDK it runs.
    pub sdk: Sdk,
    process: LineProcess,
}

impl Driver {
    /// Starts the driver of `sdk`.
    pub fn start(sdk: Sdk) -> Driver {
        let (program, script) = sdk.command();
        Driver {
            sdk,
            process: LineProcess::start(sdk.name(), &program, &script),
        }
    }

    /// Sends one command and returns the answer; panics on a driver error.
    pub fn send(&mut self, command: &Value) -> Value {
        self.process.send(command)
    }

    /// Opens a client `id` for an SDK key against `base`; returns whether it initialized.
    pub fn open(&mut self, id: &str, sdk_key: &str, base: &str, stream: bool) -> bool {
        self.send(
            &json!({"cmd": "open", "id": id, "sdkKey": sdk_key, "baseUri": base,
            "stream": stream, "startWait": 10}),
        )["initialized"]
            .as_bool()
            .unwrap_or(false)
    }

    /// Opens a client `id` whose SDK uses its FDv2 data system (`data_system`: `default`,
    /// `streaming` or `polling`) instead of the FDv1 data source. Returns whether it
    /// initialized.
    pub fn open_fdv2(&mut self, id: &str, sdk_key: &str, base: &str, data_system: &str) -> bool {
        self.send(
            &json!({"cmd": "open", "id": id, "sdkKey": sdk_key, "baseUri": base,
            "dataSystem": data_system, "startWait": 10}),
        )["initialized"]
            .as_bool()
            .unwrap_or(false)
    }

    /// Every line the driver's SDK logged since it started (info and above).
    pub fn logs(&mut self, id: &str) -> Vec<String> {
        let answer = self.send(&json!({"cmd": "status", "id": id}));
        answer["logs"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Opens a client `id` in daemon mode: it reads flags from LaunchDarkly's Redis store layout
    /// under `prefix` (caching them for `cache_seconds`), never from `base`, which only receives
    /// its events. Returns whether it initialized.
    pub fn open_daemon(
        &mut self,
        id: &str,
        sdk_key: &str,
        base: &str,
        redis_url: &str,
        prefix: &str,
        cache_seconds: f64,
    ) -> bool {
        self.send(
            &json!({"cmd": "open", "id": id, "sdkKey": sdk_key, "baseUri": base,
            "startWait": 10,
            "redis": {"url": redis_url, "prefix": prefix, "cacheSeconds": cache_seconds}}),
        )["initialized"]
            .as_bool()
            .unwrap_or(false)
    }

    /// Evaluates a batch on client `id`: `[{"flagKey", "context", "default", "valueType"}]`.
    pub fn evaluate(&mut self, id: &str, evaluations: &[Value]) -> Vec<Value> {
        self.send(&json!({"cmd": "evaluate", "id": id, "evaluations": evaluations}))["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// One boolean-or-any evaluation's value on client `id`.
    pub fn value(&mut self, id: &str, flag_key: &str, context: &Value, default: &Value) -> Value {
        self.evaluate(
            id,
            &[json!({"flagKey": flag_key, "context": context, "default": default, "valueType": "any"})],
        )
        .first()
        .map(|r| r["value"].clone())
        .unwrap_or(Value::Null)
    }

    /// Opens a client `id` like [`Driver::open`] (streaming) that treats `private` attributes
    /// as private in the events it sends.
    pub fn open_with_private(
        &mut self,
        id: &str,
        sdk_key: &str,
        base: &str,
        private: &[&str],
    ) -> bool {
        self.send(
            &json!({"cmd": "open", "id": id, "sdkKey": sdk_key, "baseUri": base,
            "stream": true, "startWait": 10, "privateAttributes": private}),
        )["initialized"]
            .as_bool()
            .unwrap_or(false)
    }

    /// Tracks a custom event on client `id`.
    pub fn track(&mut self, id: &str, key: &str, context: &Value, metric_value: Option<f64>) {
        self.send(
            &json!({"cmd": "track", "id": id, "key": key, "context": context,
            "metricValue": metric_value}),
        );
    }

    /// Flushes client `id`'s events.
    pub fn flush(&mut self, id: &str) {
        self.send(&json!({"cmd": "flush", "id": id}));
    }

    /// Closes client `id`.
    pub fn close(&mut self, id: &str) {
        self.send(&json!({"cmd": "close", "id": id}));
    }
}
