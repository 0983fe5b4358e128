//! The users table. Passwords arrive here already hashed (argon2id PHC strings).

use std::fmt;
use std::str::FromStr;

use sqlx::PgPool;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including users and configuration.
    Admin,
    /// Watch, review alerts and export clips on granted cameras.
    Operator,
    /// Watch granted cameras.
    Viewer,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?}; expected admin, operator or viewer")),
        }
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is taken (case-insensitively).
    #[error("user {0:?} already exists")]
    Exists(String),
    /// The name has characters outside `[A-Za-z0-9._@-]` or is longer than 64.
    #[error("user name {0:?} must be 1 to 64 of letters, digits, '.', '_', '@', '-'")]
    BadName(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Checks a user name's shape (the same rule as the table's constraint).
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok { Ok(()) } else { Err(UserError::BadName(name.to_owned())) }
}

/// Creates a user; returns its id.
pub async fn create(pool: &PgPool, name: &str, password_hash: &str, role: Role) -> Result<i64, UserError> {
    check_name(name)?;
    let row: Result<(i64,), sqlx::Error> =
        sqlx::query_as("INSERT INTO users (name, password_hash, role) VALUES ($1, $2, $3) RETURNING id")
            .bind(name)
            .bind(password_hash)
            .bind(role.as_str())
            .fetch_one(pool)
            .await;
    match row {
        Ok((id,)) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(UserError::Exists(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// A user as listed (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Cameras granted (admins see every camera whatever the grants).
    pub cameras: Vec<String>,
    /// When created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When disabled; disabled users cannot log in and their sessions and tokens stop working.
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Listed =
    (i64, String, String, Vec<String>, chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>);

/// Every user (or one, with `only`), by name.
pub async fn list(pool: &PgPool, only: Option<i64>) -> Result<Vec<UserRow>, sqlx::Error> {
    let rows: Vec<Listed> = sqlx::query_as(
        "SELECT u.id, u.name, u.role,
                COALESCE(array_agg(g.camera_id ORDER BY g.camera_id) FILTER (WHERE g.camera_id IS NOT NULL), '{}'),
                u.created_at, u.disabled_at
         FROM users u LEFT JOIN user_camera_grants g ON g.user_id = u.id
         WHERE $1::bigint IS NULL OR u.id = $1
         GROUP BY u.id ORDER BY lower(u.name)",
    )
    .bind(only)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, name, role, cameras, created_at, disabled_at)| {
            let role = role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?;
            Ok(UserRow { id, name, role, cameras, created_at, disabled_at })
        })
        .collect()
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New role.
    pub role: Option<Role>,
    /// New password hash (argon2id PHC string).
    pub password_hash: Option<String>,
    /// The full new set of granted cameras.
    pub cameras: Option<Vec<String>>,
    /// Disable (`true`) or enable again (`false`).
    pub disabled: Option<bool>,
}

/// Why a user change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// It would leave no enabled admin.
    #[error("this would leave no enabled admin")]
    LastAdmin,
    /// A granted camera does not exist.
    #[error("camera {0:?} does not exist")]
    UnknownCamera(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Advisory lock key for user changes ("PANOUSER").
const USERS_LOCK: i64 = 0x5041_4e4f_5553_4552;

/// Applies `change` to user `id` in one transaction. A disabled user's sessions are ended
/// and tokens revoked; a new password ends the user's sessions too. Refuses to leave the
/// system without an enabled admin.
pub async fn change(pool: &PgPool, id: i64, change: &UserChange) -> Result<(), ChangeError> {
    let mut tx = pool.begin().await?;
    // Serialises admin changes, so two requests cannot each remove "the other" last admin.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(USERS_LOCK).execute(&mut *tx).await?;
    let exists: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(ChangeError::NotFound);
    }
    if let Some(role) = change.role {
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(hash) = &change.password_hash {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    }
    match change.disabled {
        Some(true) => {
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, now()) WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Some(false) => {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        None => {}
    }
    if let Some(cameras) = &change.cameras {
        let missing: Option<(String,)> = sqlx::query_as(
            "SELECT c FROM unnest($1::text[]) AS c
             WHERE NOT EXISTS (SELECT 1 FROM cameras WHERE id = c AND retired_at IS NULL) LIMIT 1",
        )
        .bind(cameras)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((camera,)) = missing {
            return Err(ChangeError::UnknownCamera(camera));
        }
        sqlx::query("DELETE FROM user_camera_grants WHERE user_id = $1 AND NOT (camera_id = ANY($2))")
            .bind(id)
            .bind(cameras)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO user_camera_grants (user_id, camera_id) SELECT $1, c FROM unnest($2::text[]) AS c
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(cameras)
        .execute(&mut *tx)
        .await?;
    }
    let (admins,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL")
            .fetch_one(&mut *tx)
            .await?;
    if admins == 0 {
        return Err(ChangeError::LastAdmin);
    }
    tx.commit().await?;
    Ok(())
}

/// Number of users (tells whether a first admin still has to be created).
pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(pool).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::Operator, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice@example.org").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn changes_keep_an_admin_and_end_disabled_users_sessions(
        pool: PgPool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let admin = create(&pool, "root", "$argon2id$x", Role::Admin).await?;
        let op = create(&pool, "op", "$argon2id$y", Role::Operator).await?;
        let node = panoptes_core::NodeId::new("n1")?;
        crate::nodes::register(&pool, &node, "x", "0").await?;
        sqlx::query("INSERT INTO cameras (id, name) VALUES ('gate', 'Gate'), ('door', 'Door')")
            .execute(&pool)
            .await?;
        let demote = UserChange { role: Some(Role::Viewer), ..Default::default() };
        assert!(matches!(change(&pool, admin, &demote).await, Err(ChangeError::LastAdmin)));
        let off = UserChange { disabled: Some(true), ..Default::default() };
        assert!(matches!(change(&pool, admin, &off).await, Err(ChangeError::LastAdmin)));
        assert_eq!(list(&pool, Some(admin)).await?[0].role, Role::Admin, "refused changes roll back");
        let grants = UserChange { cameras: Some(vec!["gate".into(), "door".into()]), ..Default::default() };
        change(&pool, op, &grants).await?;
        let bad = UserChange { cameras: Some(vec!["gate".into(), "nope".into()]), ..Default::default() };
        assert!(matches!(change(&pool, op, &bad).await, Err(ChangeError::UnknownCamera(c)) if c == "nope"));
        assert_eq!(list(&pool, Some(op)).await?[0].cameras, ["door", "gate"]);
        let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
        crate::auth::create_session(&pool, &[1; 32], op, "csrf", expires, None, None).await?;
        change(&pool, op, &off).await?;
        let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM sessions").fetch_one(&pool).await?;
        assert_eq!(sessions, 0);
        assert!(list(&pool, Some(op)).await?[0].disabled_at.is_some());
        assert!(matches!(change(&pool, 999, &off).await, Err(ChangeError::NotFound)));
        Ok(())
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn duplicate_names_are_rejected_case_insensitively(pool: PgPool) -> Result<(), UserError> {
        create(&pool, "Alice", "$argon2id$x", Role::Admin).await?;
        let again = create(&pool, "alice", "$argon2id$y", Role::Viewer).await;
        assert!(matches!(again, Err(UserError::Exists(_))), "{again:?}");
        assert_eq!(count(&pool).await?, 1);
        Ok(())
    }
}
