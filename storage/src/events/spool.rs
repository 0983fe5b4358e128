//! The spool: an append-only file of records written while PostgreSQL is unreachable.
//!
//! Each line is `<crc32 of the JSON, 8 lowercase hex digits> <JSON>\n`, the JSON being
//! `{"v":1,"r":<record>}`. Appends are fsynced (`sync_data`) before they count. After a
//! crash the last line may be torn (no newline): it is ignored, reported, and cut off when
//! the spool is opened, so that the next append starts on a fresh line. A line whose
//! checksum or JSON is wrong is skipped and reported; the lines after it still count.
//!
//! The parser ([`parse_line`], [`scan`]) is pure and fuzzed (`storage/fuzz`). [`Spool`]
//! does blocking file I/O: call it from `spawn_blocking` or a named thread, never from a
//! tokio worker.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Record;

/// Longest line accepted (the record limits keep real lines far below).
pub const MAX_LINE: usize = 1 << 20;
const VERSION: u32 = 1;
/// How much is read from the file at a time when replaying.
const READ_CHUNK: usize = 4 << 20;

/// CRC-32 (IEEE 802.3, the zlib one), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[derive(Serialize, Deserialize)]
struct Envelope<R> {
    v: u32,
    r: R,
}

/// Why one line of the spool was not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE`].
    #[error("line of {0} bytes is longer than the limit")]
    TooLong(usize),
    /// No `crc32 ` prefix.
    #[error("no checksum prefix")]
    NoChecksum,
    /// The checksum does not match the JSON (a torn or damaged write).
    #[error("checksum mismatch: line says {stated:08x}, content has {actual:08x}")]
    ChecksumMismatch {
        /// The checksum written on the line.
        stated: u32,
        /// The checksum of the line's content.
        actual: u32,
    },
    /// The JSON is not a record of a known version.
    #[error("not a record: {0}")]
    BadRecord(String),
}

/// Formats one record as a spool line, newline included.
pub fn format_line(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(&Envelope { v: VERSION, r: record })?;
    let mut line = format!("{:08x} ", crc32(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong(line.len()));
    }
    let (head, json) = match (line.get(..8), line.get(8), line.get(9..)) {
        (Some(h), Some(b' '), Some(j)) => (h, j),
        _ => return Err(LineError::NoChecksum),
    };
    let stated = std::str::from_utf8(head)
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(LineError::NoChecksum)?;
    let actual = crc32(json);
    if stated != actual {
        return Err(LineError::ChecksumMismatch { stated, actual });
    }
    let env: Envelope<Record> =
        serde_json::from_slice(json).map_err(|e| LineError::BadRecord(e.to_string()))?;
    if env.v != VERSION {
        return Err(LineError::BadRecord(format!("unknown version {}", env.v)));
    }
    env.r.validate().map_err(|e| LineError::BadRecord(e.to_string()))?;
    Ok(env.r)
}

/// What [`scan`] found in a buffer of spool bytes.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// The good records, in order, each with the offset just past its line.
    pub records: Vec<(usize, Record)>,
    /// Damaged complete lines: their start offset and what was wrong.
    pub corrupt: Vec<(usize, LineError)>,
    /// Bytes consumed: just past the last complete line considered.
    pub consumed: usize,
    /// Length of a trailing piece without newline (a torn line, when the buffer is the
    /// whole rest of the file), 0 if none.
    pub tail: usize,
}

/// Scans `buf` for complete lines, at most `max_records` good records.
pub fn scan(buf: &[u8], max_records: usize) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0;
    while out.records.len() < max_records {
        let Some(rest) = buf.get(pos..) else { break };
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else { break };
        let line = &rest[..nl];
        let end = pos + nl + 1;
        match parse_line(line) {
            Ok(r) => out.records.push((end, r)),
            Err(e) => out.corrupt.push((pos, e)),
        }
        pos = end;
    }
    out.consumed = pos;
    if out.records.len() < max_records {
        out.tail = buf.len().saturating_sub(pos);
    }
    out
}

/// Why the spool file failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool reached its size limit.
    #[error("spool {path} is full ({len} bytes, limit {limit})")]
    Full {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A file operation failed (`ENOSPC` here means the disk is full).
    #[error("{what} spool {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record could not be serialised (a bug).
    #[error("serialising a record: {0}")]
    Serialise(#[from] serde_json::Error),
}

impl SpoolError {
    /// Whether the disk (or the spool's limit) is full.
    pub fn is_full(&self) -> bool {
        match self {
            SpoolError::Full { .. } => true,
            SpoolError::Io { source, .. } => source.raw_os_error() == Some(28),
            SpoolError::Serialise(_) => false,
        }
    }
}

/// What opening the spool found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Good records waiting for replay.
    pub records: usize,
    /// Damaged complete lines (skipped at replay).
    pub corrupt: usize,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: usize,
}

/// A chunk read for replay.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Records in order.
    pub records: Vec<Record>,
    /// Damaged lines skipped in this chunk, with their file offset.
    pub corrupt: Vec<(u64, LineError)>,
    /// Where the next read starts once this chunk is committed.
    pub next: u64,
}

/// The spool file. Blocking I/O: use from `spawn_blocking` or a named thread.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    len: u64,
    read_pos: u64,
    limit: u64,
}

impl Spool {
    /// Opens (creating) the spool at `path`, scans it, cuts off a torn last line.
    pub fn open(path: &Path, limit: u64) -> Result<(Spool, OpenReport), SpoolError> {
        let io = |what: &'static str| {
            let path = path.to_owned();
            move |source| SpoolError::Io { what, path, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("opening"))?;
        let len = file.metadata().map_err(io("reading the size of"))?.len();
        let mut spool = Spool { path: path.to_owned(), file, len, read_pos: 0, limit };
        let mut report = OpenReport::default();
        let mut pos = 0u64;
        loop {
            let buf = spool.read_at(pos)?;
            if buf.is_empty() {
                break;
            }
            let s = scan(&buf, usize::MAX);
            report.records += s.records.len();
            report.corrupt += s.corrupt.len();
            if s.consumed == 0 {
                // No newline in a whole chunk: the rest is one damaged or torn line.
                report.torn_bytes = buf.len();
                if spool.len - pos > buf.len() as u64 {
                    report.corrupt += 1;
                    report.torn_bytes = 0;
                    pos += buf.len() as u64;
                    continue;
                }
                break;
            }
            pos += s.consumed as u64;
        }
        if pos < spool.len {
            report.torn_bytes = (spool.len - pos) as usize;
            spool.file.set_len(pos).map_err(io("truncating the torn line of"))?;
            spool.file.sync_all().map_err(io("syncing"))?;
            spool.len = pos;
        }
        Ok((spool, report))
    }

    fn read_at(&self, pos: u64) -> Result<Vec<u8>, SpoolError> {
        let want = usize::try_from(self.len.saturating_sub(pos)).unwrap_or(usize::MAX).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = self
                .file
                .read_at(&mut buf[filled..], pos + filled as u64)
                .map_err(|source| SpoolError::Io { what: "reading", path: self.path.clone(), source })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends records and fsyncs. On failure nothing of this call remains in the file.
    pub fn append(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&format_line(r)?);
        }
        if self.len + buf.len() as u64 > self.limit {
            return Err(SpoolError::Full { path: self.path.clone(), len: self.len, limit: self.limit });
        }
        let result = self.file.write_all_at(&buf, self.len).and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            // Best effort: drop a partial write so the next append starts on a line boundary.
            let _ = self.file.set_len(self.len);
            return Err(SpoolError::Io { what: "appending to", path: self.path.clone(), source });
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Reads up to `max` records from the replay position, without moving it.
    pub fn read_next(&self, max: usize) -> Result<Chunk, SpoolError> {
        let mut chunk = Chunk { next: self.read_pos, ..Chunk::default() };
        while chunk.records.len() < max && chunk.next < self.len {
            let buf = self.read_at(chunk.next)?;
            let s = scan(&buf, max - chunk.records.len());
            for (off, e) in s.corrupt {
                chunk.corrupt.push((chunk.next + off as u64, e));
            }
            chunk.records.extend(s.records.into_iter().map(|(_, r)| r));
            if s.consumed == 0 {
                // A chunk without newline inside the file: skip it as damaged.
                chunk.corrupt.push((chunk.next, LineError::TooLong(buf.len())));
                chunk.next += buf.len() as u64;
            } else {
                chunk.next += s.consumed as u64;
            }
        }
        Ok(chunk)
    }

    /// Marks everything before `next` as written to the database.
    pub fn commit(&mut self, next: u64) {
        self.read_pos = next.min(self.len);
    }

    /// Whether every record has been replayed.
    pub fn is_drained(&self) -> bool {
        self.read_pos >= self.len
    }

    /// Empties the file (after a complete replay).
    pub fn reset(&mut self) -> Result<(), SpoolError> {
        self.file.set_len(0).and_then(|()| self.file.sync_all()).map_err(|source| SpoolError::Io {
            what: "emptying",
            path: self.path.clone(),
            source,
        })?;
        self.len = 0;
        self.read_pos = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::sample;

    fn rec(i: i64) -> Record {
        Record::Start(sample(&format!("k{i}"), "cam", i))
    }

    #[test]
    fn crc_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn lines_round_trip() {
        let line = format_line(&rec(1)).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(parse_line(&line[..line.len() - 1]), Ok(rec(1)));
    }

    #[test]
    fn damaged_lines_are_reported() {
        let line = format_line(&rec(1)).unwrap();
        let body = &line[..line.len() - 1];
        let mut flipped = body.to_vec();
        let n = flipped.len();
        flipped[n - 3] ^= 1;
        assert!(matches!(parse_line(&flipped), Err(LineError::ChecksumMismatch { .. })));
        assert_eq!(parse_line(b""), Err(LineError::NoChecksum));
        assert_eq!(parse_line(b"zzzzzzzz {}"), Err(LineError::NoChecksum));
        let json = br#"{"v":2,"r":{}}"#;
        let wrong_version = format!("{:08x} {}", crc32(json), std::str::from_utf8(json).unwrap());
        assert!(matches!(parse_line(wrong_version.as_bytes()), Err(LineError::BadRecord(_))));
        // A valid checksum over JSON that breaks a field rule is rejected too.
        let mut bad = sample("k", "cam", 0);
        bad.score_max = 7.0;
        let json = serde_json::to_vec(&Envelope { v: 1, r: Record::Start(bad) }).unwrap();
        let line = format!("{:08x} {}", crc32(&json), std::str::from_utf8(&json).unwrap());
        assert!(matches!(parse_line(line.as_bytes()), Err(LineError::BadRecord(_))));
    }

    #[test]
    fn scan_skips_corrupt_lines_and_reports_a_torn_tail() {
        let mut buf = format_line(&rec(1)).unwrap();
        buf.extend_from_slice(b"00000000 garbage\n");
        buf.extend_from_slice(&format_line(&rec(2)).unwrap());
        let third = format_line(&rec(3)).unwrap();
        buf.extend_from_slice(&third[..third.len() / 2]);
        let s = scan(&buf, usize::MAX);
        assert_eq!(s.records.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), vec![rec(1), rec(2)]);
        assert_eq!(s.corrupt.len(), 1);
        assert_eq!(s.tail, third.len() / 2);
        assert_eq!(s.consumed + s.tail, buf.len());
    }

    #[test]
    fn torn_last_line_is_cut_at_open_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.spool");
        {
            let (mut spool, report) = Spool::open(&path, 1 << 30).unwrap();
            assert_eq!(report, OpenReport::default());
            spool.append(&[rec(1), rec(2)]).unwrap();
        }
        // A crash in the middle of the third append.
        let third = format_line(&rec(3)).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&third[..10]);
        std::fs::write(&path, &bytes).unwrap();

        let (mut spool, report) = Spool::open(&path, 1 << 30).unwrap();
        assert_eq!(report, OpenReport { records: 2, corrupt: 0, torn_bytes: 10 });
        spool.append(&[rec(4)]).unwrap();
        let chunk = spool.read_next(10).unwrap();
        assert_eq!(chunk.records, vec![rec(1), rec(2), rec(4)]);
        assert!(chunk.corrupt.is_empty());
    }

    #[test]
    fn replay_reads_in_chunks_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(&dir.path().join("s"), 1 << 30).unwrap();
        spool.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let a = spool.read_next(3).unwrap();
        assert_eq!(a.records, (0..3).map(rec).collect::<Vec<_>>());
        // Not committed: the same chunk again.
        assert_eq!(spool.read_next(3).unwrap().records, a.records);
        spool.commit(a.next);
        let b = spool.read_next(3).unwrap();
        assert_eq!(b.records, (3..5).map(rec).collect::<Vec<_>>());
        spool.commit(b.next);
        assert!(spool.is_drained());
        spool.reset().unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn the_limit_is_a_clear_full_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(&dir.path().join("s"), 100).unwrap();
        let e = spool.append(&[rec(1)]).unwrap_err();
        assert!(e.is_full(), "{e}");
        assert!(spool.is_empty());
    }
}
