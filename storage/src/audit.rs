//! The audit log: append-only, hash-chained, verifiable.
//!
//! Each row's hash is SHA-256 over the previous row's hash and the row's content in a fixed
//! encoding, so changing or deleting any row (other than the newest, whose removal shows as
//! a gap only against an exported copy) breaks verification from that row on. Appends are
//! serialised with a transaction-scoped advisory lock so concurrent writers cannot fork the
//! chain.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Advisory lock key for appends ("PANOAUDT").
const LOCK_KEY: i64 = 0x5041_4e4f_4155_4454;

/// One action to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// The acting user's id, if any (none for the system or a failed login).
    pub actor_id: Option<i64>,
    /// The acting user's name (or what was typed at a failed login).
    pub actor_name: &'a str,
    /// What happened: `login`, `login_failed`, `review`, `export`, `live_view`, …
    pub action: &'a str,
    /// What it happened to: a camera id, an event id, a user name.
    pub target: &'a str,
    /// Details as JSON.
    pub details: serde_json::Value,
    /// The client's address.
    pub client_ip: Option<&'a str>,
}

/// A row's content as hashed. Times are truncated to microseconds, as PostgreSQL stores them.
#[allow(clippy::too_many_arguments)]
fn row_hash(
    prev: &[u8],
    id: i64,
    at: DateTime<Utc>,
    actor_id: Option<i64>,
    actor_name: &str,
    action: &str,
    target: &str,
    details: &serde_json::Value,
    client_ip: Option<&str>,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    // Length-prefix every field so no two different rows encode alike.
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(&id.to_be_bytes());
    field(&at.timestamp_micros().to_be_bytes());
    field(actor_id.map(|a| a.to_string()).unwrap_or_default().as_bytes());
    field(actor_name.as_bytes());
    field(action.as_bytes());
    field(target.as_bytes());
    // jsonb reorders keys; hash a canonical form (keys sorted at every level) instead.
    field(canonical_json(details).as_bytes());
    field(client_ip.unwrap_or("").as_bytes());
    h.finalize().to_vec()
}

/// JSON text with object keys sorted at every level, whatever order the value holds them in.
fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Appends an entry; returns its id.
pub async fn append(pool: &PgPool, e: &AuditEntry<'_>) -> Result<AuditReceipt, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_KEY).execute(&mut *tx).await?;
    let prev: Option<(Vec<u8>,)> = sqlx::query_as("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let prev = prev.map(|p| p.0).unwrap_or_else(|| vec![0; 32]);
    let (id,): (i64,) = sqlx::query_as("SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))")
        .fetch_one(&mut *tx)
        .await?;
    let at = Utc::now().trunc_subsecs(6);
    let hash = row_hash(&prev, id, at, e.actor_id, e.actor_name, e.action, e.target, &e.details, e.client_ip);
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_id, actor_name, action, target, details, client_ip, prev_hash, hash)
         OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(at)
    .bind(e.actor_id)
    .bind(e.actor_name)
    .bind(e.action)
    .bind(e.target)
    .bind(&e.details)
    .bind(e.client_ip)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(AuditReceipt { id, at, hash: hex(&hash) })
}

/// Where an appended entry sits in the chain (exports carry it as evidence).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReceipt {
    /// The entry's id.
    pub id: i64,
    /// Its time.
    pub at: DateTime<Utc>,
    /// Its chain hash, hex.
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    /// Id (the chain's order).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Acting user's id.
    pub actor_id: Option<i64>,
    /// Acting user's name.
    pub actor_name: String,
    /// What happened.
    pub action: String,
    /// To what.
    pub target: String,
    /// Details.
    pub details: serde_json::Value,
    /// Client address.
    pub client_ip: Option<String>,
}

/// Entries newest first, before id `before` when given, optionally of one action or actor;
/// at most `limit`.
pub async fn list(
    pool: &PgPool,
    before: Option<i64>,
    action: Option<&str>,
    actor: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor_id, actor_name, action, target, details, client_ip FROM audit_log
         WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR action = $2)
           AND ($3::text IS NULL OR lower(actor_name) = lower($3))
         ORDER BY id DESC LIMIT $4",
    )
    .bind(before)
    .bind(action)
    .bind(actor)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every row checks out.
    Intact {
        /// Rows checked.
        rows: u64,
    },
    /// The first row that does not.
    Broken {
        /// Its id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
}

type Row = (
    i64,
    DateTime<Utc>,
    Option<i64>,
    String,
    String,
    String,
    serde_json::Value,
    Option<String>,
    Vec<u8>,
    Vec<u8>,
);

/// Walks the whole chain in id order.
pub async fn verify(pool: &PgPool) -> Result<Verification, sqlx::Error> {
    use futures::TryStreamExt;
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT id, at, actor_id, actor_name, action, target, details, client_ip, prev_hash, hash
         FROM audit_log ORDER BY id",
    )
    .fetch(pool);
    let mut expected_prev = vec![0u8; 32];
    let mut n = 0;
    while let Some(row) = rows.try_next().await? {
        let (id, at, actor_id, actor_name, action, target, details, client_ip, prev_hash, hash) = row;
        if prev_hash != expected_prev {
            return Ok(Verification::Broken {
                id,
                reason: "previous hash does not match: a row before it was changed or deleted".into(),
            });
        }
        let computed = row_hash(
            &prev_hash,
            id,
            at,
            actor_id,
            &actor_name,
            &action,
            &target,
            &details,
            client_ip.as_deref(),
        );
        if computed != hash {
            return Ok(Verification::Broken {
                id,
                reason: "content does not match its hash: the row was changed".into(),
            });
        }
        expected_prev = hash;
        n += 1;
    }
    Ok(Verification::Intact { rows: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry<'_> {
        AuditEntry {
            actor_id: None,
            actor_name: "system",
            action,
            target: "cam-1",
            details: serde_json::json!({"note": "x", "a": 1}),
            client_ip: Some("127.0.0.1"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": [{"y": 1, "x": 2}], "a": "s"});
        assert_eq!(canonical_json(&v), r#"{"a":"s","b":[{"x":2,"y":1}]}"#);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn chain_verifies_and_detects_edits_and_deletions(pool: PgPool) -> Result<(), sqlx::Error> {
        for a in ["login", "review", "export", "live_view"] {
            append(&pool, &entry(a)).await?;
        }
        assert_eq!(verify(&pool).await?, Verification::Intact { rows: 4 });

        sqlx::query("UPDATE audit_log SET target = 'cam-2' WHERE action = 'review'").execute(&pool).await?;
        assert!(matches!(verify(&pool).await?, Verification::Broken { .. }));
        sqlx::query("UPDATE audit_log SET target = 'cam-1' WHERE action = 'review'").execute(&pool).await?;
        assert_eq!(verify(&pool).await?, Verification::Intact { rows: 4 });

        sqlx::query("DELETE FROM audit_log WHERE action = 'export'").execute(&pool).await?;
        let Verification::Broken { reason, .. } = verify(&pool).await? else {
            panic!("deletion not detected")
        };
        assert!(reason.contains("previous hash"), "{reason}");
        Ok(())
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn concurrent_appends_keep_one_chain(pool: PgPool) -> Result<(), sqlx::Error> {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("user{i}");
                append(&pool, &AuditEntry { actor_name: &name, ..entry("login") }).await
            }));
        }
        for t in tasks {
            t.await.map_err(|e| sqlx::Error::Protocol(e.to_string()))??;
        }
        assert_eq!(verify(&pool).await?, Verification::Intact { rows: 20 });
        Ok(())
    }
}
