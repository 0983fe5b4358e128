//! Database tests of the queries (each gets a fresh, migrated database).

use chrono::{DateTime, TimeDelta, Utc};
use panoptes_core::CameraId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::*;
use crate::events::store::{self, StoreResult};
use crate::events::{Direction, EventUpdate, Label, LineCount, NewEvent, Record};
use crate::users::{self, Role};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap() // 2025-11-24T16:00:00Z
}

fn event(i: i64, camera: &str, label: &str) -> NewEvent {
    let bbox = BBox { x: 0.1, y: 0.1, w: 0.2, h: 0.3 };
    let mut e = NewEvent::new(
        format!("n1/{camera}/{i}"),
        CameraId::new(camera).unwrap(),
        Label::new(label).unwrap(),
        t0() + TimeDelta::minutes(i),
        0.5 + (i % 5) as f32 / 10.0,
        bbox,
    );
    e.score_median = 0.5;
    e
}

async fn write(pool: &PgPool, records: Vec<Record>) {
    match store::write(pool, &records).await {
        StoreResult::Stored { rejected } => assert_eq!(rejected, 0),
        StoreResult::Unavailable(e) => panic!("{e}"),
    }
}

/// 60 events: minute i, camera a/b/c by i % 3, person/car alternating, zone "door" on
/// even minutes (only those are alerts), plates on cars.
async fn fixture(pool: &PgPool) -> Vec<NewEvent> {
    let mut all = Vec::new();
    for i in 0..60 {
        let cam = ["a", "b", "c"][(i % 3) as usize];
        let mut e = event(i, cam, if i % 2 == 0 { "person" } else { "car" });
        if i % 2 == 0 {
            e.zones = vec!["door".into()];
        } else {
            e.sub_label = Some(format!("AB-{i:03}"));
            e.alert = false;
        }
        all.push(e);
    }
    write(pool, all.iter().cloned().map(Record::Start).collect()).await;
    all
}

fn filter() -> EventFilter {
    EventFilter { limit: 1000, ..EventFilter::new() }
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn search_filters_each_field(pool: PgPool) -> TestResult {
    fixture(&pool).await;
    let n = |f: EventFilter| {
        let pool = pool.clone();
        async move { list(&pool, &Access::All, &f).await.map(|p| p.events.len()) }
    };
    assert_eq!(n(filter()).await?, 60);
    let range = EventFilter {
        from: Some(t0() + TimeDelta::minutes(10)),
        to: Some(t0() + TimeDelta::minutes(20)),
        ..filter()
    };
    assert_eq!(n(range).await?, 10);
    assert_eq!(n(EventFilter { cameras: vec![CameraId::new("a")?], ..filter() }).await?, 20);
    assert_eq!(n(EventFilter { labels: vec!["car".into()], ..filter() }).await?, 30);
    assert_eq!(n(EventFilter { zones: vec!["door".into(), "gate".into()], ..filter() }).await?, 30);
    // Scores 0.5..0.9 by i % 5: 0.9 only for i % 5 == 4.
    assert_eq!(n(EventFilter { min_score: Some(0.85), ..filter() }).await?, 12);
    assert_eq!(
        n(EventFilter { sub_label: Some("ab-01".into()), ..filter() }).await?,
        5,
        "AB-011..AB-019 odd"
    );
    assert_eq!(n(EventFilter { sub_label: Some("%".into()), ..filter() }).await?, 0, "wildcards are escaped");
    assert_eq!(n(EventFilter { review: vec![ReviewState::New], ..filter() }).await?, 60);
    assert_eq!(n(EventFilter { review: vec![ReviewState::Dismissed], ..filter() }).await?, 0);
    assert_eq!(n(EventFilter { alert: Some(true), ..filter() }).await?, 30);
    assert_eq!(n(EventFilter { alert: Some(false), labels: vec!["car".into()], ..filter() }).await?, 30);
    assert_eq!(n(EventFilter { alert: Some(true), labels: vec!["car".into()], ..filter() }).await?, 0);
    let combined = EventFilter {
        cameras: vec![CameraId::new("a")?, CameraId::new("b")?],
        labels: vec!["person".into()],
        zones: vec!["door".into()],
        ..filter()
    };
    assert_eq!(n(combined).await?, 20);
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn access_is_applied_in_every_query(pool: PgPool) -> TestResult {
    let all = fixture(&pool).await;
    let only_b = Access::Cameras(vec![CameraId::new("b")?]);
    let page = list(&pool, &only_b, &filter()).await?;
    assert_eq!(page.events.len(), 20);
    assert!(page.events.iter().all(|e| e.camera.as_str() == "b"));
    // Asking for camera a explicitly does not widen access.
    let f = EventFilter { cameras: vec![CameraId::new("a")?], ..filter() };
    assert!(list(&pool, &only_b, &f).await?.events.is_empty());
    assert!(list(&pool, &Access::Cameras(vec![]), &filter()).await?.events.is_empty());
    let a_event = all[0].id;
    assert!(get(&pool, &only_b, a_event).await?.is_none());
    assert!(get(&pool, &Access::All, a_event).await?.is_some());
    assert!(event_path(&pool, &only_b, a_event).await?.is_none());
    let range = RangeFilter::new(t0(), t0() + TimeDelta::days(1));
    let hours = counts_per_hour(&pool, &only_b, &range).await?;
    assert_eq!(hours.iter().map(|h| h.count).sum::<i64>(), 20);
    let labels = counts_per_label(&pool, &only_b, &range).await?;
    assert_eq!(labels.iter().map(|l| l.count).sum::<i64>(), 20);
    let u = users::create(&pool, "op", "$argon2id$x", Role::Operator).await?;
    let r = review(&pool, &only_b, a_event, Verdict::Acknowledge, u, None).await;
    assert!(matches!(r, Err(ReviewError::NotFound)), "{r:?}");
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn keyset_pages_cover_everything_once_in_order(pool: PgPool) -> TestResult {
    fixture(&pool).await;
    // Ten more events sharing one start time: the id breaks the tie.
    let mut same = Vec::new();
    for i in 0..10 {
        let mut e = event(30, "a", "person");
        e.idempotency_key = format!("tie/{i}");
        e.id = uuid::Uuid::now_v7();
        same.push(Record::Start(e));
    }
    write(&pool, same).await;
    let mut seen = Vec::new();
    let mut f = EventFilter { limit: 7, ..EventFilter::new() };
    let mut pages = 0;
    loop {
        let page = list(&pool, &Access::All, &f).await?;
        pages += 1;
        seen.extend(page.events.iter().map(|e| (e.start_time, e.id)));
        let Some(next) = page.next else { break };
        // The cursor survives a trip through text.
        f.after = Some(next.to_string().parse()?);
    }
    assert_eq!(seen.len(), 70);
    assert_eq!(pages, 10);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "strictly newest first, no repeats");
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn review_moves_forward_and_can_be_corrected(pool: PgPool) -> TestResult {
    let all = fixture(&pool).await;
    let id = all[3].id;
    let alice = users::create(&pool, "alice", "$argon2id$x", Role::Operator).await?;
    let bob = users::create(&pool, "bob", "$argon2id$x", Role::Operator).await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(store::CHANNEL).await?;

    let row = review(&pool, &Access::All, id, Verdict::Acknowledge, alice, Some("delivery")).await?;
    assert_eq!(row.review_state, ReviewState::Acknowledged);
    assert_eq!(row.reviewed_by, Some(alice));
    assert_eq!(row.review_note.as_deref(), Some("delivery"));
    assert!(row.reviewed_at.is_some());
    let note = listener.recv().await?;
    let json: serde_json::Value = serde_json::from_str(note.payload())?;
    assert_eq!(json["kind"], "review");
    assert_eq!(json["state"], "acknowledged");
    assert_eq!(json["id"], id.to_string());

    // A second acknowledgement tells who was first.
    let again = review(&pool, &Access::All, id, Verdict::Acknowledge, bob, None).await;
    assert!(
        matches!(again, Err(ReviewError::Unchanged { state: ReviewState::Acknowledged, reviewed_by: Some(u), .. }) if u == alice),
        "{again:?}"
    );
    // A correction is allowed and replaces reviewer and note.
    let row = review(&pool, &Access::All, id, Verdict::Dismiss, bob, Some("false positive")).await?;
    assert_eq!((row.review_state, row.reviewed_by), (ReviewState::Dismissed, Some(bob)));
    let missing = review(&pool, &Access::All, uuid::Uuid::now_v7(), Verdict::Dismiss, bob, None).await;
    assert!(matches!(missing, Err(ReviewError::NotFound)));
    let long = "x".repeat(2001);
    let too_long = review(&pool, &Access::All, all[4].id, Verdict::Dismiss, bob, Some(&long)).await;
    assert!(matches!(too_long, Err(ReviewError::NoteTooLong)));

    let f = EventFilter { review: vec![ReviewState::New], ..filter() };
    assert_eq!(list(&pool, &Access::All, &f).await?.events.len(), 59);
    let f = EventFilter { review: vec![ReviewState::Dismissed, ReviewState::Acknowledged], ..filter() };
    assert_eq!(list(&pool, &Access::All, &f).await?.events.len(), 1);
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn counts_per_hour_label_and_line(pool: PgPool) -> TestResult {
    // 150 events over 2.5 hours.
    let events: Vec<Record> =
        (0..150).map(|i| Record::Start(event(i, "a", if i < 100 { "person" } else { "car" }))).collect();
    write(&pool, events).await;
    let range = RangeFilter::new(t0(), t0() + TimeDelta::days(1));
    let hours = counts_per_hour(&pool, &Access::All, &range).await?;
    assert_eq!(
        hours,
        vec![
            HourCount { hour: t0(), count: 60 },
            HourCount { hour: t0() + TimeDelta::hours(1), count: 60 },
            HourCount { hour: t0() + TimeDelta::hours(2), count: 30 },
        ]
    );
    let cars = RangeFilter { labels: vec!["car".into()], ..range.clone() };
    assert_eq!(counts_per_hour(&pool, &Access::All, &cars).await?.iter().map(|h| h.count).sum::<i64>(), 50);
    let labels = counts_per_label(&pool, &Access::All, &range).await?;
    assert_eq!(
        labels,
        vec![
            LabelCount { label: "person".into(), count: 100 },
            LabelCount { label: "car".into(), count: 50 }
        ]
    );

    let cam = CameraId::new("a")?;
    let person = Label::new("person")?;
    let lc = |at: DateTime<Utc>, dir, total| {
        Record::LineCount(LineCount::new(cam.clone(), "gate", person.clone(), dir, at, total))
    };
    // Running totals, one replayed (older, smaller): the larger wins.
    write(&pool, vec![lc(t0(), Direction::In, 3), lc(t0() + TimeDelta::minutes(5), Direction::In, 5)]).await;
    write(&pool, vec![lc(t0(), Direction::In, 3), lc(t0() + TimeDelta::hours(1), Direction::In, 2)]).await;
    write(&pool, vec![lc(t0(), Direction::Out, 1)]).await;
    let per_hour = line_counts(&pool, &Access::All, &range, true).await?;
    let got: Vec<(&str, Option<DateTime<Utc>>, i64)> =
        per_hour.iter().map(|l| (l.direction.as_str(), l.hour, l.count)).collect();
    assert_eq!(
        got,
        vec![("in", Some(t0()), 5), ("in", Some(t0() + TimeDelta::hours(1)), 2), ("out", Some(t0()), 1)]
    );
    let totals = line_counts(&pool, &Access::All, &range, false).await?;
    assert_eq!(
        totals.iter().map(|l| (l.direction.as_str(), l.count)).collect::<Vec<_>>(),
        vec![("in", 7), ("out", 1)]
    );
    assert!(line_counts(&pool, &Access::Cameras(vec![]), &range, false).await?.is_empty());
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn writes_are_idempotent_and_announced(pool: PgPool) -> TestResult {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(store::CHANNEL).await?;
    // Not an alert until it enters the zone its camera's alerts require.
    let mut e = event(1, "a", "person");
    e.alert = false;
    let start = vec![Record::Start(e.clone())];
    write(&pool, start.clone()).await;
    let json: serde_json::Value = serde_json::from_str(listener.recv().await?.payload())?;
    assert_eq!(json["kind"], "start");
    assert_eq!(json["alert"], false);
    assert_eq!(json["camera"], "a");
    assert_eq!(json["label"], "person");
    assert_eq!(json["state"], "new");
    let end = Record::Update(EventUpdate {
        idempotency_key: e.idempotency_key.clone(),
        camera: e.camera.clone(),
        end_time: Some(e.start_time + TimeDelta::seconds(20)),
        sub_label: Some("Alice".into()),
        score_max: 0.95,
        score_median: 0.7,
        bbox: BBox { x: 0.2, y: 0.2, w: 0.1, h: 0.1 },
        path: vec![crate::events::PathPoint { ms: 0, bbox: e.bbox }],
        zones: vec!["porch".into()],
        alert: true,
        snapshot_path: Some("a/2025/11/24/x.jpg".into()),
    });
    // A replay of start and end, twice.
    write(&pool, vec![Record::Start(e.clone()), end.clone()]).await;
    write(&pool, vec![Record::Start(e.clone()), end.clone()]).await;
    let json: serde_json::Value = serde_json::from_str(listener.recv().await?.payload())?;
    assert_eq!(json["kind"], "end");
    assert_eq!(json["alert"], true);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events").fetch_one(&pool).await?;
    assert_eq!(n, 1);
    let row = get(&pool, &Access::All, e.id).await?.unwrap();
    assert_eq!(row.sub_label.as_deref(), Some("Alice"));
    assert_eq!(row.end_time, Some(e.start_time + TimeDelta::seconds(20)));
    assert_eq!(row.zones, ["porch"]);
    assert!(row.alert);
    assert_eq!(
        event_path(&pool, &Access::All, e.id).await?.unwrap(),
        serde_json::json!([[0, 0.1, 0.1, 0.2, 0.3]])
    );
    // Nothing changed by the second replay: no third notification.
    write(&pool, vec![Record::Start(event(2, "a", "car"))]).await;
    let json: serde_json::Value = serde_json::from_str(listener.recv().await?.payload())?;
    assert_eq!((json["kind"].as_str(), json["label"].as_str()), (Some("start"), Some("car")));
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_bad_record_is_dropped_alone(pool: PgPool) -> TestResult {
    let good = event(1, "a", "person");
    let mut bad = event(2, "a", "person");
    bad.score_max = 2.0; // bypasses validate(): the database's check refuses it
    let records = vec![Record::Start(good.clone()), Record::Start(bad), Record::Start(event(3, "a", "car"))];
    match store::write(&pool, &records).await {
        StoreResult::Stored { rejected } => assert_eq!(rejected, 1),
        StoreResult::Unavailable(e) => panic!("{e}"),
    }
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events").fetch_one(&pool).await?;
    assert_eq!(n, 2);
    Ok(())
}

#[test]
fn filters_name_every_bad_field() {
    let f = EventFilter {
        from: Some(t0()),
        to: Some(t0()),
        labels: vec!["person".into(), "Bad Label".into()],
        min_score: Some(1.5),
        sub_label: Some(String::new()),
        limit: 0,
        ..EventFilter::new()
    };
    let e = f.validate().unwrap_err();
    let fields: Vec<&str> = e.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["to", "labels[1]", "min_score", "sub_label", "limit"]);
    assert!(e.to_string().contains("labels[1]: \"Bad Label\" is not a label"));
    assert!(EventFilter::new().validate().is_ok());
    let r = RangeFilter::new(t0(), t0() + TimeDelta::days(500));
    assert_eq!(r.validate().unwrap_err().0[0].field, "to");
}

#[test]
fn cursors_are_opaque_and_checked() {
    let c = Cursor { start_time: t0(), id: uuid::Uuid::now_v7() };
    let text = c.to_string();
    assert!(text.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
    assert_eq!(text.parse::<Cursor>(), Ok(c));
    for bad in ["", "!!!", "MS4xMjM", &"A".repeat(200), "Mi4xLjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"] {
        assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad}");
    }
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn get_owned_returns_only_events_of_the_nodes_cameras(pool: PgPool) -> TestResult {
    use crate::cameras::{CameraSpec, sync};
    let (n1, n2) = (NodeId::new("n1")?, NodeId::new("n2")?);
    for n in [&n1, &n2] {
        crate::nodes::register(&pool, n, "127.0.0.1:0", "test").await?;
    }
    let spec = |id: &str| CameraSpec {
        id: CameraId::new(id).unwrap(),
        name: id.into(),
        enabled: true,
        streams: Vec::new(),
        definition: None,
    };
    sync(&pool, &n1, &[spec("a")]).await?;
    sync(&pool, &n2, &[spec("b")]).await?;
    let (ea, eb, ec) = (event(1, "a", "person"), event(2, "b", "car"), event(3, "c", "car"));
    write(&pool, vec![Record::Start(ea.clone()), Record::Start(eb.clone()), Record::Start(ec.clone())]).await;
    let owned = get_owned(&pool, ea.id, &n1).await?;
    assert_eq!(owned.map(|e| e.camera.to_string()), Some("a".into()));
    assert!(get_owned(&pool, eb.id, &n1).await?.is_none(), "n2's camera");
    assert!(get_owned(&pool, ec.id, &n1).await?.is_none(), "a camera no node owns");
    assert!(get_owned(&pool, eb.id, &n2).await?.is_some());
    Ok(())
}
