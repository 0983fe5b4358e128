//! Incident queries over events: search with keyset pagination, one event, review state
//! changes, and counts per hour, per label and per line.
//!
//! Every query takes an [`Access`] (the caller's camera grants) and applies it in SQL, so
//! a page never holds an event of a camera the caller may not see, and counts never
//! include one. Filters are typed and validated up front ([`EventFilter::validate`],
//! [`RangeFilter::validate`]) with errors that name the field.
//!
//! Pages are ordered newest first by `(start_time, id)`; the [`Cursor`] is that pair for
//! the last row of a page, as opaque base64url text. Keyset pagination costs the same on
//! page 1000 as on page 1.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use panoptes_core::{CameraId, NodeId};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

pub use crate::cameras::Access;
use crate::events::{BBox, Label, ReviewState};

/// Most events in one page.
pub const MAX_LIMIT: u32 = 1000;
/// Longest range for counts.
pub const MAX_COUNT_RANGE_DAYS: i64 = 400;
/// Most values in one list filter (cameras, labels, zones).
pub const MAX_LIST: usize = 500;

/// A position in the newest-first order: the last row of a page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    start_time: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    fn after(row: &EventRow) -> Self {
        Cursor { start_time: row.start_time, id: row.id }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = format!("1.{}.{}", self.start_time.timestamp_micros(), self.id.simple());
        f.write_str(&URL_SAFE_NO_PAD.encode(raw))
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({}, {})", self.start_time, self.id)
    }
}

/// A cursor that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid page cursor")]
pub struct CursorError;

impl FromStr for Cursor {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<Self, CursorError> {
        if s.len() > 128 {
            return Err(CursorError);
        }
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| CursorError)?;
        let raw = String::from_utf8(raw).map_err(|_| CursorError)?;
        let mut parts = raw.split('.');
        let (Some("1"), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError);
        };
        let micros: i64 = micros.parse().map_err(|_| CursorError)?;
        let start_time = DateTime::from_timestamp_micros(micros).ok_or(CursorError)?;
        let id = Uuid::try_parse(id).map_err(|_| CursorError)?;
        Ok(Cursor { start_time, id })
    }
}

/// One invalid field of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name, as in the API (`from`, `labels[2]`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every invalid field of a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError(pub Vec<FieldError>);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
    fn finish(self) -> Result<(), FilterError> {
        if self.0.is_empty() { Ok(()) } else { Err(FilterError(self.0)) }
    }
}

fn check_range(p: &mut Problems, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) {
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        p.add("to", "must be after from");
    }
}

fn check_lists(p: &mut Problems, cameras: &[CameraId], labels: &[String]) {
    if cameras.len() > MAX_LIST {
        p.add("cameras", format!("at most {MAX_LIST}"));
    }
    if labels.len() > MAX_LIST {
        p.add("labels", format!("at most {MAX_LIST}"));
    }
    for (i, l) in labels.iter().enumerate() {
        if Label::new(l.clone()).is_err() {
            p.add(
                format!("labels[{i}]"),
                format!("{l:?} is not a label (a-z, 0-9, '_', starting with a letter)"),
            );
        }
    }
}

/// What to search for. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Events that started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Events that started before this time.
    pub to: Option<DateTime<Utc>>,
    /// Any of these cameras (further limited by the caller's access).
    pub cameras: Vec<CameraId>,
    /// Any of these labels.
    pub labels: Vec<String>,
    /// Events in any of these zones.
    pub zones: Vec<String>,
    /// Events whose best score is at least this.
    pub min_score: Option<f32>,
    /// Any of these review states.
    pub review: Vec<ReviewState>,
    /// Only alerts (`Some(true)`), only non-alert events (`Some(false)`), or both.
    pub alert: Option<bool>,
    /// Sub-label (plate, face name) containing this text, case-insensitively.
    pub sub_label: Option<String>,
    /// Continue after this cursor (from the previous page).
    pub after: Option<Cursor>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
}

impl EventFilter {
    /// A filter matching everything, 50 per page.
    pub fn new() -> Self {
        EventFilter { limit: 50, ..EventFilter::default() }
    }

    /// Checks every field; the error lists each bad one.
    pub fn validate(&self) -> Result<(), FilterError> {
        let mut p = Problems::default();
        check_range(&mut p, self.from, self.to);
        check_lists(&mut p, &self.cameras, &self.labels);
        if self.zones.len() > MAX_LIST {
            p.add("zones", format!("at most {MAX_LIST}"));
        }
        for (i, z) in self.zones.iter().enumerate() {
            if z.is_empty() || z.len() > 64 {
                p.add(format!("zones[{i}]"), "must be 1 to 64 bytes");
            }
        }
        if let Some(s) = self.min_score
            && !(s.is_finite() && (0.0..=1.0).contains(&s))
        {
            p.add("min_score", format!("{s} is not in 0..=1"));
        }
        if let Some(s) = &self.sub_label {
            let n = s.chars().count();
            if n == 0 || n > 100 {
                p.add("sub_label", "must be 1 to 100 characters");
            }
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            p.add("limit", format!("must be 1 to {MAX_LIMIT}"));
        }
        p.finish()
    }
}

/// A time range for counts, with optional cameras and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeFilter {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Any of these cameras (further limited by access); empty means any.
    pub cameras: Vec<CameraId>,
    /// Any of these labels; empty means any.
    pub labels: Vec<String>,
}

impl RangeFilter {
    /// Every camera and label over `[from, to)`.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        RangeFilter { from, to, cameras: Vec::new(), labels: Vec::new() }
    }

    /// Checks every field; the error lists each bad one.
    pub fn validate(&self) -> Result<(), FilterError> {
        let mut p = Problems::default();
        check_range(&mut p, Some(self.from), Some(self.to));
        if self.to - self.from > TimeDelta::days(MAX_COUNT_RANGE_DAYS) {
            p.add("to", format!("the range may span at most {MAX_COUNT_RANGE_DAYS} days"));
        }
        check_lists(&mut p, &self.cameras, &self.labels);
        p.finish()
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter is invalid.
    #[error("invalid filter: {0}")]
    Invalid(#[from] FilterError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// An event as listed (without its path; see [`event_path`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Its id.
    pub id: Uuid,
    /// The camera.
    pub camera: CameraId,
    /// The node that detected it.
    pub node: Option<String>,
    /// What it is.
    pub label: String,
    /// Plate text or face name.
    pub sub_label: Option<String>,
    /// Best score.
    pub score_max: f32,
    /// Median score.
    pub score_median: f32,
    /// Box of the best snapshot.
    pub bbox: BBox,
    /// Zones entered.
    pub zones: Vec<String>,
    /// Whether the camera's alert rules accept it.
    pub alert: bool,
    /// Track start.
    pub start_time: DateTime<Utc>,
    /// Track end, `None` while ongoing.
    pub end_time: Option<DateTime<Utc>>,
    /// Snapshot path relative to the node's snapshot directory.
    pub snapshot_path: Option<String>,
    /// Review state.
    pub review_state: ReviewState,
    /// Who reviewed it.
    pub reviewed_by: Option<i64>,
    /// When.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// The reviewer's note.
    pub review_note: Option<String>,
}

const COLUMNS: &str = "id, camera_id, node_id, label, sub_label, score_max, score_median, bbox, zones, alert, \
                       start_time, end_time, snapshot_path, review_state, reviewed_by, reviewed_at, review_note";

fn decode<E: std::error::Error + Send + Sync + 'static>(e: E) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

impl<'r> FromRow<'r, PgRow> for EventRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let bbox: Vec<f32> = row.try_get("bbox")?;
        let bbox = match bbox[..] {
            [x, y, w, h] => BBox { x, y, w, h },
            _ => return Err(sqlx::Error::Decode("bbox is not 4 numbers".into())),
        };
        let state: String = row.try_get("review_state")?;
        Ok(EventRow {
            id: row.try_get("id")?,
            camera: CameraId::new(row.try_get::<String, _>("camera_id")?).map_err(decode)?,
            node: row.try_get("node_id")?,
            label: row.try_get("label")?,
            sub_label: row.try_get("sub_label")?,
            score_max: row.try_get("score_max")?,
            score_median: row.try_get("score_median")?,
            bbox,
            zones: row.try_get("zones")?,
            alert: row.try_get("alert")?,
            start_time: row.try_get("start_time")?,
            end_time: row.try_get("end_time")?,
            snapshot_path: row.try_get("snapshot_path")?,
            review_state: ReviewState::parse(&state)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown review state {state:?}").into()))?,
            reviewed_by: row.try_get("reviewed_by")?,
            reviewed_at: row.try_get("reviewed_at")?,
            review_note: row.try_get("review_note")?,
        })
    }
}

/// One page of events.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events, newest first.
    pub events: Vec<EventRow>,
    /// The cursor for the next page, when there is one.
    pub next: Option<Cursor>,
}

fn push_access(q: &mut QueryBuilder<'_, Postgres>, access: &Access) {
    if let Some(cams) = access.cameras_bind() {
        q.push(" AND camera_id = ANY(").push_bind(cams).push(")");
    }
}

fn push_cameras_labels(q: &mut QueryBuilder<'_, Postgres>, cameras: &[CameraId], labels: &[String]) {
    if !cameras.is_empty() {
        let c: Vec<String> = cameras.iter().map(|c| c.as_str().to_owned()).collect();
        q.push(" AND camera_id = ANY(").push_bind(c).push(")");
    }
    if !labels.is_empty() {
        q.push(" AND label = ANY(").push_bind(labels.to_vec()).push(")");
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The SQL of [`list`] for a filter, with its binds (the benchmark runs it by hand too).
pub fn list_query<'a>(access: &Access, filter: &EventFilter) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE true"));
    if let Some(from) = filter.from {
        q.push(" AND start_time >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND start_time < ").push_bind(to);
    }
    push_access(&mut q, access);
    push_cameras_labels(&mut q, &filter.cameras, &filter.labels);
    if !filter.zones.is_empty() {
        q.push(" AND zones && ").push_bind(filter.zones.clone());
    }
    if let Some(s) = filter.min_score {
        q.push(" AND score_max >= ").push_bind(s);
    }
    if !filter.review.is_empty() {
        // Literals (from an enum), so that the planner can use the partial index of
        // unreviewed events.
        let states: Vec<String> = filter.review.iter().map(|s| format!("'{}'", s.as_str())).collect();
        q.push(format!(" AND review_state IN ({})", states.join(", ")));
    }
    if let Some(a) = filter.alert {
        // A literal, for the partial index of unreviewed alerts.
        q.push(if a { " AND alert" } else { " AND NOT alert" });
    }
    if let Some(s) = &filter.sub_label {
        q.push(" AND sub_label ILIKE ").push_bind(format!("%{}%", like_escape(s)));
    }
    if let Some(c) = filter.after {
        q.push(" AND (start_time, id) < (").push_bind(c.start_time).push(", ").push_bind(c.id).push(")");
    }
    q.push(" ORDER BY start_time DESC, id DESC LIMIT ").push_bind(i64::from(filter.limit) + 1);
    q
}

/// Events matching `filter` that `access` allows, newest first, one page.
pub async fn list(pool: &PgPool, access: &Access, filter: &EventFilter) -> Result<Page, QueryError> {
    filter.validate()?;
    let mut q = list_query(access, filter);
    let mut events: Vec<EventRow> = q.build_query_as().fetch_all(pool).await?;
    let limit = filter.limit as usize;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(Cursor::after)
    } else {
        None
    };
    Ok(Page { events, next })
}

/// One event, if it exists and `access` allows its camera.
pub async fn get(pool: &PgPool, access: &Access, id: Uuid) -> Result<Option<EventRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE id = "));
    q.push_bind(id);
    push_access(&mut q, access);
    q.build_query_as().fetch_optional(pool).await
}

/// One event, if its camera is owned by `node` (`cameras.node_id`, the ownership seam), whoever
/// may see it. Notifications (MQTT, webhooks) use it so that, with several nodes sharing one
/// database, only the camera's owner publishes its events.
pub async fn get_owned(pool: &PgPool, id: Uuid, node: &NodeId) -> Result<Option<EventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events WHERE id = $1 \
         AND camera_id IN (SELECT id FROM cameras WHERE node_id = $2)"
    ))
    .bind(id)
    .bind(node.as_str())
    .fetch_optional(pool)
    .await
}

/// The track path of an event (`[[ms, x, y, w, h], …]`), if `access` allows it.
pub async fn event_path(
    pool: &PgPool,
    access: &Access,
    id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let mut q = QueryBuilder::new("SELECT bbox_path FROM events WHERE id = ");
    q.push_bind(id);
    push_access(&mut q, access);
    let row: Option<(serde_json::Value,)> = q.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|(v,)| v))
}

/// A review decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Seen and kept.
    Acknowledge,
    /// Seen and not interesting.
    Dismiss,
}

impl Verdict {
    fn state(self) -> ReviewState {
        match self {
            Verdict::Acknowledge => ReviewState::Acknowledged,
            Verdict::Dismiss => ReviewState::Dismissed,
        }
    }
}

/// Why a review was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such event, or not one the caller may see (the two are not told apart).
    #[error("event not found")]
    NotFound,
    /// The event is already in the requested state.
    #[error("event is already {}", .state.as_str())]
    Unchanged {
        /// Its state.
        state: ReviewState,
        /// Who put it there.
        reviewed_by: Option<i64>,
        /// When.
        reviewed_at: Option<DateTime<Utc>>,
    },
    /// The note is too long.
    #[error("review_note: at most 2000 characters")]
    NoteTooLong,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Records a review by `user_id`: `new` → acknowledged or dismissed, and also between
/// acknowledged and dismissed (a mistaken verdict can be corrected; the latest reviewer,
/// time and note win). An event never goes back to `new`. Asking for the state the event
/// is already in is [`ReviewError::Unchanged`], which tells who got there first. Announced
/// with `NOTIFY panoptes_events` (`kind: review`).
pub async fn review(
    pool: &PgPool,
    access: &Access,
    id: Uuid,
    verdict: Verdict,
    user_id: i64,
    note: Option<&str>,
) -> Result<EventRow, ReviewError> {
    if note.is_some_and(|n| n.chars().count() > 2000) {
        return Err(ReviewError::NoteTooLong);
    }
    let state = verdict.state().as_str();
    let mut q = QueryBuilder::new("WITH upd AS (UPDATE events SET review_state = ");
    q.push_bind(state)
        .push(", reviewed_by = ")
        .push_bind(user_id)
        .push(", reviewed_at = now(), review_note = ")
        .push_bind(note.map(str::to_owned))
        .push(", updated_at = now() WHERE id = ")
        .push_bind(id)
        .push(" AND review_state <> ")
        .push_bind(state);
    push_access(&mut q, access);
    q.push(format!(
        " RETURNING {COLUMNS}), n AS (SELECT pg_notify('panoptes_events', json_build_object('id', id, \
         'camera', camera_id, 'label', label, 'state', review_state, 'alert', alert, 'kind', 'review')::text) FROM upd) \
         SELECT upd.* FROM upd LEFT JOIN n ON true"
    ));
    if let Some(row) = q.build_query_as::<EventRow>().fetch_optional(pool).await? {
        return Ok(row);
    }
    match get(pool, access, id).await? {
        None => Err(ReviewError::NotFound),
        Some(e) => Err(ReviewError::Unchanged {
            state: e.review_state,
            reviewed_by: e.reviewed_by,
            reviewed_at: e.reviewed_at,
        }),
    }
}

/// Events in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// Events that started in it.
    pub count: i64,
}

/// Events per label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCount {
    /// The label.
    pub label: String,
    /// Events.
    pub count: i64,
}

/// Crossings of one line in one direction by one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTotal {
    /// The camera.
    pub camera: String,
    /// The line.
    pub line_id: String,
    /// What crossed.
    pub label: String,
    /// `in` or `out`.
    pub direction: String,
    /// The hour's start, or `None` for a total over the range.
    pub hour: Option<DateTime<Utc>>,
    /// Crossings.
    pub count: i64,
}

fn range_query<'a>(select: &str, access: &Access, f: &RangeFilter, tail: &str) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(select.to_owned());
    q.push(" WHERE start_time >= ").push_bind(f.from).push(" AND start_time < ").push_bind(f.to);
    push_access(&mut q, access);
    push_cameras_labels(&mut q, &f.cameras, &f.labels);
    q.push(tail.to_owned());
    q
}

/// The SQL of [`counts_per_hour`] (the benchmark runs it by hand too).
pub fn counts_per_hour_query<'a>(access: &Access, f: &RangeFilter) -> QueryBuilder<'a, Postgres> {
    range_query(
        "SELECT date_bin('1 hour', start_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour, count(*) FROM events",
        access,
        f,
        " GROUP BY 1 ORDER BY 1",
    )
}

/// Events per hour (UTC) over the range; hours without events are left out.
pub async fn counts_per_hour(
    pool: &PgPool,
    access: &Access,
    f: &RangeFilter,
) -> Result<Vec<HourCount>, QueryError> {
    f.validate()?;
    let rows: Vec<(DateTime<Utc>, i64)> =
        counts_per_hour_query(access, f).build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(hour, count)| HourCount { hour, count }).collect())
}

/// Events per label over the range, most frequent first.
pub async fn counts_per_label(
    pool: &PgPool,
    access: &Access,
    f: &RangeFilter,
) -> Result<Vec<LabelCount>, QueryError> {
    f.validate()?;
    let rows: Vec<(String, i64)> =
        range_query("SELECT label, count(*) FROM events", access, f, " GROUP BY label ORDER BY 2 DESC, 1")
            .build_query_as()
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(label, count)| LabelCount { label, count }).collect())
}

/// Line crossings over the range: per hour when `per_hour`, else summed per line,
/// label and direction. `f.labels` filters the crossing label.
pub async fn line_counts(
    pool: &PgPool,
    access: &Access,
    f: &RangeFilter,
    per_hour: bool,
) -> Result<Vec<LineTotal>, QueryError> {
    f.validate()?;
    let (hour, group) = if per_hour { ("bucket_start", ", bucket_start") } else { ("NULL::timestamptz", "") };
    let mut q = QueryBuilder::new(format!(
        "SELECT camera_id, line_id, label, direction, {hour} AS hour, sum(count)::bigint FROM line_counts \
         WHERE bucket_start >= "
    ));
    q.push_bind(f.from).push(" AND bucket_start < ").push_bind(f.to);
    push_access(&mut q, access);
    push_cameras_labels(&mut q, &f.cameras, &f.labels);
    q.push(format!(
        " GROUP BY camera_id, line_id, label, direction{group} ORDER BY camera_id, line_id, label, direction{group}"
    ));
    type Row = (String, String, String, String, Option<DateTime<Utc>>, i64);
    let rows: Vec<Row> = q.build_query_as().fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(camera, line_id, label, direction, hour, count)| LineTotal {
            camera,
            line_id,
            label,
            direction,
            hour,
            count,
        })
        .collect())
}

#[cfg(test)]
mod tests;
