//! Making the index match the disk at start, after a crash: segment files without a row,
//! rows still `open`, and deletions left half done.
//!
//! A segment is checked box by box ([`scan`]): `ftyp`, `moov`, then `moof`+`mdat` pairs.
//! Whatever follows the last complete pair (a torn fragment) is cut off; a file without a
//! complete fragment is removed. Duration, frames, bytes and sha256 come from what remains.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::{info, warn};

use super::mp4::{self, SampleInfo, TrackConfig};
use super::{RecorderError, codec_name, hex, io_err, parse_segment_path};

/// What a segment file holds, up to its last complete fragment.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// The track's configurations (the first is used).
    pub track: TrackConfig,
    /// Every sample with the absolute file offset of its data.
    pub samples: Vec<(SampleInfo, u64)>,
    /// Bytes up to the end of the last complete fragment.
    pub valid_len: u64,
    /// The file's length.
    pub file_len: u64,
}

impl SegmentScan {
    /// Media duration, 90 kHz.
    pub fn duration_90k(&self) -> i64 {
        self.samples.iter().map(|(s, _)| i64::from(s.duration)).sum()
    }
}

fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Largest `moov`/`moof` we are willing to read.
const MAX_META_BOX: u64 = 16 << 20;

/// Reads a segment's structure without loading sample data.
pub fn scan(path: &Path) -> Result<SegmentScan, RecorderError> {
    let seg_err = |m: &str| RecorderError::Segment {
        path: path.to_owned(),
        source: mp4::Mp4Error::Malformed(m.into()),
    };
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let file_len = file.metadata().map_err(io_err("reading", path))?.len();
    let header = |file: &mut File, at: u64| -> Option<mp4::BoxHeader> {
        let n = (file_len.saturating_sub(at)).min(16) as usize;
        let b = read_at(file, at, n).ok()?;
        mp4::box_header(&b, at).filter(|h| at + h.size <= file_len)
    };
    let ftyp =
        header(&mut file, 0).filter(|h| &h.kind == b"ftyp").ok_or_else(|| seg_err("no complete ftyp"))?;
    let moov = header(&mut file, ftyp.size).filter(|h| &h.kind == b"moov" && h.size <= MAX_META_BOX);
    let moov = moov.ok_or_else(|| seg_err("no complete moov"))?;
    let body = read_at(&mut file, moov.offset + moov.header, (moov.size - moov.header) as usize)
        .map_err(io_err("reading", path))?;
    let track = mp4::moov_sample_entries(&body)
        .map_err(|source| RecorderError::Segment { path: path.to_owned(), source })?
        .swap_remove(0);
    let mut at = moov.offset + moov.size;
    let mut samples = Vec::new();
    while let Some(moof) = header(&mut file, at).filter(|h| &h.kind == b"moof" && h.size <= MAX_META_BOX) {
        let Some(mdat) = header(&mut file, at + moof.size).filter(|h| &h.kind == b"mdat") else {
            break;
        };
        let Ok(body) = read_at(&mut file, at + moof.header, (moof.size - moof.header) as usize) else {
            break;
        };
        let Ok((_, frag, data_offset)) = mp4::moof_samples(&body) else {
            break;
        };
        let total: u64 = frag.iter().map(|s| u64::from(s.size)).sum();
        if data_offset != moof.size + mdat.header || total != mdat.size - mdat.header {
            break;
        }
        let mut offset = at + data_offset;
        for s in frag {
            samples.push((s, offset));
            offset += u64::from(s.size);
        }
        at = mdat.offset + mdat.size;
    }
    Ok(SegmentScan { track, samples, valid_len: at, file_len })
}

/// sha256 of the first `len` bytes of a file.
pub fn sha256_prefix(path: &Path, len: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Rows left `open` by a crash, now closed.
    pub closed_open_rows: usize,
    /// Files without a row, now indexed.
    pub indexed_orphans: usize,
    /// Files whose torn last fragment was cut off.
    pub truncated: usize,
    /// Files (and rows) removed because nothing usable was in them.
    pub removed: usize,
    /// Rows removed because their file is gone.
    pub missing_files: usize,
    /// Deletions finished (rows `deleting`).
    pub finished_deletions: usize,
}

/// The result of checking one file: its index values, or `None` if it was removed.
struct Checked {
    end: DateTime<Utc>,
    duration_90k: i64,
    frames: i64,
    bytes: i64,
    sha256: String,
    codec: &'static str,
    width: i32,
    height: i32,
}

/// Scans, truncates a torn tail, or removes a useless file. Blocking.
fn check_file(
    abs: &Path,
    start: DateTime<Utc>,
    report: &mut RecoveryReport,
) -> Result<Option<Checked>, RecorderError> {
    let scan = match scan(abs) {
        Ok(s) if !s.samples.is_empty() => s,
        Ok(_) | Err(RecorderError::Segment { .. }) => {
            warn!(path = %abs.display(), "segment has no complete fragment; removed");
            std::fs::remove_file(abs).map_err(io_err("removing", abs))?;
            report.removed += 1;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if scan.valid_len < scan.file_len {
        warn!(path = %abs.display(), kept = scan.valid_len, cut = scan.file_len - scan.valid_len,
              "cutting a torn last fragment");
        let f = File::options().write(true).open(abs).map_err(io_err("opening", abs))?;
        f.set_len(scan.valid_len).map_err(io_err("truncating", abs))?;
        f.sync_all().map_err(io_err("syncing", abs))?;
        report.truncated += 1;
    }
    let duration_90k = scan.duration_90k();
    let sha256 = sha256_prefix(abs, scan.valid_len).map_err(io_err("hashing", abs))?;
    Ok(Some(Checked {
        end: start + chrono::Duration::microseconds(duration_90k * 100 / 9),
        duration_90k,
        frames: scan.samples.len() as i64,
        bytes: scan.valid_len as i64,
        sha256,
        codec: codec_name(scan.track.codec),
        width: i32::from(scan.track.width),
        height: i32::from(scan.track.height),
    }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecorderError> + Send + 'static,
) -> Result<T, RecorderError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| RecorderError::Join(e.to_string()))?
}

/// Lists every `*.mp4` under `<data_dir>/recordings`, relative to `data_dir`. Blocking.
fn list_segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data_dir.join("recordings")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "mp4") => {
                    if let Ok(rel) = p.strip_prefix(data_dir) {
                        out.push(rel.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Makes the index match the disk. Run it at start, before any recorder of this node
/// starts writing: it treats every `open` row of this node (`node`, the same value given
/// to [`super::run_index`]) as left over from a crash, and every unindexed file under
/// `<data_dir>/recordings` as written by this node.
pub async fn recover(
    pool: &PgPool,
    data_dir: &Path,
    node: Option<&str>,
) -> Result<RecoveryReport, RecorderError> {
    let mut report = RecoveryReport {
        finished_deletions: crate::retention::finish_deletions(pool, data_dir).await?,
        ..RecoveryReport::default()
    };

    // Rows left open.
    let open: Vec<(i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, path, start_time FROM recording_segments
         WHERE state = 'open' AND node_id IS NOT DISTINCT FROM $1 ORDER BY id",
    )
    .bind(node)
    .fetch_all(pool)
    .await?;
    for (id, rel, start) in open {
        let abs = data_dir.join(&rel);
        if !abs.exists() {
            warn!(path = %rel, "open segment row without a file; removed");
            sqlx::query("DELETE FROM recording_segments WHERE id = $1").bind(id).execute(pool).await?;
            report.missing_files += 1;
            continue;
        }
        let mut r = RecoveryReport::default();
        let checked = blocking(move || check_file(&abs, start, &mut r).map(|c| (c, r))).await?;
        report.truncated += checked.1.truncated;
        report.removed += checked.1.removed;
        match checked.0 {
            None => {
                sqlx::query("DELETE FROM recording_segments WHERE id = $1").bind(id).execute(pool).await?;
            }
            Some(c) => {
                sqlx::query(
                    "UPDATE recording_segments SET state = 'closed', end_time = $2, duration_90k = $3, frames = $4,
                            bytes = $5, sha256 = $6, close_reason = 'recovered' WHERE id = $1",
                )
                .bind(id)
                .bind(c.end)
                .bind(c.duration_90k)
                .bind(c.frames)
                .bind(c.bytes)
                .bind(&c.sha256)
                .execute(pool)
                .await?;
                report.closed_open_rows += 1;
            }
        }
    }

    // Files without rows.
    let dir = data_dir.to_owned();
    let files = blocking(move || Ok(list_segment_files(&dir))).await?;
    let names: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let mut known: HashSet<String> = HashSet::new();
    for chunk in names.chunks(10_000) {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT path FROM recording_segments WHERE path = ANY($1)")
            .bind(chunk)
            .fetch_all(pool)
            .await?;
        known.extend(rows.into_iter().map(|(p,)| p));
    }
    for rel in files {
        let name = rel.to_string_lossy().into_owned();
        if known.contains(&name) {
            continue;
        }
        let Some((camera, stream, start)) = parse_segment_path(&rel) else {
            warn!(path = %name, "file under recordings/ is not named like a segment; left alone");
            continue;
        };
        let abs = data_dir.join(&rel);
        let mut r = RecoveryReport::default();
        let checked = blocking(move || check_file(&abs, start, &mut r).map(|c| (c, r))).await?;
        report.truncated += checked.1.truncated;
        report.removed += checked.1.removed;
        let Some(c) = checked.0 else {
            continue;
        };
        sqlx::query(
            "INSERT INTO recording_segments (node_id, camera_id, stream, start_time, end_time, duration_90k, frames,
                    path, bytes, sha256, codec, width, height, state, close_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'closed', 'recovered')
             ON CONFLICT (path) DO NOTHING",
        )
        .bind(node)
        .bind(camera.as_str())
        .bind(&stream)
        .bind(start)
        .bind(c.end)
        .bind(c.duration_90k)
        .bind(c.frames)
        .bind(&name)
        .bind(c.bytes)
        .bind(&c.sha256)
        .bind(c.codec)
        .bind(c.width)
        .bind(c.height)
        .execute(pool)
        .await?;
        report.indexed_orphans += 1;
    }
    info!(?report, "recordings recovered");
    Ok(report)
}
