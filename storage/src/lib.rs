//! PostgreSQL for Panoptes: connection, a private cluster when no server is given,
//! migrations and queries.
//!
//! - [`db`] connects to an external server with a pool, retrying with backoff at start and
//!   naming the host it cannot reach.
//! - [`cluster`] runs a private PostgreSQL cluster under the data directory with the
//!   system's `initdb`/`pg_ctl`, on a Unix socket only, as an unprivileged user when
//!   Panoptes runs as root; it is reused on the next start and stopped on shutdown.
//! - [`MIGRATOR`] holds the schema migrations (`storage/migrations`), run at every start.
//! - [`cameras`]: the configured cameras mirrored into the database, and user grants
//!   ([`cameras::Access`]).
//! - [`events`]: event values and the event writer (batched inserts, a spool file while
//!   PostgreSQL is away, in-order replay, `NOTIFY panoptes_events`).
//! - [`queries`]: incident search with keyset pagination, review, counts.
//! - [`recorder`] writes fragmented MP4 segments per camera stream (no transcoding) on named
//!   threads and indexes them; [`recorder::recover`] repairs the index after a crash.
//! - [`retention`] deletes recordings by per-camera bytes and days and a free-disk floor,
//!   keeping what unreviewed alerts and legal holds need.
//! - [`export`] remuxes a time range into one MP4 with a manifest.
//! - [`auth`] and [`audit`]: sessions, API tokens, the hash-chained audit log.
//! - [`users`] and [`nodes`]: who logs in, which processes run.
//!
//! What this crate must not do: decode video, run inference or serve HTTP.

pub mod audit;
pub mod auth;
pub mod cameras;
pub mod cluster;
pub mod db;
pub mod events;
pub mod export;
pub mod nodes;
pub mod queries;
pub mod recorder;
pub mod retention;
pub mod users;

pub use sqlx::PgPool;
pub use sqlx::postgres::PgConnectOptions;
pub use sqlx::postgres::PgListener;

/// The schema migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
