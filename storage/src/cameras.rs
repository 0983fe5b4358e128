//! Cameras, their streams, and which users may see them (grants).
//!
//! Cameras come from two places. A node's configuration file: [`sync`] mirrors those into
//! the `cameras` and `camera_streams` tables at start and on reload, and a camera that
//! leaves the file is disabled, not deleted (its events stay searchable). And the API:
//! [`create_api`], [`update_api`] and [`retire_api`] store a camera's definition (the
//! file's `[[cameras]]` shape as JSON) and its credentials, and announce each change with
//! `NOTIFY panoptes_cameras` so that the owning node applies it at once. Credentials are
//! write-only: nothing here returns them except [`api_cameras`], which the owning node
//! reads to connect.

use std::collections::BTreeMap;
use std::fmt;

use panoptes_core::{CameraId, NodeId, StreamRole};
use serde::{Deserialize, Serialize};
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
    /// Its definition in the configuration file's `[[cameras]]` shape, without credentials
    /// (zones, lines and analytics settings are read from it).
    pub definition: Option<serde_json::Value>,
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
    /// Whether the stream logs in with a user name (and password).
    pub has_credentials: bool,
}

/// `NOTIFY` channel of camera changes made through the API: `{"id", "node", "kind"}`.
pub const CHANNEL: &str = "panoptes_cameras";

/// A stream's login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (may be empty).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// A camera defined through the API, checked and ready to store.
#[derive(Debug, Clone)]
pub struct ApiCamera {
    /// Id, name, enabled, streams and the definition without credentials.
    pub spec: CameraSpec,
    /// The node that runs it.
    pub node: NodeId,
    /// Logins by stream name.
    pub credentials: BTreeMap<String, Credentials>,
}

/// A stored API camera, as its node reads it to run it.
#[derive(Debug, Clone)]
pub struct StoredApiCamera {
    /// Its id.
    pub id: CameraId,
    /// The node that runs it.
    pub node: Option<String>,
    /// The definition without credentials.
    pub definition: serde_json::Value,
    /// Logins by stream name.
    pub credentials: BTreeMap<String, Credentials>,
}

/// Why a camera change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// A camera with this id exists.
    #[error("camera {0:?} already exists")]
    Exists(String),
    /// No such camera (or it was deleted).
    #[error("no such camera")]
    NotFound,
    /// The camera comes from a node's configuration file; change it there.
    #[error("camera {0:?} is defined in a configuration file; change it there")]
    ManagedByConfig(String),
    /// The node is not registered.
    #[error("node {0:?} is not registered")]
    UnknownNode(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
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
        let was: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> =
            sqlx::query_as("SELECT managed_by, retired_at FROM cameras WHERE id = $1 FOR UPDATE")
                .bind(c.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((by, None)) = &was
            && by == "api"
        {
            tracing::warn!(camera = %c.id, "a camera added through the API is now defined in the configuration \
                           file, which takes it over");
        }
        sqlx::query(
            "INSERT INTO cameras (id, name, node_id, enabled, managed_by, definition) VALUES ($1, $2, $3, $4, 'config', $5)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, node_id = EXCLUDED.node_id,
                 enabled = EXCLUDED.enabled, managed_by = 'config', definition = EXCLUDED.definition,
                 credentials = NULL, retired_at = NULL, updated_at = now()
             WHERE (cameras.name, cameras.node_id, cameras.enabled, cameras.managed_by, cameras.definition,
                    cameras.retired_at)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.node_id, EXCLUDED.enabled, 'config',
                    EXCLUDED.definition, NULL)",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(node.as_str())
        .bind(c.enabled)
        .bind(&c.definition)
        .execute(&mut *tx)
        .await?;
        write_streams(&mut tx, c).await?;
    }
    sqlx::query(
        "UPDATE cameras SET enabled = false, updated_at = now()
         WHERE node_id = $1 AND managed_by = 'config' AND enabled AND NOT (id = ANY($2))",
    )
    .bind(node.as_str())
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn write_streams(tx: &mut sqlx::PgConnection, c: &CameraSpec) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
    sqlx::query("DELETE FROM camera_streams WHERE camera_id = $1 AND NOT (name = ANY($2))")
        .bind(c.id.as_str())
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    for s in &c.streams {
        let roles: Vec<&str> = s.roles.iter().map(|r| role_name(*r)).collect();
        sqlx::query(
            "INSERT INTO camera_streams (camera_id, name, roles, redacted_url, has_credentials)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (camera_id, name) DO UPDATE SET roles = EXCLUDED.roles,
                 redacted_url = EXCLUDED.redacted_url, has_credentials = EXCLUDED.has_credentials,
                 updated_at = now()",
        )
        .bind(c.id.as_str())
        .bind(&s.name)
        .bind(&roles)
        .bind(s.redacted_url.as_deref())
        .bind(s.has_credentials)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn announce(
    tx: &mut sqlx::PgConnection,
    id: &str,
    node: Option<&str>,
    kind: &str,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({ "id": id, "node": node, "kind": kind }).to_string();
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut *tx).await?;
    Ok(())
}

fn credentials_json(c: &BTreeMap<String, Credentials>) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(c).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Adds a camera defined through the API (or brings back a deleted one with the same id).
pub async fn create_api(pool: &PgPool, cam: &ApiCamera) -> Result<(), CameraError> {
    let c = &cam.spec;
    let mut tx = pool.begin().await?;
    let (node_known,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM nodes WHERE id = $1)")
        .bind(cam.node.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if !node_known {
        return Err(CameraError::UnknownNode(cam.node.to_string()));
    }
    let was: Option<(Option<chrono::DateTime<chrono::Utc>>,)> =
        sqlx::query_as("SELECT retired_at FROM cameras WHERE id = $1 FOR UPDATE")
            .bind(c.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((None,)) = was {
        return Err(CameraError::Exists(c.id.to_string()));
    }
    sqlx::query(
        "INSERT INTO cameras (id, name, node_id, enabled, managed_by, definition, credentials)
         VALUES ($1, $2, $3, $4, 'api', $5, $6)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, node_id = EXCLUDED.node_id,
             enabled = EXCLUDED.enabled, managed_by = 'api', definition = EXCLUDED.definition,
             credentials = EXCLUDED.credentials, retired_at = NULL, updated_at = now()",
    )
    .bind(c.id.as_str())
    .bind(&c.name)
    .bind(cam.node.as_str())
    .bind(c.enabled)
    .bind(&c.definition)
    .bind(credentials_json(&cam.credentials)?)
    .execute(&mut *tx)
    .await?;
    write_streams(&mut tx, c).await?;
    announce(&mut tx, c.id.as_str(), Some(cam.node.as_str()), "created").await?;
    tx.commit().await?;
    Ok(())
}

/// Locks an API camera's row for a change; refuses missing, deleted and file-defined ones.
/// Returns its node.
async fn lock_api(tx: &mut sqlx::PgConnection, id: &str) -> Result<Option<String>, CameraError> {
    let row: Option<(String, Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as("SELECT managed_by, node_id, retired_at FROM cameras WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    api_row(id, row)
}

/// An API camera's node, from its row's `managed_by`, `node_id` and `retired_at`; refuses
/// missing, deleted and file-defined cameras.
fn api_row(
    id: &str,
    row: Option<(String, Option<String>, Option<chrono::DateTime<chrono::Utc>>)>,
) -> Result<Option<String>, CameraError> {
    match row {
        None | Some((_, _, Some(_))) => Err(CameraError::NotFound),
        Some((by, _, None)) if by != "api" => Err(CameraError::ManagedByConfig(id.to_owned())),
        Some((_, node, None)) => Ok(node),
    }
}

/// Replaces an API camera's definition and credentials (it may move to another node).
pub async fn update_api(pool: &PgPool, cam: &ApiCamera) -> Result<(), CameraError> {
    let c = &cam.spec;
    let mut tx = pool.begin().await?;
    let old_node = lock_api(&mut tx, c.id.as_str()).await?;
    sqlx::query(
        "UPDATE cameras SET name = $2, node_id = $3, enabled = $4, definition = $5, credentials = $6,
             updated_at = now() WHERE id = $1",
    )
    .bind(c.id.as_str())
    .bind(&c.name)
    .bind(cam.node.as_str())
    .bind(c.enabled)
    .bind(&c.definition)
    .bind(credentials_json(&cam.credentials)?)
    .execute(&mut *tx)
    .await?;
    write_streams(&mut tx, c).await?;
    if let Some(old) = old_node.as_deref().filter(|n| *n != cam.node.as_str()) {
        announce(&mut tx, c.id.as_str(), Some(old), "moved").await?;
    }
    announce(&mut tx, c.id.as_str(), Some(cam.node.as_str()), "updated").await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes an API camera: its node stops it, its definition and credentials are erased;
/// its events and recordings stay until retention removes them.
pub async fn retire_api(pool: &PgPool, id: &CameraId) -> Result<(), CameraError> {
    let mut tx = pool.begin().await?;
    let node = lock_api(&mut tx, id.as_str()).await?;
    sqlx::query(
        "UPDATE cameras SET enabled = false, definition = NULL, credentials = NULL, retired_at = now(),
             updated_at = now() WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM camera_streams WHERE camera_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    announce(&mut tx, id.as_str(), node.as_deref(), "deleted").await?;
    tx.commit().await?;
    Ok(())
}

/// An API camera's stored definition and credentials, for a change through the API.
pub async fn api_camera(pool: &PgPool, id: &CameraId) -> Result<StoredApiCamera, CameraError> {
    type Row = (
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT managed_by, node_id, retired_at, definition, credentials FROM cameras WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?;
    let (parts, definition, credentials) = match row {
        Some((by, node, retired, d, c)) => (Some((by, node, retired)), d, c),
        None => (None, None, None),
    };
    let node = api_row(id.as_str(), parts)?;
    stored(id.clone(), node, definition, credentials)
}

fn stored(
    id: CameraId,
    node: Option<String>,
    definition: Option<serde_json::Value>,
    credentials: Option<serde_json::Value>,
) -> Result<StoredApiCamera, CameraError> {
    let credentials = match credentials {
        Some(c) => serde_json::from_value(c).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        None => BTreeMap::new(),
    };
    Ok(StoredApiCamera { id, node, definition: definition.unwrap_or_default(), credentials })
}

/// The API cameras `node` runs (enabled or not; deleted ones excluded), with credentials.
pub async fn api_cameras(pool: &PgPool, node: &NodeId) -> Result<Vec<StoredApiCamera>, CameraError> {
    let rows: Vec<(String, Option<serde_json::Value>, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT id, definition, credentials FROM cameras
         WHERE managed_by = 'api' AND retired_at IS NULL AND node_id = $1 ORDER BY id",
    )
    .bind(node.as_str())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, d, c)| {
            let id = CameraId::new(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            stored(id, Some(node.to_string()), d, c)
        })
        .collect()
}

/// A stream as listed (no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    /// Name within the camera.
    pub name: String,
    /// Roles (`record`, `live`, `grid`, `detect`).
    pub roles: Vec<String>,
    /// URL without credentials.
    pub url: Option<String>,
    /// Whether it logs in.
    pub has_credentials: bool,
}

/// A camera as listed: the row, where it is defined, its streams and its definition (no
/// credentials).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraDetail {
    /// The row.
    pub camera: CameraRow,
    /// `config` or `api`.
    pub managed_by: String,
    /// Its streams.
    pub streams: Vec<StreamRow>,
    /// Its definition without credentials (`null` for cameras only known from events).
    pub definition: serde_json::Value,
}

/// The cameras `access` allows, with streams and definitions; deleted ones excluded.
pub async fn details(pool: &PgPool, access: &Access) -> Result<Vec<CameraDetail>, sqlx::Error> {
    type Row = (String, String, Option<String>, bool, String, Option<serde_json::Value>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, node_id, enabled, managed_by, definition FROM cameras
         WHERE retired_at IS NULL AND ($1::text[] IS NULL OR id = ANY($1)) ORDER BY id",
    )
    .bind(access.cameras_bind())
    .fetch_all(pool)
    .await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    type StreamTuple = (String, String, Vec<String>, Option<String>, bool);
    let streams: Vec<StreamTuple> = sqlx::query_as(
        "SELECT camera_id, name, roles, redacted_url, has_credentials FROM camera_streams
         WHERE camera_id = ANY($1) ORDER BY camera_id, name",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_camera: BTreeMap<String, Vec<StreamRow>> = BTreeMap::new();
    for (camera, name, roles, url, has_credentials) in streams {
        by_camera.entry(camera).or_default().push(StreamRow { name, roles, url, has_credentials });
    }
    rows.into_iter()
        .map(|(id, name, node, enabled, managed_by, definition)| {
            let streams = by_camera.remove(&id).unwrap_or_default();
            let id = CameraId::new(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(CameraDetail {
                camera: CameraRow { id, name, node, enabled },
                managed_by,
                streams,
                definition: definition.unwrap_or_default(),
            })
        })
        .collect()
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
         WHERE retired_at IS NULL AND ($1::text[] IS NULL OR id = ANY($1)) ORDER BY id",
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
                has_credentials: false,
            }],
            definition: Some(serde_json::json!({ "id": id })),
        }
    }

    fn api_cam(id: &str, node: &NodeId, password: &str) -> ApiCamera {
        let mut spec = cam(id);
        spec.streams[0].has_credentials = true;
        let login = Credentials { username: "admin".into(), password: password.into() };
        ApiCamera { spec, node: node.clone(), credentials: BTreeMap::from([("main".to_owned(), login)]) }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn api_cameras_are_created_changed_and_retired(
        pool: PgPool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let node = NodeId::new("n1")?;
        crate::nodes::register(&pool, &node, "x", "0").await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        sync(&pool, &node, &[cam("file")]).await?;
        create_api(&pool, &api_cam("door", &node, "s3cret")).await?;
        let note: serde_json::Value = serde_json::from_str(listener.recv().await?.payload())?;
        assert_eq!(note, serde_json::json!({ "id": "door", "node": "n1", "kind": "created" }));
        assert!(matches!(create_api(&pool, &api_cam("door", &node, "x")).await, Err(CameraError::Exists(_))));
        assert!(matches!(create_api(&pool, &api_cam("file", &node, "x")).await, Err(CameraError::Exists(_))));
        let elsewhere = api_cam("other", &NodeId::new("n9")?, "x");
        assert!(matches!(create_api(&pool, &elsewhere).await, Err(CameraError::UnknownNode(_))));
        // The file's cameras are changed in the file only; a reload of the file leaves the
        // API's cameras alone.
        assert!(matches!(
            update_api(&pool, &api_cam("file", &node, "x")).await,
            Err(CameraError::ManagedByConfig(_))
        ));
        assert!(matches!(
            retire_api(&pool, &CameraId::new("file")?).await,
            Err(CameraError::ManagedByConfig(_))
        ));
        sync(&pool, &node, &[cam("file")]).await?;
        let running = api_cameras(&pool, &node).await?;
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].credentials["main"].password, "s3cret");
        assert!(list(&pool, &Access::All).await?.iter().all(|c| c.enabled));
        update_api(&pool, &api_cam("door", &node, "n3w")).await?;
        assert_eq!(api_camera(&pool, &CameraId::new("door")?).await?.credentials["main"].password, "n3w");
        let listed = details(&pool, &Access::All).await?;
        assert_eq!(
            listed.iter().map(|d| (d.camera.id.as_str(), d.managed_by.as_str())).collect::<Vec<_>>(),
            [("door", "api"), ("file", "config")]
        );
        assert!(listed[0].streams[0].has_credentials);
        retire_api(&pool, &CameraId::new("door")?).await?;
        assert!(api_cameras(&pool, &node).await?.is_empty());
        assert_eq!(details(&pool, &Access::All).await?.len(), 1);
        let (creds,): (Option<serde_json::Value>,) =
            sqlx::query_as("SELECT credentials FROM cameras WHERE id = 'door'").fetch_one(&pool).await?;
        assert_eq!(creds, None, "credentials are erased with the camera");
        assert!(matches!(retire_api(&pool, &CameraId::new("door")?).await, Err(CameraError::NotFound)));
        // Deleted: the id can be used again.
        create_api(&pool, &api_cam("door", &node, "again")).await?;
        Ok(())
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
