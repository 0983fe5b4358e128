//! Clip export: a time range of a camera stream as one progressive MP4, remuxed from the
//! recorded segments without transcoding, with a JSON manifest beside it.
//!
//! Trimming is to key frames: the clip starts at the key frame at or before the requested
//! start (or the first key frame after it, if the recording starts later) and ends with the
//! last frame that starts before the requested end. Gaps between segments are not filled:
//! the clip plays the recorded parts back to back and the manifest lists the gaps.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use panoptes_core::CameraId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::info;

use crate::recorder::index::{SegmentRow, segments_between};
use crate::recorder::mp4::{self, SampleInfo};
use crate::recorder::recovery::{SegmentScan, scan};
use crate::recorder::{RecorderError, codec_name, hex};

/// The longest range one export may cover.
pub const MAX_EXPORT: Duration = Duration::hours(24);
/// A jump between segments longer than this is listed as a gap.
const GAP_TOLERANCE_MS: i64 = 1000;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The range is empty, reversed or too long.
    #[error("invalid range {start} .. {end}: {why}")]
    InvalidRange {
        /// Requested start.
        start: DateTime<Utc>,
        /// Requested end.
        end: DateTime<Utc>,
        /// What is wrong.
        why: &'static str,
    },
    /// Nothing was recorded in the range.
    #[error("no recording of {camera}/{stream} between {start} and {end}")]
    NoRecording {
        /// Camera.
        camera: String,
        /// Stream.
        stream: String,
        /// Requested start.
        start: DateTime<Utc>,
        /// Requested end.
        end: DateTime<Utc>,
    },
    /// Reading segments or writing the clip failed.
    #[error(transparent)]
    Recording(#[from] RecorderError),
    /// The index could not be queried.
    #[error("recording index: {0}")]
    Db(#[from] sqlx::Error),
}

/// A time range in the manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Range {
    /// Start (RFC 3339, UTC).
    pub start: String,
    /// End (RFC 3339, UTC).
    pub end: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn range(start: DateTime<Utc>, end: DateTime<Utc>) -> Range {
    Range { start: rfc3339(start), end: rfc3339(end) }
}

/// A segment the clip was cut from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestSegment {
    /// Path relative to the data directory.
    pub path: String,
    /// The segment's sha256 as indexed.
    pub sha256: String,
    /// The segment's range.
    pub range: Range,
    /// Frames taken from it.
    pub frames: usize,
}

/// The manifest written beside the clip.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExportManifest {
    /// Format version.
    pub version: u32,
    /// Clip file name (in the same directory as the manifest).
    pub clip: String,
    /// sha256 of the clip file.
    pub sha256: String,
    /// Clip size.
    pub bytes: u64,
    /// Camera id.
    pub camera: String,
    /// Stream name.
    pub stream: String,
    /// `h264` / `h265`.
    pub codec: String,
    /// What was asked for.
    pub requested: Range,
    /// What the clip covers (key-frame start, last frame's end).
    pub actual: Range,
    /// Media duration of the clip in seconds.
    pub duration_seconds: f64,
    /// Frames in the clip.
    pub frames: usize,
    /// Source segments, in order.
    pub segments: Vec<ManifestSegment>,
    /// Unrecorded ranges inside the clip's span (not filled: the clip plays on).
    pub gaps: Vec<Range>,
    /// Who asked.
    pub exported_by: String,
    /// When.
    pub exported_at: String,
    /// How the range was trimmed.
    pub trim: &'static str,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct ExportResult {
    /// The clip.
    pub path: PathBuf,
    /// The manifest JSON.
    pub manifest_path: PathBuf,
    /// The manifest.
    pub manifest: ExportManifest,
}

struct Source {
    row: SegmentRow,
    scan: SegmentScan,
}

/// One chosen sample: source index, sample, offset in the source, wall time.
struct Chosen {
    source: usize,
    sample: SampleInfo,
    offset: u64,
    at: DateTime<Utc>,
}

fn ticks(d: i64) -> Duration {
    Duration::microseconds(d * 100 / 9)
}

/// Exports `[start, end)` of a camera stream into `<data_dir>/exports/`.
pub async fn export_clip(
    pool: &PgPool,
    data_dir: &Path,
    camera: &CameraId,
    stream: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    requested_by: &str,
) -> Result<ExportResult, ExportError> {
    if end <= start {
        return Err(ExportError::InvalidRange { start, end, why: "end is not after start" });
    }
    if end - start > MAX_EXPORT {
        return Err(ExportError::InvalidRange { start, end, why: "longer than 24 hours" });
    }
    let rows = segments_between(pool, camera.as_str(), stream, start, end).await?;
    let no_recording =
        || ExportError::NoRecording { camera: camera.to_string(), stream: stream.to_owned(), start, end };
    if rows.is_empty() {
        return Err(no_recording());
    }
    let data_dir = data_dir.to_owned();
    let camera_s = camera.to_string();
    let stream_s = stream.to_owned();
    let by = requested_by.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        export_blocking(&data_dir, rows, &camera_s, &stream_s, start, end, &by)
    })
    .await
    .map_err(|e| RecorderError::Join(e.to_string()))??;
    let Some(result) = result else {
        return Err(no_recording());
    };
    info!(camera = %camera, stream, path = %result.path.display(), frames = result.manifest.frames,
          by = requested_by, "clip exported");
    Ok(result)
}

fn export_blocking(
    data_dir: &Path,
    rows: Vec<SegmentRow>,
    camera: &str,
    stream: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    requested_by: &str,
) -> Result<Option<ExportResult>, RecorderError> {
    let mut sources = Vec::new();
    for row in rows {
        let path = data_dir.join(&row.path);
        let scan = scan(&path)?;
        sources.push(Source { row, scan });
    }
    // Every sample with its wall time.
    let mut all: Vec<Chosen> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let mut t = 0i64;
        for (sample, offset) in &s.scan.samples {
            all.push(Chosen { source: i, sample: *sample, offset: *offset, at: s.row.start_time + ticks(t) });
            t += i64::from(sample.duration);
        }
    }
    let first = all
        .iter()
        .rposition(|c| c.sample.key && c.at <= start)
        .or_else(|| all.iter().position(|c| c.sample.key && c.at >= start));
    let Some(first) = first else {
        return Ok(None);
    };
    let chosen: Vec<&Chosen> = all[first..].iter().take_while(|c| c.at < end).collect();
    let (Some(head), Some(tail)) = (chosen.first(), chosen.last()) else {
        return Ok(None);
    };
    let actual_start = head.at;
    let actual_end = tail.at + ticks(i64::from(tail.sample.duration));

    // Sample entries (deduplicated) and one chunk per source run.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut chunks: Vec<(u32, u32)> = Vec::new();
    let mut used: Vec<(usize, usize)> = Vec::new(); // (source, frames)
    for c in &chosen {
        if used.last().map(|(s, _)| *s) != Some(c.source) {
            let entry = &sources[c.source].scan.track.sample_entry;
            let sdi = match entries.iter().position(|e| e == entry) {
                Some(i) => i + 1,
                None => {
                    entries.push(entry.clone());
                    entries.len()
                }
            };
            chunks.push((0, sdi as u32));
            used.push((c.source, 0));
        }
        if let (Some(ch), Some(u)) = (chunks.last_mut(), used.last_mut()) {
            ch.0 += 1;
            u.1 += 1;
        }
    }
    let samples: Vec<SampleInfo> = chosen.iter().map(|c| c.sample).collect();
    let track = &sources[head.source].scan.track;
    let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let mp4_head = mp4::progressive_head(&entry_refs, track.width, track.height, &samples, &chunks);

    // Write the clip under a temporary name, hashing as we go.
    let dir = data_dir.join("exports");
    std::fs::create_dir_all(&dir).map_err(crate::recorder::io_err("creating", &dir))?;
    let name = format!(
        "{camera}-{stream}-{}-{}",
        actual_start.format("%Y%m%dT%H%M%S%.3fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let path = dir.join(format!("{name}.mp4"));
    let part = dir.join(format!("{name}.mp4.part"));
    let io = |what| crate::recorder::io_err(what, &part);
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, File::create(&part).map_err(io("creating"))?),
        hasher: Sha256::new(),
        bytes: 0,
    };
    out.write_all(&mp4_head).map_err(io("writing"))?;
    let mut buf = Vec::new();
    let mut open: Option<(usize, File)> = None;
    let mut i = 0;
    while i < chosen.len() {
        // Coalesce samples that are contiguous in the same source file.
        let c = chosen[i];
        let mut len = u64::from(c.sample.size);
        let mut j = i + 1;
        while j < chosen.len() && chosen[j].source == c.source && chosen[j].offset == c.offset + len {
            len += u64::from(chosen[j].sample.size);
            j += 1;
        }
        if open.as_ref().map(|(s, _)| *s) != Some(c.source) {
            let src = data_dir.join(&sources[c.source].row.path);
            open = Some((c.source, File::open(&src).map_err(crate::recorder::io_err("opening", &src))?));
        }
        if let Some((_, f)) = &mut open {
            let src = &sources[c.source].row.path;
            let rd = |what| crate::recorder::io_err(what, data_dir.join(src));
            f.seek(SeekFrom::Start(c.offset)).map_err(rd("seeking"))?;
            buf.resize(len as usize, 0);
            f.read_exact(&mut buf).map_err(rd("reading"))?;
            out.write_all(&buf).map_err(io("writing"))?;
        }
        i = j;
    }
    let bytes = out.bytes;
    let sha256 = hex(&out.hasher.clone().finalize());
    let file = out.inner.into_inner().map_err(|e| crate::recorder::RecorderError::Io {
        what: "writing",
        path: part.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io("syncing"))?;
    std::fs::rename(&part, &path).map_err(io("renaming"))?;

    let mut gaps = Vec::new();
    for w in used.windows(2) {
        let (a, b) = (&sources[w[0].0].row, &sources[w[1].0].row);
        if let Some(a_end) = a.end_time
            && (b.start_time - a_end).num_milliseconds() > GAP_TOLERANCE_MS
        {
            gaps.push(range(a_end, b.start_time));
        }
    }
    let duration: i64 = samples.iter().map(|s| i64::from(s.duration)).sum();
    let manifest = ExportManifest {
        version: 1,
        clip: format!("{name}.mp4"),
        sha256,
        bytes,
        camera: camera.to_owned(),
        stream: stream.to_owned(),
        codec: codec_name(track.codec).to_owned(),
        requested: range(start, end),
        actual: range(actual_start, actual_end),
        duration_seconds: duration as f64 / f64::from(mp4::TIMESCALE),
        frames: samples.len(),
        segments: used
            .iter()
            .map(|(s, frames)| {
                let r = &sources[*s].row;
                ManifestSegment {
                    path: r.path.clone(),
                    sha256: r.sha256.clone().unwrap_or_default(),
                    range: range(r.start_time, r.end_time.unwrap_or(r.start_time)),
                    frames: *frames,
                }
            })
            .collect(),
        gaps,
        exported_by: requested_by.to_owned(),
        exported_at: rfc3339(Utc::now()),
        trim: "starts at the key frame at or before the requested start; ends after the last frame starting before the requested end",
    };
    let manifest_path = dir.join(format!("{name}.json"));
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| RecorderError::Io {
        what: "serializing",
        path: manifest_path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&manifest_path, json).map_err(crate::recorder::io_err("writing", &manifest_path))?;
    Ok(Some(ExportResult { path, manifest_path, manifest }))
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
/// Adds the export's audit entry (its place in the hash chain) to the manifest beside the
/// clip, so the exported evidence names the log entry that records it. Replaces the file
/// atomically.
pub fn attach_audit(manifest_path: &Path, receipt: &crate::audit::AuditReceipt) -> Result<(), RecorderError> {
    let io = |what: &'static str| crate::recorder::io_err(what, manifest_path);
    let text = std::fs::read(manifest_path).map_err(io("reading"))?;
    let mut v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| RecorderError::Io {
        what: "parsing",
        path: manifest_path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "audit".into(),
            serde_json::json!({ "id": receipt.id, "at": rfc3339(receipt.at), "hash": receipt.hash }),
        );
    }
    let tmp = manifest_path.with_extension("json.part");
    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| RecorderError::Io {
        what: "serializing",
        path: tmp.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, bytes).map_err(crate::recorder::io_err("writing", &tmp))?;
    std::fs::rename(&tmp, manifest_path).map_err(io("renaming"))?;
    Ok(())
}

/// An export's files by the clip's file name (`<name>.mp4`) or the manifest's
/// (`<name>.json`): the file asked for and the manifest, if the name is one Panoptes makes
/// (no path separators) and the manifest exists.
pub fn export_file(data_dir: &Path, file: &str) -> Option<(PathBuf, PathBuf)> {
    let stem = file.strip_suffix(".mp4").or_else(|| file.strip_suffix(".json"))?;
    let ok = !stem.is_empty()
        && stem.len() <= 200
        && !stem.starts_with('.')
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return None;
    }
    let dir = data_dir.join("exports");
    let manifest = dir.join(format!("{stem}.json"));
    manifest.is_file().then(|| (dir.join(file), manifest))
}
