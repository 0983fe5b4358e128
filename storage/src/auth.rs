//! Sessions and API tokens. Only SHA-256 hashes of the secrets are stored.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::users::Role;

/// A user as authentication sees it.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
}

type UserRow = (i64, String, String);

fn to_user((id, name, role): UserRow) -> Option<AuthUser> {
    Some(AuthUser { id, name, role: role.parse().ok()? })
}

/// A user's password hash for login (none if the user does not exist or is disabled).
pub async fn login_candidate(pool: &PgPool, name: &str) -> Result<Option<(AuthUser, String)>, sqlx::Error> {
    let row: Option<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, name, role, password_hash FROM users WHERE lower(name) = lower($1) AND disabled_at IS NULL",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(id, name, role, hash)| Some((to_user((id, name, role))?, hash))))
}

/// Stores a new session.
pub async fn create_session(
    pool: &PgPool,
    token_hash: &[u8],
    user_id: i64,
    csrf_token: &str,
    expires_at: DateTime<Utc>,
    client_ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, client_ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(csrf_token)
    .bind(expires_at)
    .bind(client_ip)
    .bind(user_agent)
    .execute(pool)
    .await?;
    Ok(())
}

/// The user and CSRF token of a live session, extending it to `extend_to` (sliding expiry).
pub async fn session_user(
    pool: &PgPool,
    token_hash: &[u8],
    extend_to: DateTime<Utc>,
) -> Result<Option<(AuthUser, String)>, sqlx::Error> {
    let row: Option<(i64, String, String, String)> = sqlx::query_as(
        "UPDATE sessions s SET last_seen_at = now(), expires_at = GREATEST(s.expires_at, $2)
         FROM users u
         WHERE s.token_hash = $1 AND s.expires_at > now() AND u.id = s.user_id AND u.disabled_at IS NULL
         RETURNING u.id, u.name, u.role, s.csrf_token",
    )
    .bind(token_hash)
    .bind(extend_to)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(id, name, role, csrf)| Some((to_user((id, name, role))?, csrf))))
}

/// Ends a session.
pub async fn delete_session(pool: &PgPool, token_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await?;
    Ok(())
}

/// Removes expired sessions; returns how many.
pub async fn purge_expired_sessions(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= now()").execute(pool).await?.rows_affected())
}

/// Stores a new API token; returns its id.
pub async fn create_token(
    pool: &PgPool,
    user_id: i64,
    name: &str,
    token_hash: &[u8],
) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO api_tokens (user_id, name, token_hash) VALUES ($1, $2, $3) RETURNING id")
            .bind(user_id)
            .bind(name)
            .bind(token_hash)
            .fetch_one(pool)
            .await?;
    Ok(id)
}

/// The user of a valid (not revoked) API token; records its use.
pub async fn token_user(pool: &PgPool, token_hash: &[u8]) -> Result<Option<AuthUser>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(
        "UPDATE api_tokens t SET last_used_at = now()
         FROM users u
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.id = t.user_id AND u.disabled_at IS NULL
         RETURNING u.id, u.name, u.role",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(to_user))
}

/// Revokes a token of `user_id`; returns whether one was revoked.
pub async fn revoke_token(pool: &PgPool, user_id: i64, token_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(token_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A user's id by name.
pub async fn user_id(pool: &PgPool, name: &str) -> Result<Option<i64>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE lower(name) = lower($1)")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.0))
}

/// The camera ids granted to a user.
pub async fn granted_cameras(pool: &PgPool, user_id: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT camera_id FROM camera_grants WHERE user_id = $1 ORDER BY camera_id")
            .bind(user_id)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Grants cameras to a user (idempotent).
pub async fn grant_cameras(pool: &PgPool, user_id: i64, cameras: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO camera_grants (user_id, camera_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(cameras)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn sessions_and_tokens_resolve_to_users(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
        let id = users::create(&pool, "Op", "$argon2id$h", Role::Operator).await?;
        let later = Utc::now() + chrono::Duration::hours(1);
        create_session(&pool, b"s1", id, "csrf", later, Some("127.0.0.1"), None).await?;
        let (u, csrf) = session_user(&pool, b"s1", later).await?.ok_or("no session")?;
        assert_eq!((u.name.as_str(), u.role, csrf.as_str()), ("Op", Role::Operator, "csrf"));
        assert!(session_user(&pool, b"nope", later).await?.is_none());
        delete_session(&pool, b"s1").await?;
        assert!(session_user(&pool, b"s1", later).await?.is_none());

        let past = Utc::now() - chrono::Duration::hours(1);
        create_session(&pool, b"old", id, "c", past, None, None).await?;
        assert!(session_user(&pool, b"old", later).await?.is_none(), "expired sessions do not count");
        assert_eq!(purge_expired_sessions(&pool).await?, 1);

        let tid = create_token(&pool, id, "ci", b"t1").await?;
        assert_eq!(token_user(&pool, b"t1").await?.map(|u| u.id), Some(id));
        assert!(revoke_token(&pool, id, tid).await?);
        assert!(token_user(&pool, b"t1").await?.is_none());
        assert_eq!(login_candidate(&pool, "op").await?.map(|(u, _)| u.id), Some(id));
        grant_cameras(&pool, id, &["gate".into(), "lobby".into()]).await?;
        grant_cameras(&pool, id, &["gate".into()]).await?;
        assert_eq!(granted_cameras(&pool, id).await?, ["gate", "lobby"]);
        Ok(())
    }
}
