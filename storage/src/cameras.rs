//! Cameras, their streams, and which users may see them (grants).
//!
//! The configuration file is the source of truth for cameras; [`sync`] mirrors it into
//! the `cameras` and `camera_streams` tables at start and on reload. A camera that leaves
//! the configuration is disabled, not deleted: its events stay searchable.

use panoptes_core::{CameraId, NodeId, StreamRole};
use sqlx::PgPool;

use crate::users::Role;

/// A camera as the configuration describes it.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    /// Its id.
    pub id: CameraId,
    /// Display name.
    pub name: String,
    /// Whether it is connected at all.
    pub enabled: bool,
    /// Its streams.
    pub streams: Vec<StreamSpec>,
}

/// A camera stream as the configuration describes it.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Name within the camera (`main`, `sub`).
    pub name: String,
    /// What it is used for.
    pub roles: Vec<StreamRole>,
    /// The URL without credentials (see `panoptes_core::redact`).
    pub redacted_url: Option<String>,
}

fn role_name(r: StreamRole) -> &'static str {
    match r {
        StreamRole::Record => "record",
        StreamRole::Live => "live",
        StreamRole::Grid => "grid",
        StreamRole::Detect => "detect",
    }
}

/// Mirrors the configured cameras owned by `node`: upserts them and their streams, and
/// disables this node's cameras that are no longer configured.
pub async fn sync(pool: &PgPool, node: &NodeId, cameras: &[CameraSpec]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = cameras.iter().map(|c| c.id.as_str()).collect();
    for c in cameras {
        sqlx::query(
            "INSERT INTO cameras (id, name, node_id, enabled) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, node_id = EXCLUDED.node_id,
                 enabled = EXCLUDED.enabled, updated_at = now()
             WHERE (cameras.name, cameras.node_id, cameras.enabled)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.node_id, EXCLUDED.enabled)",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(node.as_str())
        .bind(c.enabled)
        .execute(&mut *tx)
        .await?;
        let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
        sqlx::query("DELETE FROM camera_streams WHERE camera_id = $1 AND NOT (name = ANY($2))")
            .bind(c.id.as_str())
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        for s in &c.streams {
            let roles: Vec<&str> = s.roles.iter().map(|r| role_name(*r)).collect();
            sqlx::query(
                "INSERT INTO camera_streams (camera_id, name, roles, redacted_url) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (camera_id, name) DO UPDATE SET roles = EXCLUDED.roles,
                     redacted_url = EXCLUDED.redacted_url, updated_at = now()",
            )
            .bind(c.id.as_str())
            .bind(&s.name)
            .bind(&roles)
            .bind(s.redacted_url.as_deref())
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE cameras SET enabled = false, updated_at = now()
         WHERE node_id = $1 AND enabled AND NOT (id = ANY($2))",
    )
    .bind(node.as_str())
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A camera row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraRow {
    /// Its id.
    pub id: CameraId,
    /// Display name.
    pub name: String,
    /// The owning node.
    pub node: Option<String>,
    /// Whether it is enabled.
    pub enabled: bool,
}

/// The cameras `access` allows, by id.
pub async fn list(pool: &PgPool, access: &Access) -> Result<Vec<CameraRow>, sqlx::Error> {
    let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT id, name, node_id, enabled FROM cameras
         WHERE $1::text[] IS NULL OR id = ANY($1) ORDER BY id",
    )
    .bind(access.cameras_bind())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, name, node, enabled)| {
            let id = CameraId::new(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(CameraRow { id, name, node, enabled })
        })
        .collect()
}

/// Which cameras a query may touch: every camera (admins), or a granted set. Every query
/// in [`crate::queries`] applies it in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every camera.
    All,
    /// Only these cameras (possibly none).
    Cameras(Vec<CameraId>),
}

impl Access {
    /// The access of a user: admins see everything, others their grants.
    pub async fn for_user(pool: &PgPool, user_id: i64, role: Role) -> Result<Access, sqlx::Error> {
        match role {
            Role::Admin => Ok(Access::All),
            Role::Operator | Role::Viewer => Ok(Access::Cameras(granted(pool, user_id).await?)),
        }
    }

    /// `NULL` for all cameras, else the array of allowed ids.
    pub(crate) fn cameras_bind(&self) -> Option<Vec<String>> {
        match self {
            Access::All => None,
            Access::Cameras(c) => Some(c.iter().map(|c| c.as_str().to_owned()).collect()),
        }
    }

    /// Whether `camera` is allowed.
    pub fn allows(&self, camera: &CameraId) -> bool {
        match self {
            Access::All => true,
            Access::Cameras(c) => c.contains(camera),
        }
    }
}

/// Grants `user_id` access to `camera` (idempotent).
pub async fn grant(pool: &PgPool, user_id: i64, camera: &CameraId) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_camera_grants (user_id, camera_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(user_id)
        .bind(camera.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes a grant; returns whether there was one.
pub async fn revoke(pool: &PgPool, user_id: i64, camera: &CameraId) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM user_camera_grants WHERE user_id = $1 AND camera_id = $2")
        .bind(user_id)
        .bind(camera.as_str())
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The cameras granted to `user_id`.
pub async fn granted(pool: &PgPool, user_id: i64) -> Result<Vec<CameraId>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT camera_id FROM user_camera_grants WHERE user_id = $1 ORDER BY camera_id")
            .bind(user_id)
            .fetch_all(pool)
            .await?;
    rows.into_iter().map(|(c,)| CameraId::new(c).map_err(|e| sqlx::Error::Decode(Box::new(e)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(id: &str) -> CameraSpec {
        CameraSpec {
            id: CameraId::new(id).unwrap(),
            name: id.to_uppercase(),
            enabled: true,
            streams: vec![StreamSpec {
                name: "main".into(),
                roles: vec![StreamRole::Record, StreamRole::Detect],
                redacted_url: Some("rtsp://cam/main".into()),
            }],
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn sync_upserts_and_disables_removed_cameras(pool: PgPool) -> Result<(), sqlx::Error> {
        let node = NodeId::new("n1").unwrap();
        crate::nodes::register(&pool, &node, "x", "0").await?;
        sync(&pool, &node, &[cam("a"), cam("b")]).await?;
        sync(&pool, &node, &[cam("a")]).await?;
        let all = list(&pool, &Access::All).await?;
        assert_eq!(all.len(), 2);
        assert!(all[0].enabled && !all[1].enabled);
        let (roles,): (Vec<String>,) =
            sqlx::query_as("SELECT roles FROM camera_streams WHERE camera_id = 'a'").fetch_one(&pool).await?;
        assert_eq!(roles, ["record", "detect"]);
        Ok(())
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn grants_decide_access(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
        let node = NodeId::new("n1").unwrap();
        crate::nodes::register(&pool, &node, "x", "0").await?;
        sync(&pool, &node, &[cam("a"), cam("b")]).await?;
        let u = crate::users::create(&pool, "op", "$argon2id$x", Role::Operator).await?;
        assert_eq!(Access::for_user(&pool, u, Role::Operator).await?, Access::Cameras(vec![]));
        grant(&pool, u, &CameraId::new("b")?).await?;
        grant(&pool, u, &CameraId::new("b")?).await?;
        let access = Access::for_user(&pool, u, Role::Operator).await?;
        assert_eq!(access, Access::Cameras(vec![CameraId::new("b")?]));
        let seen = list(&pool, &access).await?;
        assert_eq!(seen.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(Access::for_user(&pool, u, Role::Admin).await?, Access::All);
        assert!(revoke(&pool, u, &CameraId::new("b")?).await?);
        assert!(granted(&pool, u).await?.is_empty());
        Ok(())
    }
}
