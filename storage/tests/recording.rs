//! Recorder, recovery, retention and export against the machine's PostgreSQL and real
//! H.264 frames (the test clips, split into access units), fed faster than real time with
//! synthetic timestamps; the crash test runs a recorder in a child process and SIGKILLs it.
//!
//! Needs `DATABASE_URL` and the clips (`PANOPTES_CLIPS`, else `$PANOPTES_CACHE/clips`, as
//! `scripts/setup.sh` leaves them), plus
//! `ffprobe`/`ffmpeg` for the file checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use panoptes_core::frame::annex_b_nals;
use panoptes_core::{CameraId, EncodedFrame, Pts90k, VideoCodec};
use panoptes_storage::recorder::{self, RecorderConfig, SegmenterConfig};
use panoptes_storage::retention::{self, CameraLimits, RetentionPolicy};
use panoptes_storage::{PgPool, export};
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn clips_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PANOPTES_CLIPS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("PANOPTES_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/panoptes")
    });
    cache.join("clips")
}

/// Splits an Annex B elementary stream into access units (Annex B, parameter sets kept in
/// front of key frames) and whether each is a key frame (H.264 IDR; H.265 IRAP).
fn access_units_of(path: &Path, codec: VideoCodec) -> Vec<(Bytes, bool)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (set PANOPTES_CLIPS)", path.display()));
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let (mut has_vcl, mut key) = (false, false);
    for nal in annex_b_nals(&data) {
        let (vcl, starts_au, first_slice, is_key) = match codec {
            VideoCodec::H264 => {
                let t = nal[0] & 0x1f;
                let vcl = t == 1 || t == 5;
                (vcl, matches!(t, 6..=9), vcl && nal.get(1).is_some_and(|b| b & 0x80 != 0), t == 5)
            }
            VideoCodec::H265 => {
                let t = (nal[0] >> 1) & 0x3f;
                let vcl = t < 32;
                (
                    vcl,
                    matches!(t, 32..=35 | 39),
                    vcl && nal.get(2).is_some_and(|b| b & 0x80 != 0),
                    (16..=21).contains(&t),
                )
            }
        };
        if has_vcl && (starts_au || first_slice) {
            out.push((Bytes::from(std::mem::take(&mut cur)), key));
            has_vcl = false;
            key = false;
        }
        cur.extend_from_slice(&[0, 0, 0, 1]);
        cur.extend_from_slice(nal);
        has_vcl |= vcl;
        key |= is_key;
    }
    if has_vcl {
        out.push((Bytes::from(cur), key));
    }
    out
}

fn access_units(path: &Path) -> Vec<(Bytes, bool)> {
    access_units_of(path, VideoCodec::H264)
}

/// Frames of the clip looped `n` times at 25 fps from `t0`.
fn frames(
    aus: &[(Bytes, bool)],
    camera: &CameraId,
    n: usize,
    t0: SystemTime,
) -> impl Iterator<Item = Arc<EncodedFrame>> {
    frames_of(aus, VideoCodec::H264, camera, n, t0)
}

fn frames_of(
    aus: &[(Bytes, bool)],
    codec: VideoCodec,
    camera: &CameraId,
    n: usize,
    t0: SystemTime,
) -> impl Iterator<Item = Arc<EncodedFrame>> {
    let camera = camera.clone();
    let aus = aus.to_vec();
    let stream: Arc<str> = Arc::from("main");
    (0..n).map(move |i| {
        let (data, key) = &aus[i % aus.len()];
        Arc::new(EncodedFrame {
            camera: camera.clone(),
            stream: stream.clone(),
            codec,
            pts: Pts90k(i as i64 * 3600),
            rtp_timestamp: i as i64 * 3600,
            received: t0 + Duration::from_millis(40 * i as u64),
            keyframe: *key,
            params_epoch: 0,
            data: data.clone(),
        })
    })
}

/// A whole-millisecond start, so wall times compare exactly through PostgreSQL.
fn start_time() -> SystemTime {
    let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Runs a recorder over `frames` as fast as it takes them; returns when everything is indexed.
async fn record(
    pool: &PgPool,
    dir: &Path,
    camera: &CameraId,
    cfg: SegmenterConfig,
    frames: Vec<Arc<EncodedFrame>>,
) {
    let (tx, rx) = mpsc::channel(recorder::FRAME_QUEUE);
    let (itx, irx) = mpsc::channel(recorder::INDEX_QUEUE);
    let index = tokio::spawn(recorder::run_index(pool.clone(), None, irx, CancellationToken::new()));
    let handle =
        recorder::spawn(camera.clone(), "main", dir, RecorderConfig { segmenter: cfg }, rx, itx).unwrap();
    let feeder = std::thread::spawn(move || {
        for f in frames {
            tx.blocking_send(f).unwrap();
        }
    });
    tokio::task::spawn_blocking(move || {
        feeder.join().unwrap();
        handle.join();
    })
    .await
    .unwrap();
    index.await.unwrap();
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    path: String,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    duration_90k: Option<i64>,
    frames: Option<i64>,
    bytes: Option<i64>,
    sha256: Option<String>,
    state: String,
}

async fn rows(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, path, start_time, end_time, duration_90k, frames, bytes, sha256, state
         FROM recording_segments ORDER BY start_time",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn sha256_file(p: &Path) -> String {
    let d = sha2::Sha256::digest(std::fs::read(p).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn files_on_disk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("recordings")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Every file has exactly one closed row with its size and sha256, and vice versa.
async fn assert_index_matches_disk(pool: &PgPool, dir: &Path) {
    let rows = rows(pool).await;
    let mut paths: Vec<String> = rows.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, files_on_disk(dir), "index and disk list the same files");
    for r in &rows {
        assert_eq!(r.state, "closed", "{}", r.path);
        let p = dir.join(&r.path);
        assert_eq!(r.bytes, Some(std::fs::metadata(&p).unwrap().len() as i64), "{}", r.path);
        assert_eq!(r.sha256.as_deref(), Some(sha256_file(&p).as_str()), "{}", r.path);
    }
}

fn ffprobe_duration(p: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn ffmpeg_decodes_cleanly(p: &Path) {
    let out =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(p).args(["-f", "null", "-"]).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn thirty_five_minutes_fast_then_a_thirty_minute_export(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraId::new("gate").unwrap();
    let aus = access_units(&clips_dir().join("h264-360p.h264"));
    assert_eq!(aus.len(), 600);
    let t0 = start_time();
    let n = 35 * 60 * 25;
    let started = Instant::now();
    record(&pool, dir.path(), &camera, SegmenterConfig::default(), frames(&aus, &camera, n, t0).collect())
        .await;
    println!("recorded 35 min of 360p in {:?}", started.elapsed());

    let rows = rows(&pool).await;
    assert_eq!(rows.len(), 35, "60 s segments");
    let t0c: DateTime<Utc> = t0.into();
    assert_eq!(rows[0].start_time, t0c);
    for w in rows.windows(2) {
        assert_eq!(w[0].end_time, Some(w[1].start_time), "contiguous, no overlap");
    }
    assert!(rows.iter().all(|r| r.duration_90k == Some(60 * 90_000) && r.frames == Some(1500)));
    assert_eq!(rows.iter().map(|r| r.frames.unwrap()).sum::<i64>(), n as i64);
    assert_index_matches_disk(&pool, dir.path()).await;
    let first = dir.path().join(&rows[0].path);
    assert!((ffprobe_duration(&first) - 60.0).abs() < 0.05);
    ffmpeg_decodes_cleanly(&first);
    let gaps: (i64,) = sqlx::query_as("SELECT count(*) FROM recording_gaps").fetch_one(&pool).await.unwrap();
    assert_eq!(gaps.0, 0);

    // 30 minutes from 2:00.5: starts at the key frame at 2:00.0, ends after the frame at 32:00.48.
    let start = t0c + chrono::Duration::milliseconds(120_500);
    let end = start + chrono::Duration::minutes(30);
    let started = Instant::now();
    let r = export::export_clip(&pool, dir.path(), &camera, "main", start, end, "tester").await.unwrap();
    println!("exported 30 min in {:?}", started.elapsed());
    let m = &r.manifest;
    assert_eq!(m.sha256, sha256_file(&r.path));
    assert_eq!(
        m.actual.start,
        (t0c + chrono::Duration::seconds(120)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(
        m.actual.end,
        (t0c + chrono::Duration::milliseconds(1_920_520))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(m.frames, 45_013);
    assert_eq!(m.segments.len(), 31);
    assert!(m.gaps.is_empty());
    assert_eq!(m.exported_by, "tester");
    let d = ffprobe_duration(&r.path);
    assert!((d - 1800.52).abs() < 0.05, "ffprobe duration {d}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&r.manifest_path).unwrap()).unwrap();
    assert_eq!(json["sha256"], m.sha256.as_str());
    assert_eq!(json["segments"][0]["sha256"], rows[2].sha256.as_deref().unwrap());
    if let Some(result) = chromium_plays(&r.path) {
        println!("chromium: {result}");
        assert!(result.starts_with("playing 640x360") && result.ends_with("d=1800.52"), "{result}");
    }
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn h265_with_open_gops_records_and_decodes(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraId::new("lane").unwrap();
    let aus = access_units_of(&clips_dir().join("h265-720p.h265"), VideoCodec::H265);
    assert_eq!(aus.len(), 600);
    let cfg = SegmenterConfig { segment: 10 * 90_000, ..SegmenterConfig::default() };
    let f: Vec<_> = frames_of(&aus, VideoCodec::H265, &camera, 600, start_time()).collect();
    record(&pool, dir.path(), &camera, cfg, f).await;
    let rows = rows(&pool).await;
    assert_eq!(rows.len(), 3);
    assert_index_matches_disk(&pool, dir.path()).await;
    for r in &rows {
        let p = dir.path().join(&r.path);
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hevc,1280,720");
        ffmpeg_decodes_cleanly(&p);
    }
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn retention_keeps_under_quota_and_never_drops_what_an_unreviewed_alert_needs(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraId::new("yard").unwrap();
    let aus = access_units(&clips_dir().join("h264-360p.h264"));
    let t0 = start_time();
    let cfg = SegmenterConfig { segment: 10 * 90_000, ..SegmenterConfig::default() };
    record(&pool, dir.path(), &camera, cfg, frames(&aus, &camera, 5 * 60 * 25, t0).collect()).await;
    let all = rows(&pool).await;
    assert_eq!(all.len(), 30);
    let total: i64 = all.iter().map(|r| r.bytes.unwrap()).sum();
    // Alerts in the real events schema (cameras first: events reference them).
    for cam in ["yard", "other"] {
        sqlx::query("INSERT INTO cameras (id, name, enabled) VALUES ($1, $1, true) ON CONFLICT DO NOTHING")
            .bind(cam)
            .execute(&pool)
            .await
            .unwrap();
    }
    let at = |i: usize, s: i64| all[i].start_time + chrono::Duration::seconds(s);
    // An unreviewed alert across segments 2–3, a reviewed one in 5, a hold on 7, another camera's alert on 9.
    for (n, (cam, s, e, state)) in [
        ("yard", at(2, 5), at(3, 2), "new"),
        ("yard", at(5, 1), at(5, 3), "acknowledged"),
        ("other", at(9, 1), at(9, 2), "new"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO events (id, idempotency_key, camera_id, label, score_max, score_median, bbox,
                                 start_time, end_time, review_state, reviewed_at)
             VALUES (gen_random_uuid(), $1, $2, 'car', 0.9, 0.8, '{0.1,0.1,0.2,0.2}', $3, $4, $5,
                     CASE WHEN $5 = 'new' THEN NULL ELSE now() END)",
        )
        .bind(format!("alert-{n}"))
        .bind(cam)
        .bind(s)
        .bind(e)
        .bind(state)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO legal_holds (camera_id, start_time, end_time, reason, created_by) VALUES ('yard', $1, $2, 'case 7', 'tester')")
        .bind(at(7, 0))
        .bind(at(7, 10))
        .execute(&pool)
        .await
        .unwrap();
    let quota = (total / 4) as u64;
    let policy = RetentionPolicy {
        cameras: [(
            "yard".to_owned(),
            CameraLimits { max_bytes: Some(quota), max_age: Some(chrono::Duration::days(30)) },
        )]
        .into(),
        default: CameraLimits::default(),
        free_floor: 0,
    };
    let report = retention::run_once(&pool, dir.path(), &policy, Utc::now()).await.unwrap();
    assert!(report.deleted > 0 && report.overrode_protection == 0);
    let left = rows(&pool).await;
    let used: i64 = left.iter().map(|r| r.bytes.unwrap()).sum();
    assert!(used as u64 <= quota, "{used} > {quota}");
    let kept: Vec<i64> = left.iter().map(|r| r.id).collect();
    for i in [2, 3, 7] {
        assert!(kept.contains(&all[i].id), "segment {i} is protected");
    }
    for i in [0, 1, 4, 5, 6, 8, 9] {
        assert!(!kept.contains(&all[i].id), "segment {i} is not protected and oldest");
    }
    assert_index_matches_disk(&pool, dir.path()).await;

    // A deletion cut short by a crash (row marked, file still there) is finished at start.
    let victim = &left[left.len() - 1];
    sqlx::query("UPDATE recording_segments SET state = 'deleting' WHERE id = $1")
        .bind(victim.id)
        .execute(&pool)
        .await
        .unwrap();
    let rep = recorder::recover(&pool, dir.path(), None).await.unwrap();
    assert_eq!(rep.finished_deletions, 1);
    assert!(!dir.path().join(&victim.path).exists());
    assert_index_matches_disk(&pool, dir.path()).await;

    // The disk floor overrides protection, and only it.
    assert!(retention::free_bytes(dir.path()).unwrap() > 0);
    let policy = RetentionPolicy { free_floor: u64::MAX / 2, ..RetentionPolicy::default() };
    let report = retention::run_once(&pool, dir.path(), &policy, Utc::now()).await.unwrap();
    assert_eq!(report.deleted, left.len() - 1, "everything goes when the floor cannot be met");
    assert!(report.overrode_protection >= 3);
    assert!(report.plan.floor_shortfall > 0);
    assert_index_matches_disk(&pool, dir.path()).await;
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn recovery_cuts_a_torn_fragment_and_indexes_orphans(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraId::new("door").unwrap();
    let aus = access_units(&clips_dir().join("h264-360p.h264"));
    let cfg = SegmenterConfig { segment: 10 * 90_000, ..SegmenterConfig::default() };
    record(&pool, dir.path(), &camera, cfg, frames(&aus, &camera, 30 * 25, start_time()).collect()).await;
    let before = rows(&pool).await;
    assert_eq!(before.len(), 3);
    // Segment 0: torn mid-fragment, row back to open. Segment 1: row lost.
    let torn = dir.path().join(&before[0].path);
    let len = std::fs::metadata(&torn).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&torn).unwrap().set_len(len - 1000).unwrap();
    sqlx::query("UPDATE recording_segments SET state = 'open', end_time = NULL WHERE id = $1")
        .bind(before[0].id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM recording_segments WHERE id = $1")
        .bind(before[1].id)
        .execute(&pool)
        .await
        .unwrap();
    // A file with only its header (a crash right after opening) goes away.
    let empty = dir.path().join("recordings/door/2020-01-01/00/main-20200101T000000.000Z.mp4");
    std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
    std::fs::write(&empty, &std::fs::read(&torn).unwrap()[..700]).unwrap();

    let rep = recorder::recover(&pool, dir.path(), None).await.unwrap();
    assert_eq!(
        (rep.closed_open_rows, rep.indexed_orphans, rep.truncated, rep.removed),
        (1, 1, 1, 1),
        "{rep:?}"
    );
    assert_index_matches_disk(&pool, dir.path()).await;
    let after = rows(&pool).await;
    assert_eq!(after.len(), 3);
    // The torn segment lost its last fragment (1 s) only.
    let lost = before[0].duration_90k.unwrap() - after[0].duration_90k.unwrap();
    assert!(lost > 0 && lost <= 90_000, "lost {lost} ticks");
    assert_eq!(after[1].sha256, before[1].sha256, "the orphan is indexed as it was");
    assert_eq!(after[1].frames, before[1].frames);
    ffmpeg_decodes_cleanly(&torn);
}

/// Child side of the crash test: records the clip in real time until killed.
#[tokio::test]
#[ignore = "run by sigkill_mid_segment_leaves_a_playable_file_and_a_matching_index"]
async fn crash_child() {
    let Ok(dir) = std::env::var("REC_CHILD_DIR") else {
        return;
    };
    let url = std::env::var("REC_CHILD_DB").unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let camera = CameraId::new("porch").unwrap();
    let aus = access_units(&clips_dir().join("h264-360p.h264"));
    let (tx, rx) = mpsc::channel(recorder::FRAME_QUEUE);
    let (itx, irx) = mpsc::channel(recorder::INDEX_QUEUE);
    tokio::spawn(recorder::run_index(pool.clone(), None, irx, CancellationToken::new()));
    let cfg = SegmenterConfig { segment: 4 * 90_000, ..SegmenterConfig::default() };
    let _h =
        recorder::spawn(camera.clone(), "main", Path::new(&dir), RecorderConfig { segmenter: cfg }, rx, itx)
            .unwrap();
    let t0 = start_time();
    let begun = Instant::now();
    for (i, f) in frames(&aus, &camera, 1 << 20, t0).enumerate() {
        let due = Duration::from_millis(40 * i as u64);
        if let Some(wait) = due.checked_sub(begun.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        tx.send(f).await.unwrap();
    }
}

#[sqlx::test(migrator = "panoptes_storage::MIGRATOR")]
async fn sigkill_mid_segment_leaves_a_playable_file_and_a_matching_index(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let (db,): (String,) = sqlx::query_as("SELECT current_database()").fetch_one(&pool).await.unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env("REC_CHILD_DIR", dir.path())
        .env("REC_CHILD_DB", &url)
        .spawn()
        .unwrap();
    // 4 s segments: after 10.5 s two are closed and the third is half written.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    child.wait().unwrap();

    let before = rows(&pool).await;
    assert!(before.iter().any(|r| r.state == "open"), "a segment was open at the kill: {before:?}");
    let open = before.iter().find(|r| r.state == "open").unwrap();
    let path = dir.path().join(&open.path);
    // What ffprobe makes of the file as the crash left it.
    let crashed = ffprobe_duration(&path);
    println!(
        "file left by SIGKILL: {} bytes, ffprobe duration {crashed}",
        std::fs::metadata(&path).unwrap().len()
    );

    let rep = recorder::recover(&pool, dir.path(), None).await.unwrap();
    assert_eq!(rep.closed_open_rows, 1, "{rep:?}");
    assert_index_matches_disk(&pool, dir.path()).await;
    let after = rows(&pool).await;
    let recovered = after.iter().find(|r| r.path == open.path).unwrap();
    let secs = recovered.duration_90k.unwrap() as f64 / 90_000.0;
    assert!(secs > 0.5, "kept {secs} s of the open segment");
    assert!((ffprobe_duration(&path) - secs).abs() < 0.05);
    ffmpeg_decodes_cleanly(&path);
    for r in &after {
        ffmpeg_decodes_cleanly(&dir.path().join(&r.path));
    }
    if let Some(keep) = std::env::var_os("REC_KEEP_CRASHED") {
        std::fs::copy(&path, keep).unwrap();
    }
    // Chromium plays the recovered file to its end.
    match chromium_plays(&path) {
        None => println!("chromium not installed: browser check skipped"),
        Some(result) => {
            println!("chromium: {result}");
            assert!(result.starts_with("playing 640x360"), "{result}");
            let end: f64 = result.rsplit("d=").next().unwrap().parse().unwrap();
            assert!((end - secs).abs() < 0.05, "{result}");
        }
    }
}

/// Loads `mp4` in a `<video>` in headless Chromium and reports what the page saw:
/// `playing WxH t=… d=…` once it played past 0.5 s, or `error N`. `None` without Chromium.
fn chromium_plays(mp4: &Path) -> Option<String> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return None;
    }
    let page = tempfile::tempdir().unwrap();
    std::fs::copy(mp4, page.path().join("clip.mp4")).unwrap();
    std::fs::write(
        page.path().join("index.html"),
        r#"<!doctype html><html><body><div id="out">pending</div>
<video id="v" src="clip.mp4" muted autoplay playsinline></video>
<script>
const v = document.getElementById('v'), out = document.getElementById('out');
v.addEventListener('error', () => out.textContent = 'error ' + (v.error && v.error.code));
v.addEventListener('timeupdate', () => { if (v.currentTime > 0.5) out.textContent =
  'playing ' + v.videoWidth + 'x' + v.videoHeight + ' t=' + v.currentTime.toFixed(2) + ' d=' + v.duration.toFixed(2); });
</script></body></html>"#,
    )
    .unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-file-access-from-files",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.path().join("index.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find(r#"<div id="out">"#)? + r#"<div id="out">"#.len();
    Some(dom[start..].split('<').next().unwrap_or("").to_owned())
}

/// CPU time of this process (user + system).
fn cpu_time() -> Duration {
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(r.user_time()) + tv(r.system_time())
}

/// Benchmark (docs/BENCHMARKS.md, "Storage: recorder"): the 1080p clip through one
/// recorder, (1) 10 minutes of media as fast as it goes, (2) 20 s in real time; prints CPU
/// per media second and bytes written against the stream's bytes. No database: index
/// messages are drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release -p panoptes-storage --test recording bench -- --ignored --nocapture"]
async fn bench_recorder_1080p() {
    let aus = access_units(&clips_dir().join("h264-1080p.h264"));
    let camera = CameraId::new("bench").unwrap();
    for (label, minutes, real_time) in [("fast", 10.0, false), ("real time", 20.0 / 60.0, true)] {
        let dir = tempfile::tempdir().unwrap();
        let n = (minutes * 60.0 * 25.0) as usize;
        let input: u64 = (0..n).map(|i| aus[i % aus.len()].0.len() as u64).sum();
        let (tx, rx) = mpsc::channel(recorder::FRAME_QUEUE);
        let (itx, mut irx) = mpsc::channel(recorder::INDEX_QUEUE);
        let drain = tokio::spawn(async move { while irx.recv().await.is_some() {} });
        let handle =
            recorder::spawn(camera.clone(), "main", dir.path(), RecorderConfig::default(), rx, itx).unwrap();
        let frames: Vec<_> = frames(&aus, &camera, n, start_time()).collect();
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        tokio::task::spawn_blocking(move || {
            for (i, f) in frames.into_iter().enumerate() {
                if real_time {
                    let due = Duration::from_millis(40 * i as u64);
                    if let Some(w) = due.checked_sub(wall0.elapsed()) {
                        std::thread::sleep(w);
                    }
                }
                tx.blocking_send(f).unwrap();
            }
            drop(tx);
            handle.join();
        })
        .await
        .unwrap();
        drain.await.unwrap();
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        let written: u64 = files_on_disk(dir.path())
            .iter()
            .map(|p| std::fs::metadata(dir.path().join(p)).unwrap().len())
            .sum();
        let media = n as f64 / 25.0;
        println!(
            "{label}: {media:.0} s of 1080p in {wall:.2?}, CPU {cpu:.3?} = {:.3} % of a core per stream; \
             stream {:.0} kbit/s, written {:.0} kbit/s ({:+.2} %)",
            100.0 * cpu.as_secs_f64() / media,
            input as f64 * 8.0 / media / 1000.0,
            written as f64 * 8.0 / media / 1000.0,
            100.0 * (written as f64 / input as f64 - 1.0),
        );
    }
}
