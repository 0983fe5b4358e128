//! Recording through the whole chain: GStreamer camera → gateway → recorder → files and
//! index, including a SIGKILL in the middle of a segment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

fn ffprobe_ok(path: &std::path::Path) -> Result<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !text.is_empty() {
        Ok(text)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into())
    }
}

fn segment_rows(db: &TestDatabase) -> Vec<(String, i64, String)> {
    db.rows3("SELECT path, bytes, sha256 FROM recording_segments WHERE state = 'closed' ORDER BY start_time")
}

#[test]
fn records_segments_survives_sigkill_and_the_index_matches_disk() {
    let camera = Camera::start();
    let dir = scratch_dir();
    let db = TestDatabase::create();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        data_dir = "{{data_dir}}"
        [retention]
        min_free_gb = 0
        [[cameras]]
        id = "dock"
        [[cameras.streams]]
        url = "{}"
        roles = ["record"]
        "#,
        camera.url("h264-360p")
    );
    let env: &[(&str, &str)] = &[("PANOPTES_DATABASE_URL", &db.url)];
    let recordings = dir.path().join("data/recordings/dock");
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));

    // Files appear and grow fragment by fragment (about one per second).
    let mp4s = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> =
            walk(&recordings).into_iter().filter(|f| f.extension().is_some_and(|e| e == "mp4")).collect();
        v.sort();
        v
    };
    let first = wait_for(Duration::from_secs(20), "a segment file", || mp4s().into_iter().next());
    let size0 = std::fs::metadata(&first).map(|m| m.len()).unwrap_or(0);
    wait_for(Duration::from_secs(10), "the segment to grow", || {
        (std::fs::metadata(&first).map(|m| m.len()).unwrap_or(0) > size0 + 10_000).then_some(())
    });

    // Graceful stop: the open segment is closed and indexed with its size and sha256.
    assert!(p.stop(Duration::from_secs(30)).success(), "{}", p.log_text());
    let rows = segment_rows(&db);
    assert_eq!(rows.len(), 1, "{rows:?}");
    check_rows_match_disk(&rows, &dir.path().join("data"));

    // SIGKILL mid-segment, then restart: the torn file is readable and indexed.
    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));
    let second = wait_for(Duration::from_secs(20), "a second segment file", || mp4s().get(1).cloned());
    let len = |f: &std::path::Path| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let size0 = len(&second);
    // A couple of fragments on disk, then no chance to close the segment.
    wait_for(Duration::from_secs(10), "fragments of the second segment", || {
        (len(&second) > size0 + 20_000).then_some(())
    });
    p.kill();
    let killed = mp4s().pop().unwrap();
    assert!(ffprobe_ok(&killed).unwrap_or_default().starts_with("h264,640,360"), "{:?}", ffprobe_ok(&killed));

    let mut p = Panoptes::start(dir.path(), &config, env);
    p.wait_ready(Duration::from_secs(60));
    check_playback_api(&p, &db, env, &dir.path().join("panoptes.toml"));
    assert!(p.stop(Duration::from_secs(30)).success());
    let rows = segment_rows(&db);
    assert!(rows.len() >= 3, "{rows:?}");
    check_rows_match_disk(&rows, &dir.path().join("data"));
    let files = mp4s();
    assert_eq!(files.len(), rows.len(), "every file indexed, every row a file: {files:?} vs {rows:?}");
    for f in files {
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&f)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&decode.stderr)
        );
    }
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

fn check_rows_match_disk(rows: &[(String, i64, String)], data_dir: &std::path::Path) {
    for (path, bytes, sha) in rows {
        let file = data_dir.join(path);
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(data.len() as i64, *bytes, "{path}");
        assert_eq!(&format!("{:x}", Sha256::digest(&data)), sha, "{path}");
    }
}

/// Lists the recordings over the API, fetches a byte range of one, and exports a clip.
fn check_playback_api(p: &Panoptes, db: &TestDatabase, env: Env<'_>, cfg: &std::path::Path) {
    let (client, csrf) = user_session(p, env, cfg, "ops", "operator", &["dock"]);
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let segs: serde_json::Value = client
        .get(p.url(&format!("/api/recordings?camera=dock&from={from}&to={to}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let segs = segs.as_array().unwrap_or_else(|| panic!("{segs}"));
    assert!(!segs.is_empty());
    // The same recordings as spans: contiguous segments merge into one.
    let spans: serde_json::Value = client
        .get(p.url(&format!("/api/recordings/spans?cameras=dock&from={from}&to={to}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let spans = spans.as_array().unwrap_or_else(|| panic!("{spans}"));
    assert!(!spans.is_empty() && spans.len() <= segs.len(), "{spans:?}");
    assert_eq!(spans[0]["start_time"], segs[0]["start_time"]);
    let url = segs[0]["url"].as_str().unwrap();
    let part = client.get(p.url(url)).header("Range", "bytes=0-99").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-type"], "video/mp4");
    assert_eq!(part.bytes().unwrap().len(), 100);

    let start = segs[0]["start_time"].as_str().unwrap();
    let end = segs.last().unwrap()["end_time"].as_str().unwrap();
    let export = client
        .post(p.url("/api/exports"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"camera": "dock", "stream": "main", "from": start, "to": end}))
        .send()
        .unwrap();
    assert_eq!(export.status(), 201);
    let manifest: serde_json::Value = export.json().unwrap();
    assert!(manifest.to_string().contains("sha256"), "{manifest}");
    assert!(manifest.to_string().contains("\"ops\""), "who exported: {manifest}");
    // The export names its audit entry, in the response and in the manifest file.
    let audit_id = manifest["audit"]["id"].as_i64().unwrap_or_else(|| panic!("no audit entry: {manifest}"));
    let logged =
        db.query_i64(&format!("SELECT count(*) FROM audit_log WHERE id = {audit_id} AND action = 'export'"));
    assert_eq!(logged, 1);
    let saved: serde_json::Value =
        client.get(p.url(manifest["manifest"].as_str().unwrap())).send().unwrap().json().unwrap();
    assert_eq!(saved["audit"]["hash"], manifest["audit"]["hash"]);
    // The clip downloads whole, and its bytes match the manifest's sha256.
    let clip = client.get(p.url(manifest["download"].as_str().unwrap())).send().unwrap();
    assert_eq!(clip.status(), 200);
    let bytes = clip.bytes().unwrap();
    assert_eq!(bytes.len() as u64, manifest["bytes"].as_u64().unwrap());
    use sha2::Digest;
    let sum: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sum, manifest["sha256"].as_str().unwrap());
    assert_eq!(client.get(p.url("/api/exports/..%2Fpanoptes.toml")).send().unwrap().status(), 404);
}
