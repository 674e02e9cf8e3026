//! Runs the dpsd binary for the integration tests: from a config file, with the listeners on
//! free ports, reading the HTTPS port and the development trust root from its banner. The
//! process is killed (and its directory removed) when the handle is dropped, so a failed test
//! leaves nothing running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use dps_testkit::{OWNER, OWNER_KEY};

/// A running dpsd.
pub struct Dpsd {
    child: Child,
    /// The HTTPS port it listens on (127.0.0.1).
    pub port: u16,
    /// The path of its development CA certificate (PEM).
    pub ca: String,
    /// A directory of its own, removed on drop.
    dir: Option<PathBuf>,
}

impl Dpsd {
    /// Starts dpsd with `config` and the extra environment `env`, and waits for its banner.
    pub async fn start(config: &Path, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpsd"));
        cmd.arg("--config")
            .arg(config)
            .env_remove("DPSD_LISTEN_HTTPS")
            .env_remove("DPSD_LISTEN_MQTT")
            .env_remove("DPSD_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("dpsd starts");
        let out = child.stdout.take().expect("stdout is piped");
        // Killed on drop from here on, also when the banner is not what is expected.
        let mut dpsd = Self {
            child,
            port: 0,
            ca: String::new(),
            dir: None,
        };
        let banner = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            let mut out = BufReader::new(out);
            while !lines.iter().any(|l: &String| l.contains("trust root")) {
                let mut l = String::new();
                if out.read_line(&mut l).unwrap_or(0) == 0 {
                    break;
                }
                lines.push(l.trim_end().to_owned());
            }
            lines.join("\n")
        })
        .await
        .expect("banner reader");
        dpsd.port = banner
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in the banner: {banner}"));
        dpsd.ca = banner
            .split("trust root (dev CA): ")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap_or_else(|| panic!("no trust root in the banner: {banner}"))
            .to_owned();
        dpsd
    }
}

impl Dpsd {
    /// Starts dpsd in a fresh directory named after `name`, holding `files` (name, contents)
    /// and a `dpsd.toml` of an HTTPS listener, the memory store, `scope` (a `[[scope]]` table
    /// and its sub-tables) and the scope's owner policy ([`OWNER`]).
    pub async fn with_scope(
        name: &str,
        scope: &str,
        files: &[(&str, &str)],
        env: &[(&str, String)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("dpsd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        for (file, contents) in files {
            std::fs::write(dir.join(file), contents).expect("test file");
        }
        let config = format!(
            r#"
[listen]
https = "127.0.0.1:0"

[storage]
kind = "memory"
data_dir = "./data"

{scope}

[[scope.policy]]
name = "{OWNER}"
primary_key = "{OWNER_KEY}"
rights = ["ServiceConfig", "EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"]
"#
        );
        std::fs::write(dir.join("dpsd.toml"), config).expect("config file");
        let mut dpsd = Self::start(&dir.join("dpsd.toml"), env).await;
        dpsd.dir = Some(dir);
        dpsd
    }
}

impl Drop for Dpsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
