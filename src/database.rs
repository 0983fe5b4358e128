//! Opening the database the configuration names: an external server, or the private cluster.

use std::time::Duration;

use anyhow::Context;
use panoptes_storage::PgPool;
use panoptes_storage::cluster::EmbeddedCluster;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{DatabaseTarget, Settings};

/// An open database: the pool and, for the private cluster, its server.
#[derive(Debug)]
pub struct Database {
    /// Connection pool.
    pub pool: PgPool,
    cluster: Option<EmbeddedCluster>,
}

/// Who stops the private cluster when the database closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterUse {
    /// The server: it stops the cluster at shutdown, even one it found running.
    Owner,
    /// A command next to a running server: it stops the cluster only if it started it.
    Guest,
}

/// Connects (starting the private cluster first when no URL is configured).
pub async fn open(
    settings: &Settings,
    cancel: &CancellationToken,
    role: ClusterUse,
) -> anyhow::Result<Database> {
    let db = &settings.config.database;
    let deadline = Duration::from_secs(db.connect_timeout_secs);
    match &settings.database {
        DatabaseTarget::External { options } => {
            let pool =
                panoptes_storage::db::connect((**options).clone(), db.max_connections, deadline, cancel)
                    .await?;
            Ok(Database { pool, cluster: None })
        }
        DatabaseTarget::Embedded { options } => {
            let mut cluster = EmbeddedCluster::start(options)
                .await
                .with_context(|| format!("private PostgreSQL cluster in {}", options.dir.display()))?;
            if role == ClusterUse::Owner {
                cluster.adopt();
            }
            let pool = panoptes_storage::db::connect(
                cluster.connect_options(),
                db.max_connections,
                deadline,
                cancel,
            )
            .await;
            match pool {
                Ok(pool) => Ok(Database { pool, cluster: Some(cluster) }),
                Err(e) => {
                    let _ = cluster.stop().await;
                    Err(e.into())
                }
            }
        }
    }
}

impl Database {
    /// Closes the pool, then stops the private cluster if there is one.
    pub async fn close(self) {
        self.pool.close().await;
        info!("database pool closed");
        if let Some(c) = self.cluster {
            let _ = c.stop().await;
        }
    }
}
