//! Harness for end-to-end tests: the real `panoptes` binary, the GStreamer test camera,
//! the machine's PostgreSQL. Every wait is a condition polled against a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Polls `cond` every 100 ms until it returns `Some`, or fails after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory that PostgreSQL's system user can enter (tempdirs are 0700).
pub fn scratch_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("panoptes-e2e-").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The GStreamer RTSP test camera (`scripts/test-camera.py`).
pub struct Camera {
    pub port: u16,
    child: Option<Child>,
}

impl Camera {
    /// Starts a camera on a port the system picks.
    pub fn start() -> Camera {
        let mut cam = Camera { port: 0, child: None };
        cam.spawn();
        cam
    }

    fn spawn(&mut self) {
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("scripts/test-camera.py"))
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting scripts/test-camera.py (run scripts/setup.sh first)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // READY rtsp://127.0.0.1:PORT
                if let Some(port) = line.strip_prefix("READY ").and_then(|u| u.rsplit(':').next()) {
                    let _ = tx.send(port.trim_end_matches('/').parse::<u16>().unwrap_or(0));
                }
            }
        });
        let port =
            rx.recv_timeout(Duration::from_secs(30)).expect("test camera did not print READY within 30 s");
        assert!(port != 0, "test camera printed no port");
        // A restart keeps the port the first start got.
        self.port = port;
        self.child = Some(child);
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn freeze(&self) {
        kill(self.pid(), Signal::SIGSTOP).unwrap();
    }

    pub fn thaw(&self) {
        kill(self.pid(), Signal::SIGCONT).unwrap();
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill();
    }
}

/// A running `panoptes serve`.
pub struct Panoptes {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    pub metrics_token: String,
    client: reqwest::blocking::Client,
}

/// Extra environment for the binary.
pub type Env<'a> = &'a [(&'a str, &'a str)];

pub fn panoptes_cmd(env: Env<'_>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_panoptes"));
    c.env_remove("PANOPTES_DATABASE_URL").env_remove("PANOPTES_CONFIG").env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

impl Panoptes {
    /// Writes `config` (which may use `{port}` and `{data_dir}`) next to `dir` and starts
    /// `panoptes serve` with its log in `dir/panoptes-N.log`.
    pub fn start(dir: &Path, config: &str, env: Env<'_>) -> Panoptes {
        // Analytics costs CPU the other end-to-end tests do not need: off unless asked for.
        let config = if config.contains("[analytics]") {
            config.to_owned()
        } else {
            format!("{config}\n[analytics]\nenabled = false\n")
        };
        // Port 0: the system picks a free port, which the server then reports in its log.
        let config =
            config.replace("{port}", "0").replace("{data_dir}", &dir.join("data").display().to_string());
        let cfg = dir.join("panoptes.toml");
        std::fs::write(&cfg, config).unwrap();
        let n = std::fs::read_dir(dir).unwrap().count();
        let log = dir.join(format!("panoptes-{n}.log"));
        let token = "e2e-metrics-token".to_string();
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("E2E_METRICS_TOKEN", &token));
        let child = panoptes_cmd(&all)
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut p = Panoptes { child: Some(child), port: 0, log, metrics_token: token, client };
        // The server reports the port it bound ("HTTP server listening listen=127.0.0.1:N").
        p.port = wait_for(Duration::from_secs(90), "the HTTP server to listen", || {
            p.assert_running();
            let text = p.log_text();
            let line = text.lines().find(|l| l.contains("HTTP server listening"))?;
            line.rsplit("127.0.0.1:").next()?.split_whitespace().next()?.parse().ok()
        });
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// `/readyz` as JSON, whatever its status, or `None` if the server does not answer.
    pub fn readyz(&self) -> Option<serde_json::Value> {
        self.client.get(self.url("/readyz")).send().ok()?.json().ok()
    }

    /// Waits until `/readyz` says ready.
    pub fn wait_ready(&mut self, limit: Duration) -> serde_json::Value {
        wait_for(limit, "/readyz to report ready", || {
            self.assert_running();
            self.readyz().filter(|v| v["ready"] == true)
        })
    }

    pub fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(&self.metrics_token)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// The value of the first metric line starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("panoptes exited early ({status}); log:\n{}", self.log_text());
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
        wait_for(limit, "panoptes to exit after SIGTERM", || c.try_wait().unwrap())
    }
}

impl Drop for Panoptes {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh database on the machine's PostgreSQL (`DATABASE_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end.
pub struct TestDatabase {
    admin: String,
    pub name: String,
    pub url: String,
    rt: tokio::runtime::Runtime,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("panoptes_e2e_{}_{n}", std::process::id());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("connecting to DATABASE_URL");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        });
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        TestDatabase { admin, url: url.to_string(), name, rt }
    }

    pub fn execute(&self, sql: &str) {
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        })
    }

    pub fn rows3(&self, sql: &str) -> Vec<(String, i64, String)> {
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        })
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut c).await.unwrap();
            n
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        self.rt.block_on(async move {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        });
    }
}

/// Creates a user with the CLI (password on stdin), grants it cameras, logs it in over
/// HTTP; returns a cookie-keeping client and the session's CSRF token.
pub fn user_session(
    p: &Panoptes,
    env: Env<'_>,
    config: &Path,
    name: &str,
    role: &str,
    cameras: &[&str],
) -> (reqwest::blocking::Client, String) {
    use std::io::Write;
    const PASSWORD: &str = "a long enough password";
    let mut child = panoptes_cmd(env)
        .args(["user", "add", name, "--role", role, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    if !cameras.is_empty() {
        let out = panoptes_cmd(env)
            .args(["user", "grant", name])
            .args(cameras)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap();
        assert!(out.status.success(), "user grant: {}", String::from_utf8_lossy(&out.stderr));
    }
    let client = reqwest::blocking::Client::builder().cookie_store(true).build().unwrap();
    let me: serde_json::Value = client
        .post(p.url("/api/auth/login"))
        .json(&serde_json::json!({"name": name, "password": PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let csrf = me["csrf_token"].as_str().unwrap_or_else(|| panic!("login failed: {me}")).to_owned();
    (client, csrf)
}

/// A configuration for [`Panoptes::start`]: the server on a free port in the scratch data
/// directory, and one camera per `(id, RTSP URL)` with a single `main` stream.
pub fn config_with_cameras(cameras: &[(&str, &str)]) -> String {
    let mut text = "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{data_dir}\"\n".to_owned();
    for (id, url) in cameras {
        text.push_str(&format!("[[cameras]]\nid = \"{id}\"\n[[cameras.streams]]\nurl = \"{url}\"\n"));
    }
    text
}
