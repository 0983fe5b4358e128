//! A private PostgreSQL cluster under the data directory, for machines without a server.
//!
//! The cluster lives in `<data_dir>/postgres`, listens only on a Unix socket inside that
//! directory (no TCP port), and trusts local connections: the socket is `0700`, so only
//! its owner (and root) can reach it. When Panoptes runs as root the cluster runs as an
//! unprivileged system user (PostgreSQL refuses to run as root). The server is started in
//! its own process group, so a Ctrl-C at the terminal reaches Panoptes, which then stops the
//! cluster last, after everything that writes to it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;
use tracing::{info, warn};

/// The database and role Panoptes uses inside its private cluster.
pub const DATABASE: &str = "panoptes";
const ROLE: &str = "panoptes";
const PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;

/// How to run the private cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster's directory (`<data_dir>/postgres`).
    pub dir: PathBuf,
    /// Where `initdb` and `pg_ctl` are; found automatically when `None`.
    pub bin_dir: Option<PathBuf>,
    /// The system user that runs the server when Panoptes runs as root.
    pub system_user: String,
}

/// Why the private cluster could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server binaries.
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl) not found in {searched}: install the \
         `postgresql` package, set database.embedded.bin_dir, or give a database.url"
    )]
    NoBinaries {
        /// Where we looked.
        searched: String,
    },
    /// The system user to run as does not exist.
    #[error(
        "system user {0:?} (database.embedded.system_user) does not exist; PostgreSQL cannot run as root"
    )]
    NoSuchUser(String),
    /// A directory above the cluster is closed to the server's user.
    #[error("{user} cannot enter {dir}: give it search permission (chmod o+x) or choose another data_dir")]
    NotTraversable {
        /// The user the server runs as.
        user: String,
        /// The directory.
        dir: PathBuf,
    },
    /// The socket path would be too long.
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter data_dir")]
    SocketPathTooLong(PathBuf),
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PostgreSQL program failed.
    #[error("{program} failed ({status}): {output}")]
    Command {
        /// The program and its main argument.
        program: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// The database could not be created.
    #[error("creating database {DATABASE} in the private cluster: {0}")]
    CreateDatabase(#[from] sqlx::Error),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.to_owned();
    move |source| ClusterError::Io { what, path, source }
}

/// A running private cluster. Call [`EmbeddedCluster::stop`] on shutdown.
#[derive(Debug)]
pub struct EmbeddedCluster {
    dir: PathBuf,
    socket_dir: PathBuf,
    pg_ctl: PathBuf,
    run_as: Option<(Uid, Gid)>,
    /// Whether [`EmbeddedCluster::stop`] stops the server: it was started here, or adopted.
    owned: bool,
}

/// Finds the directory with `initdb` and `pg_ctl`: the configured one, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else the `PATH`.
pub fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, ClusterError> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = configured {
        return if has_tools(d) {
            Ok(d.to_owned())
        } else {
            Err(ClusterError::NoBinaries { searched: d.display().to_string() })
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        if has_tools(&d) {
            return Ok(d);
        }
    }
    Err(ClusterError::NoBinaries { searched: "/usr/lib/postgresql/*/bin and PATH".into() })
}

/// Checks that `uid`/`gid` may enter every directory from `/` down to `dir`.
fn check_traversable(dir: &Path, user: &str, uid: Uid, gid: Gid) -> Result<(), ClusterError> {
    for a in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
        let Ok(meta) = std::fs::metadata(a) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let ok = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(ClusterError::NotTraversable { user: user.to_owned(), dir: a.to_owned() });
        }
    }
    Ok(())
}

impl EmbeddedCluster {
    /// Creates the cluster if it does not exist, starts it if it is not running, and makes
    /// sure the `panoptes` database exists.
    pub async fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let bin = find_bin_dir(options.bin_dir.as_deref())?;
        let dir = std::path::absolute(&options.dir).map_err(io_err("resolving", &options.dir))?;
        let socket_dir = dir.join("run");
        let socket = socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ClusterError::SocketPathTooLong(socket));
        }
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(&options.system_user)
                .ok()
                .flatten()
                .ok_or_else(|| ClusterError::NoSuchUser(options.system_user.clone()))?;
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
                check_traversable(parent, &options.system_user, user.uid, user.gid)?;
            }
            Some((user.uid, user.gid))
        } else {
            None
        };
        let mut cluster =
            EmbeddedCluster { dir, socket_dir, pg_ctl: bin.join("pg_ctl"), run_as, owned: false };

        if !cluster.dir.join("PG_VERSION").is_file() {
            cluster.init(&bin.join("initdb")).await?;
        } else {
            info!(dir = %cluster.dir.display(), "reusing existing PostgreSQL cluster");
        }
        cluster.make_dir(&cluster.socket_dir)?;
        if cluster.is_running().await? {
            info!(dir = %cluster.dir.display(), "PostgreSQL cluster already running; using it");
        } else {
            cluster.start_server().await?;
            cluster.owned = true;
        }
        cluster.ensure_database().await?;
        Ok(cluster)
    }

    /// Connection options for the `panoptes` database over the cluster's socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options_for(DATABASE)
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(ROLE)
            .database(database)
            .application_name("panoptes")
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn make_dir(&self, d: &Path) -> Result<(), ClusterError> {
        std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", d))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(d, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(io_err("chown", d))?;
        }
        Ok(())
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .kill_on_drop(false);
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid.as_raw()).gid(gid.as_raw());
        }
        c
    }

    async fn run(&self, mut c: Command, name: String) -> Result<std::process::Output, ClusterError> {
        let out = c.output().await.map_err(io_err("running", Path::new(&name)))?;
        if out.status.success() {
            return Ok(out);
        }
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        Err(ClusterError::Command {
            program: name,
            status: out.status.to_string(),
            output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        })
    }

    async fn init(&self, initdb: &Path) -> Result<(), ClusterError> {
        info!(dir = %self.dir.display(), "creating private PostgreSQL cluster (first start)");
        self.make_dir(&self.dir)?;
        let mut c = self.command(initdb);
        c.arg("-D").arg(&self.dir).args([
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]);
        self.run(c, "initdb".into()).await?;
        Ok(())
    }

    async fn is_running(&self) -> Result<bool, ClusterError> {
        let mut c = self.command(&self.pg_ctl);
        c.arg("status").arg("-D").arg(&self.dir);
        let status = c.output().await.map_err(io_err("running", &self.pg_ctl))?.status;
        Ok(status.success())
    }

    async fn start_server(&self) -> Result<(), ClusterError> {
        let log = self.dir.join("log");
        self.make_dir(&log)?;
        let server_opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c unix_socket_permissions=0700 -p {PORT}",
            self.socket_dir.display()
        );
        let mut c = self.command(&self.pg_ctl);
        c.arg("start")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(log.join("postgresql.log"))
            .args(["-w", "-t", "60", "-o", &server_opts])
            .process_group(0);
        self.run(c, "pg_ctl start".into()).await?;
        info!(dir = %self.dir.display(), socket = %self.socket_dir.display(), "private PostgreSQL cluster started");
        Ok(())
    }

    async fn ensure_database(&self) -> Result<(), ClusterError> {
        let mut conn = self.options_for("postgres").connect().await?;
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(DATABASE)
            .fetch_optional(&mut conn)
            .await?;
        if exists.is_none() {
            sqlx::query(&format!("CREATE DATABASE {DATABASE}")).execute(&mut conn).await?;
            info!(database = DATABASE, "created database in private cluster");
        }
        conn.close().await?;
        Ok(())
    }

    /// Takes charge of a server that was already running (say, left by a crashed
    /// `panoptes serve`), so that [`EmbeddedCluster::stop`] stops it.
    pub fn adopt(&mut self) {
        self.owned = true;
    }

    /// Stops the server if this process started (or adopted) it (fast shutdown: open
    /// transactions are rolled back, data is safe), waiting up to a minute for it to exit.
    /// A server another process runs (a `panoptes user add` next to `panoptes serve`) is
    /// left running.
    pub async fn stop(self) -> Result<(), ClusterError> {
        if !self.owned {
            info!(dir = %self.dir.display(), "private PostgreSQL cluster left running (this process did not start it)");
            return Ok(());
        }
        let mut c = self.command(&self.pg_ctl);
        c.arg("stop").arg("-D").arg(&self.dir).args(["-m", "fast", "-w", "-t", "60"]);
        match self.run(c, "pg_ctl stop".into()).await {
            Ok(_) => {
                info!(dir = %self.dir.display(), "private PostgreSQL cluster stopped");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "stopping the private PostgreSQL cluster failed");
                Err(e)
            }
        }
    }

    /// Waits (up to `limit`) until the server answers on its socket.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.connect_options().connect().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_bin_dir_without_tools_is_an_error() {
        let e = find_bin_dir(Some(Path::new("/nonexistent")));
        assert!(matches!(e, Err(ClusterError::NoBinaries { .. })), "{e:?}");
    }

    #[test]
    fn closed_directory_is_reported() -> Result<(), std::io::Error> {
        let tmp = tempfile::tempdir()?;
        let closed = tmp.path().join("closed");
        std::fs::create_dir(&closed)?;
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700))?;
        let inner = closed.join("inner");
        std::fs::create_dir(&inner)?;
        // A uid/gid that owns nothing here stands for the server's user.
        let e = check_traversable(&inner, "nobody", Uid::from_raw(65534), Gid::from_raw(65534));
        if Uid::effective().is_root() || tmp.path().metadata()?.permissions().mode() & 0o001 != 0 {
            assert!(
                matches!(&e, Err(ClusterError::NotTraversable { dir, .. }) if dir.ends_with("closed") || dir == tmp.path()),
                "{e:?}"
            );
        }
        Ok(())
    }
}
