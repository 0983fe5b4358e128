//! `panoptes demo`: a local GStreamer RTSP server serving test clips, and Panoptes watching
//! it with a private database. Prints the URL and a login.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing::info;

use crate::config::{self, LogConfig};

/// The test camera, compiled into the binary so the demo runs from anywhere.
const TEST_CAMERA: &str = include_str!("../scripts/test-camera.py");
const CAMERA_USER: &str = "panoptes";

/// Options of `panoptes demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// HTTP listen address.
    pub listen: String,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// RTSP port of the demo cameras.
    pub rtsp_port: u16,
}

fn default_data_dir() -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/panoptes-demo");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("panoptes-demo")
}

fn random_secret() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Starts the test camera and waits for its READY line.
async fn start_camera(dir: &std::path::Path, port: u16, password: &str) -> anyhow::Result<Child> {
    let script = dir.join("test-camera.py");
    std::fs::write(&script, TEST_CAMERA).with_context(|| format!("writing {}", script.display()))?;
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(["--port", &port.to_string(), "--user", CAMERA_USER, "--password", password])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the demo camera with /usr/bin/python3 (run scripts/setup.sh first)")?;
    let stdout = child.stdout.take().context("demo camera stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("READY ") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let status = child.try_wait().ok().flatten();
        bail!("the demo camera did not start (exit status {status:?}); see its messages above");
    }
    // Keep draining stdout so the camera never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

fn demo_config(opts: &DemoOptions, data_dir: &std::path::Path) -> String {
    let rtsp = format!("rtsp://127.0.0.1:{}", opts.rtsp_port);
    format!(
        r#"
[server]
listen = "{listen}"
data_dir = "{data}"
metrics_token_env = "PANOPTES_DEMO_METRICS_TOKEN"

[[cameras]]
id = "street"
name = "Street (1080p main, 360p sub)"
[[cameras.streams]]
name = "main"
url = "{rtsp}/h264-1080p"
roles = ["record", "live"]
[[cameras.streams]]
name = "sub"
url = "{rtsp}/h264-360p"
roles = ["grid", "detect"]

[[cameras]]
id = "lobby"
name = "Lobby (720p)"
[[cameras.streams]]
url = "{rtsp}/h264-720p"

[[cameras]]
id = "gate"
name = "Gate (720p, digest auth)"
[[cameras.streams]]
url = "{rtsp}/h264-720p-auth"
username = "{CAMERA_USER}"
password_env = "PANOPTES_DEMO_CAMERA_PASSWORD"

[[cameras]]
id = "garage"
name = "Garage (H.265 720p)"
[[cameras.streams]]
url = "{rtsp}/h265-720p"
"#,
        listen = opts.listen,
        data = data_dir.display(),
    )
}

/// Runs the demo until a signal.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let data_dir = opts.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let camera_password = random_secret();
    let metrics_token = random_secret();
    let text = demo_config(&opts, &data_dir);
    let env = |k: &str| match k {
        "PANOPTES_DEMO_CAMERA_PASSWORD" => Some(camera_password.clone()),
        "PANOPTES_DEMO_METRICS_TOKEN" => Some(metrics_token.clone()),
        other => std::env::var(other).ok(),
    };
    let settings = config::from_str(&text, &env)?;
    let _guard = crate::telemetry::init(&LogConfig::default())?;

    let _camera = start_camera(&data_dir, opts.rtsp_port, &camera_password).await?;
    info!(port = opts.rtsp_port, "demo cameras serving");

    // A first admin with a fresh password, so there is a login to print. The password is
    // kept (0600) in the demo's data directory so later runs can print it again.
    let login_file = data_dir.join("demo-login.txt");
    let login = {
        let cancel = tokio_util::sync::CancellationToken::new();
        let db = crate::database::open(&settings, &cancel, crate::database::ClusterUse::Guest)
            .await
            .context("opening the demo database")?;
        let result = async {
            panoptes_storage::migrate(&db.pool).await?;
            if panoptes_storage::users::count(&db.pool).await? > 0 {
                return Ok::<_, anyhow::Error>(std::fs::read_to_string(&login_file).ok());
            }
            let password = random_secret();
            let hash = panoptes_api::auth::hash_password(&password)?;
            panoptes_storage::users::create(&db.pool, "admin", &hash, panoptes_storage::users::Role::Admin)
                .await?;
            let line = format!("admin / {password}");
            write_private(&login_file, &line)?;
            Ok(Some(line))
        }
        .await;
        db.close().await;
        result?
    };

    let url = format!("http://{}", settings.listen);
    let login_line = match login {
        Some(line) => format!("login: {}", line.trim()),
        None => "login: the users created earlier in this data directory".into(),
    };
    // The one place the demo speaks to the person at the terminal.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "\n  Panoptes demo: {url}\n  {login_line}\n  readiness: {url}/readyz\n  metrics: curl -H 'Authorization: Bearer {metrics_token}' {url}/metrics\n  data: {}\n  cameras: rtsp://127.0.0.1:{}/{{h264-1080p,h264-360p,h264-720p,h264-720p-auth,h265-720p}}\n  Stop with Ctrl-C.\n",
            data_dir.display(),
            opts.rtsp_port
        );
    }
    crate::serve::run(settings, None, None).await
}
