//! The nodes table: each Panoptes process registers itself and keeps a heartbeat.

use panoptes_core::NodeId;
use sqlx::PgPool;

/// Registers (or re-registers) this node and stamps its start time.
pub async fn register(pool: &PgPool, node: &NodeId, address: &str, version: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO nodes (id, address, version, started_at, heartbeat_at)
         VALUES ($1, $2, $3, now(), now())
         ON CONFLICT (id) DO UPDATE
         SET address = EXCLUDED.address, version = EXCLUDED.version,
             started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at",
    )
    .bind(node.as_str())
    .bind(address)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Refreshes this node's heartbeat.
pub async fn heartbeat(pool: &PgPool, node: &NodeId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE nodes SET heartbeat_at = now() WHERE id = $1")
        .bind(node.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a node has ever registered.
pub async fn exists(pool: &PgPool, node: &NodeId) -> Result<bool, sqlx::Error> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM nodes WHERE id = $1").bind(node.as_str()).fetch_optional(pool).await?;
    Ok(row.is_some())
}
