//! `flagstaff relay` as a real process, configured by a TOML file this module writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One environment a relay serves.
#[derive(Clone, Debug)]
pub struct RelayEnvironment {
    /// The project key the relay names it with.
    pub project: String,
    /// The environment key.
    pub key: String,
    /// Its SDK key.
    pub sdk_key: String,
    /// Its client-side ID, when browsers are served.
    pub client_side_id: Option<String>,
    /// Whether secure mode is on.
    pub secure_mode: bool,
}

impl RelayEnvironment {
    /// `default/production` with its SDK key, no browsers, no secure mode.
    pub fn production(sdk_key: &str) -> RelayEnvironment {
        RelayEnvironment {
            project: "default".into(),
            key: "production".into(),
            sdk_key: sdk_key.into(),
            client_side_id: None,
            secure_mode: false,
        }
    }
}

/// A running `flagstaff relay`. Killed when dropped.
#[derive(Debug)]
pub struct TestRelay {
    child: Child,
    /// `127.0.0.1:port`, kept across restarts.
    pub address: String,
    binary: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

/// A loopback port free a moment ago (the relay's address must survive restarts, so it is
/// fixed in the file rather than `:0`).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestRelay {
    /// Writes a configuration into `dir` (data in `dir/data`) and starts the relay on a free
    /// port.
    pub fn start(
        binary: &Path,
        dir: &Path,
        upstream: &str,
        environments: &[RelayEnvironment],
    ) -> TestRelay {
        TestRelay::start_with(binary, dir, upstream, environments, "")
    }

    /// [`TestRelay::start`] with more TOML (tables such as `[events]`) appended.
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        upstream: &str,
        environments: &[RelayEnvironment],
        more: &str,
    ) -> TestRelay {
        TestRelay::start_with_env(binary, dir, upstream, environments, more, &[])
    }

    /// [`TestRelay::start_with`] with environment variables (`FLAGSTAFF_REDIS_URL`, …).
    pub fn start_with_env(
        binary: &Path,
        dir: &Path,
        upstream: &str,
        environments: &[RelayEnvironment],
        more: &str,
        env: &[(&str, &str)],
    ) -> TestRelay {
        let mut toml = format!(
            "upstream = {upstream:?}\nlisten = \"127.0.0.1:{}\"\ndata_dir = {:?}\nmax_backoff_ms = 1000\n",
            free_port(),
            dir.join("data").display().to_string()
        );
        for environment in environments {
            toml.push_str(&format!(
                "\n[[environment]]\nproject = {:?}\nkey = {:?}\nsdk_key = {:?}\nsecure_mode = {}\n",
                environment.project, environment.key, environment.sdk_key, environment.secure_mode
            ));
            if let Some(id) = &environment.client_side_id {
                toml.push_str(&format!("client_side_id = {id:?}\n"));
            }
        }
        toml.push('\n');
        toml.push_str(more);
        let config = dir.join("relay.toml");
        std::fs::write(&config, toml).expect("write the relay configuration");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TestRelay::spawn(binary, &config, &env)
    }

    fn spawn(binary: &Path, config: &Path, env: &[(String, String)]) -> TestRelay {
        let mut child = Command::new(binary)
            .args(["relay", "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("FLAGSTAFF_LOG", "warn,flagstaff::relay=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flagstaff relay");
        let address = crate::server::read_address(&mut child, "relay");
        TestRelay {
            child,
            address,
            binary: binary.to_owned(),
            config: config.to_owned(),
            env: env.to_vec(),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Starts the relay again with the same configuration (after [`TestRelay::stop`]).
    pub fn restart(&mut self) {
        let mut relay =
            crate::server::retry_start(|| TestRelay::spawn(&self.binary, &self.config, &self.env));
        std::mem::swap(self, &mut relay);
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
