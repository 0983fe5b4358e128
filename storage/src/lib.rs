//! PostgreSQL for Panoptes: connection, a private cluster when no server is given,
//! migrations and queries.
//!
//! - [`db`] connects to an external server with a pool, retrying with backoff at start and
//!   naming the host it cannot reach.
//! - [`cluster`] runs a private PostgreSQL cluster under the data directory with the
//!   system's `initdb`/`pg_ctl`, on a Unix socket only, as an unprivileged user when
//!   Panoptes runs as root; it is reused on the next start and stopped on shutdown.
//! - [`MIGRATOR`] holds the schema migrations (`storage/migrations`), run at every start.
//! - [`users`] and [`nodes`]: who logs in, which processes run.
//! - [`cameras`]: the configured cameras mirrored into the database, and user grants
//!   ([`cameras::Access`]).
//! - [`events`]: event values and the event writer (batched inserts, a spool file while
//!   PostgreSQL is away, in-order replay, `NOTIFY panoptes_events`).
//! - [`queries`]: incident search with keyset pagination, review, counts.
//!
//! What this crate must not do: decode video, run inference or serve HTTP.

pub mod audit;
pub mod auth;
pub mod cameras;
pub mod cluster;
pub mod db;
pub mod events;
pub mod nodes;
pub mod queries;
pub mod users;

pub use sqlx::PgPool;
pub use sqlx::postgres::PgConnectOptions;

/// The schema migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
