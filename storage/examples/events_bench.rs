//! Events benchmark (not a test): loads synthetic events into a fresh database, times the
//! common incident queries through our query functions and through plain `sqlx::query`
//! with the same SQL and binds, and measures the event writer's sustained insert rate.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p panoptes-storage --example events_bench -- [events] [runs]
//! ```
//!
//! Creates (and drops first) the database `panoptes_bench` on that server. Defaults:
//! 10 000 000 events over 100 cameras and 30 days, 30 runs per query.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use panoptes_core::CameraId;
use panoptes_storage::events::{BBox, EventUpdate, EventWriter, Label, NewEvent, WriterConfig};
use panoptes_storage::queries::{self, Access, EventFilter, RangeFilter};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Execute, Executor, PgPool};
use tokio_util::sync::CancellationToken;

const DB: &str = "panoptes_bench";
const CAMERAS: i64 = 100;
const DAYS: i64 = 30;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_761_955_200, 0).unwrap() // 2025-11-01T00:00:00Z
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000_000);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin: PgConnectOptions = url.parse()?;
    let mut conn = admin.connect().await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)").as_str()).await?;
    conn.execute(format!("CREATE DATABASE {DB}").as_str()).await?;
    conn.close().await?;
    let options = admin.clone().database(DB);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
    panoptes_storage::migrate(&pool).await?;

    load(&pool, n).await?;
    println!();
    println!(
        "## Queries ({runs} runs each; ours = panoptes_storage::queries, raw = same SQL and binds via plain sqlx::query, server = EXPLAIN ANALYZE execution time)"
    );
    println!();
    println!("| query | rows | ours p50 | ours p95 | raw p50 | raw p95 | ours/raw p50 | server p50 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    bench_queries(&pool, runs).await?;
    println!();
    writer_rate(&pool).await?;
    Ok(())
}

async fn load(pool: &PgPool, n: i64) -> R<()> {
    println!("## Load: {n} events, {CAMERAS} cameras, {DAYS} days");
    let start = Instant::now();
    let mut conn = pool.acquire().await?;
    conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 1").await?;
    sqlx::query(
        "INSERT INTO cameras (id, name) SELECT 'cam' || lpad(c::text, 3, '0'), 'Camera ' || c FROM generate_series(0, $1 - 1) c",
    )
    .bind(CAMERAS)
    .execute(&mut *conn)
    .await?;
    let users: (i64,) = sqlx::query_as(
        "INSERT INTO users (name, password_hash, role) VALUES ('bench', '$argon2id$x', 'operator') RETURNING id",
    )
    .fetch_one(&mut *conn)
    .await?;
    // Secondary indexes are dropped for the load and rebuilt after, as a bulk import would.
    let defs: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'
         AND indexname NOT IN ('events_pkey', 'events_key_unique')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, _) in &defs {
        conn.execute(format!("DROP INDEX {name}").as_str()).await?;
    }
    let chunk = 1_000_000i64;
    let span_ms = DAYS * 86_400_000;
    let mut from = 0;
    while from < n {
        let to = (from + chunk).min(n);
        // Event i starts at t0 + i·span/n (+ jitter): a steady 3.9 events/s over 30 days.
        // Labels: person 50 %, car 25 %, face 10 %, truck 5 %, bicycle 5 %, motorcycle 3 %,
        // bus 2 %. Plates on 40 % of cars, names on 30 % of faces. Events older than two
        // days are mostly reviewed.
        sqlx::query(
            "INSERT INTO events (id, idempotency_key, camera_id, node_id, label, sub_label, score_max, score_median,
                                 bbox, zones, start_time, end_time, review_state, reviewed_by, reviewed_at)
             SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3)
                     || '8' || substr(h, 4, 15))::uuid,
                    'bench/' || i, 'cam' || lpad((i % $4)::text, 3, '0'), 'n1', label,
                    CASE WHEN label = 'car' AND r < 0.4 THEN upper(substr(h, 20, 2)) || '-' || (i % 9973)
                         WHEN label = 'face' AND r < 0.3 THEN (ARRAY['alice','bob','carol','dave','erin'])[1 + i % 5]
                    END,
                    0.5 + r * 0.5, 0.5 + r * 0.25, ARRAY[0.1, 0.2, 0.3, 0.4]::real[],
                    (ARRAY['{door}', '{driveway}', '{}', '{door,driveway}']::text[][])[1 + i % 4:1 + i % 4],
                    ts, ts + make_interval(secs => 5 + i % 60),
                    rs, CASE WHEN rs <> 'new' THEN $5::bigint END, CASE WHEN rs <> 'new' THEN ts + interval '1 hour' END
             FROM (SELECT i, md5(i::text) AS h, ((i * 7919) % 1000) / 1000.0 AS r,
                          $3::timestamptz + make_interval(secs => (i::float8 * $6 / $2 + (i % 997)) / 1000) AS ts,
                          CASE WHEN i % 100 < 50 THEN 'person' WHEN i % 100 < 75 THEN 'car' WHEN i % 100 < 85 THEN 'face'
                               WHEN i % 100 < 90 THEN 'truck' WHEN i % 100 < 95 THEN 'bicycle'
                               WHEN i % 100 < 98 THEN 'motorcycle' ELSE 'bus' END AS label,
                          CASE WHEN i::float8 / $2 > 28.0 / 30 THEN 'new'
                               WHEN i % 10 = 0 THEN 'new' WHEN i % 10 < 7 THEN 'acknowledged' ELSE 'dismissed' END AS rs
                   FROM generate_series($1, $7 - 1) AS i) g",
        )
        .bind(from)
        .bind(n as f64)
        .bind(t0())
        .bind(CAMERAS)
        .bind(users.0)
        .bind(span_ms as f64)
        .bind(to)
        .execute(&mut *conn)
        .await?;
        from = to;
        println!("- {to} rows after {:.0} s", start.elapsed().as_secs_f64());
    }
    let loaded = start.elapsed();
    for (name, def) in &defs {
        let t = Instant::now();
        conn.execute(def.as_str()).await?;
        println!("- index {name} built in {:.1} s", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    conn.execute("VACUUM ANALYZE events").await?;
    println!("- VACUUM ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
    let (size,): (String,) = sqlx::query_as("SELECT pg_size_pretty(pg_total_relation_size('events'))")
        .fetch_one(&mut *conn)
        .await?;
    println!(
        "- rows loaded in {:.0} s, total with indexes {:.0} s; events table with indexes: {size}",
        loaded.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
}

/// One query case: our function, and the same SQL text with its binds.
struct Case {
    name: &'static str,
    filter: Option<EventFilter>,
}

fn hour(i: usize) -> DateTime<Utc> {
    // Spread over the 30 days, avoiding the first and last day.
    t0() + TimeDelta::hours(24 + (i as i64 * 37) % (24 * 28))
}

async fn bench_queries(pool: &PgPool, runs: usize) -> R<()> {
    let cam = |i: usize| CameraId::new(format!("cam{:03}", (i * 13) % 100)).unwrap();
    let access = Access::All;
    let mut cases: Vec<(Case, Vec<(EventFilter, RangeFilter)>)> = Vec::new();

    let mk = |f: &dyn Fn(usize) -> (EventFilter, RangeFilter)| (0..runs).map(f).collect::<Vec<_>>();
    let none = |t: DateTime<Utc>| RangeFilter::new(t, t + TimeDelta::hours(1));
    cases.push((
        Case { name: "one camera, one hour (page of 100)", filter: Some(EventFilter::new()) },
        mk(&|i| {
            let f = EventFilter {
                from: Some(hour(i)),
                to: Some(hour(i) + TimeDelta::hours(1)),
                cameras: vec![cam(i)],
                limit: 100,
                ..EventFilter::new()
            };
            (f, none(hour(i)))
        }),
    ));
    cases.push((
        Case { name: "one label (bus), one day (page of 100)", filter: Some(EventFilter::new()) },
        mk(&|i| {
            let day = t0() + TimeDelta::days(1 + (i as i64 % 28));
            let f = EventFilter {
                from: Some(day),
                to: Some(day + TimeDelta::days(1)),
                labels: vec!["bus".into()],
                limit: 100,
                ..EventFilter::new()
            };
            (f, none(day))
        }),
    ));
    cases.push((
        Case { name: "plate search ILIKE '%AB-12%', 30 days (page of 50)", filter: Some(EventFilter::new()) },
        mk(&|i| {
            let f = EventFilter {
                sub_label: Some(format!("{}-{}", ["AB", "3F", "C0", "E1"][i % 4], 10 + i % 90)),
                limit: 50,
                ..EventFilter::new()
            };
            (f, none(hour(i)))
        }),
    ));
    cases.push((
        Case { name: "review inbox: new events, all cameras (page of 50)", filter: Some(EventFilter::new()) },
        mk(&|i| {
            let f = EventFilter {
                review: vec![panoptes_storage::events::ReviewState::New],
                limit: 50,
                ..EventFilter::new()
            };
            (f, none(hour(i)))
        }),
    ));
    cases.push((
        Case { name: "counts per hour, one day, all cameras", filter: None },
        mk(&|i| {
            let day = t0() + TimeDelta::days(1 + (i as i64 % 28));
            (EventFilter::new(), RangeFilter::new(day, day + TimeDelta::days(1)))
        }),
    ));

    // Deep keyset page: page 200 of 100 rows over all events of one week (cursor found first).
    let mut deep = Vec::new();
    {
        let week = t0() + TimeDelta::days(7);
        let mut f = EventFilter {
            from: Some(week),
            to: Some(week + TimeDelta::days(7)),
            limit: 100,
            ..EventFilter::new()
        };
        for _ in 0..200 {
            let page = queries::list(pool, &access, &f).await?;
            f.after = page.next;
        }
        for _ in 0..runs {
            deep.push((f.clone(), none(week)));
        }
    }
    cases.push((
        Case { name: "deep keyset page (page 200 × 100, one week)", filter: Some(EventFilter::new()) },
        deep,
    ));

    let mut explains = String::new();
    for (case, inputs) in cases {
        // Warm up once.
        let (f0, r0) = &inputs[0];
        let (sql, _) = if case.filter.is_some() {
            (queries::list_query(&access, f0).sql().to_owned(), ())
        } else {
            (queries::counts_per_hour_query(&access, r0).sql().to_owned(), ())
        };
        let mut ours = Vec::new();
        let mut raw = Vec::new();
        let mut server = Vec::new();
        let mut rows = 0;
        for (i, (f, r)) in inputs.iter().enumerate() {
            for pass in 0..2 {
                // Alternate which goes first, so neither always gets the warmer cache.
                let ours_first = (i + pass) % 2 == 0;
                let t = Instant::now();
                if ours_first {
                    if case.filter.is_some() {
                        rows = queries::list(pool, &access, f).await?.events.len();
                    } else {
                        rows = queries::counts_per_hour(pool, &access, r).await?.len();
                    }
                    ours.push(t.elapsed());
                } else {
                    let mut q = if case.filter.is_some() {
                        queries::list_query(&access, f)
                    } else {
                        queries::counts_per_hour_query(&access, r)
                    };
                    // The same SQL text and binds, executed without validation or decoding.
                    let args = {
                        let mut b = q.build();
                        b.take_arguments().unwrap().unwrap_or_default()
                    };
                    let _r = sqlx::query_with(&sql, args).fetch_all(pool).await?;
                    raw.push(t.elapsed());
                }
            }
            let mut q = if case.filter.is_some() {
                queries::list_query(&access, f)
            } else {
                queries::counts_per_hour_query(&access, r)
            };
            let args = {
                let mut b = q.build();
                b.take_arguments().unwrap().unwrap_or_default()
            };
            let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
            let (plan,): (serde_json::Value,) = sqlx::query_as_with(&explain, args).fetch_one(pool).await?;
            server.push(Duration::from_secs_f64(plan[0]["Execution Time"].as_f64().unwrap_or(0.0) / 1000.0));
            if i == 0 {
                let mut q = if case.filter.is_some() {
                    queries::list_query(&access, f)
                } else {
                    queries::counts_per_hour_query(&access, r)
                };
                let args = {
                    let mut b = q.build();
                    b.take_arguments().unwrap().unwrap_or_default()
                };
                let text = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}");
                let lines: Vec<(String,)> = sqlx::query_as_with(&text, args).fetch_all(pool).await?;
                explains.push_str(&format!("\n### {}\n\n```sql\n{sql}\n```\n\n```text\n", case.name));
                for (l,) in lines {
                    explains.push_str(&l);
                    explains.push('\n');
                }
                explains.push_str("```\n");
            }
        }
        let (o50, r50) = (pct(ours.clone(), 0.5), pct(raw.clone(), 0.5));
        println!(
            "| {} | {rows} | {o50:.2} ms | {:.2} ms | {r50:.2} ms | {:.2} ms | {:.2} | {:.2} ms |",
            case.name,
            pct(ours, 0.95),
            pct(raw, 0.95),
            o50 / r50,
            pct(server, 0.5)
        );
    }
    let path = std::env::temp_dir().join("panoptes_events_bench_explain.md");
    std::fs::write(&path, explains)?;
    println!();
    println!("EXPLAIN (ANALYZE, BUFFERS) of the first run of each query: {}", path.display());
    Ok(())
}

async fn writer_rate(pool: &PgPool) -> R<()> {
    println!("## Event writer: sustained insert rate");
    println!();
    let tmp = std::env::temp_dir().join("panoptes_events_bench_spool");
    let _ = std::fs::remove_dir_all(&tmp);
    for (name, total, with_updates) in
        [("track starts only", 200_000usize, false), ("start + end per track", 100_000, true)]
    {
        let cancel = CancellationToken::new();
        let (sink, handle) =
            EventWriter::start(pool.clone(), WriterConfig::new(tmp.join("events.spool")), cancel.clone())
                .await;
        let label = Label::new("person")?;
        let start = Instant::now();
        let mut records = 0u64;
        for i in 0..total {
            let cam = CameraId::new(format!("cam{:03}", i % 100))?;
            let t = t0() + TimeDelta::milliseconds(i as i64 * 10);
            let bbox = BBox { x: 0.1, y: 0.1, w: 0.2, h: 0.2 };
            let e = NewEvent::new(format!("w/{name}/{i}"), cam.clone(), label.clone(), t, 0.7, bbox);
            let mut pending = vec![panoptes_storage::events::Record::Start(e.clone())];
            if with_updates {
                pending.push(panoptes_storage::events::Record::Update(EventUpdate {
                    idempotency_key: e.idempotency_key.clone(),
                    camera: cam,
                    end_time: Some(t + TimeDelta::seconds(3)),
                    sub_label: None,
                    score_max: 0.9,
                    score_median: 0.7,
                    bbox,
                    path: Vec::new(),
                    zones: vec!["door".into()],
                    alert: true,
                    snapshot_path: None,
                }));
            }
            for r in pending {
                // The benchmark waits for room rather than dropping (the real producer drops).
                while sink.send(r.clone()).is_err() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                records += 1;
            }
        }
        let mut rx = handle.watch();
        while rx.borrow_and_update().stats.written < records {
            rx.changed().await?;
        }
        let secs = start.elapsed().as_secs_f64();
        cancel.cancel();
        let status = handle.finished().await;
        println!(
            "- {name}: {records} records in {secs:.1} s = **{:.0} records/s** (dropped {}, spooled {})",
            records as f64 / secs,
            status.stats.dropped,
            status.stats.spooled
        );
    }
    Ok(())
}
