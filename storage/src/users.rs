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
    async fn duplicate_names_are_rejected_case_insensitively(pool: PgPool) -> Result<(), UserError> {
        create(&pool, "Alice", "$argon2id$x", Role::Admin).await?;
        let again = create(&pool, "alice", "$argon2id$y", Role::Viewer).await;
        assert!(matches!(again, Err(UserError::Exists(_))), "{again:?}");
        assert_eq!(count(&pool).await?, 1);
        Ok(())
    }
}
