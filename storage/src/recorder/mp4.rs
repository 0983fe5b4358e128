//! A small ISO BMFF (MP4) writer and reader, just what recordings need:
//!
//! - fragmented MP4 for segments: `ftyp` + `moov` (empty sample tables, `mvex`) as the
//!   init part, then one `moof` + `mdat` pair per fragment;
//! - a progressive MP4 (`moov` with full sample tables, then `mdat`) for exported clips;
//! - a reader that walks a segment's top-level boxes, lists its samples, and tells where
//!   the last complete fragment ends (for recovery after a crash).
//!
//! One video track, 90 kHz timescale, samples as 4-byte length-prefixed NAL units.
//! Pure byte manipulation: no file I/O here.

use panoptes_core::VideoCodec;
use panoptes_core::frame::annex_b_nals;

use super::sps::{self, NalKind, ParameterSets, SpsError, nal_kind};

/// Media timescale of every track: the gateway's 90 kHz clock.
pub const TIMESCALE: u32 = 90_000;
/// Movie header timescale (milliseconds).
const MOVIE_TIMESCALE: u32 = 1000;

/// Why a file is not a recording this module can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// The parameter sets could not be read.
    #[error(transparent)]
    Sps(#[from] SpsError),
    /// A box is malformed or missing.
    #[error("{0}")]
    Malformed(String),
}

fn malformed(s: impl Into<String>) -> Mp4Error {
    Mp4Error::Malformed(s.into())
}

/// The one track's decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// Codec.
    pub codec: VideoCodec,
    /// Picture width in pixels.
    pub width: u16,
    /// Picture height in pixels.
    pub height: u16,
    /// The complete `avc1`/`hvc1` sample entry box.
    pub sample_entry: Vec<u8>,
}

/// One sample as stored: duration in 90 kHz ticks, size in bytes, whether it is a sync sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Duration (90 kHz).
    pub duration: u32,
    /// Size in bytes.
    pub size: u32,
    /// Key frame.
    pub key: bool,
}

fn put_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn put_full_box(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_box(out, kind, |o| {
        o.extend_from_slice(&((u32::from(version) << 24) | (flags & 0xff_ffff)).to_be_bytes());
        body(o);
    });
}

fn u16be(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32be(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u64be(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

impl TrackConfig {
    /// Builds the sample entry from the parameter sets in front of a key frame.
    pub fn from_keyframe(codec: VideoCodec, data: &[u8]) -> Result<Self, Mp4Error> {
        Self::from_parameter_sets(codec, &sps::parameter_sets(codec, data))
    }

    /// Builds the sample entry from parameter sets.
    pub fn from_parameter_sets(codec: VideoCodec, ps: &ParameterSets) -> Result<Self, Mp4Error> {
        let first_sps = ps.sps.first().ok_or(SpsError::Missing("SPS"))?;
        if ps.pps.is_empty() {
            return Err(SpsError::Missing("PPS").into());
        }
        let too_long = |n: &Vec<u8>| n.len() > usize::from(u16::MAX);
        if ps.vps.iter().chain(&ps.sps).chain(&ps.pps).any(too_long)
            || ps.sps.len() > 31
            || ps.pps.len() > 255
        {
            return Err(malformed("parameter sets too large"));
        }
        let (info, config_box): (sps::SpsInfo, Vec<u8>) = match codec {
            VideoCodec::H264 => {
                let info = sps::h264_sps(first_sps)?;
                let mut b = Vec::new();
                put_box(&mut b, b"avcC", |o| {
                    o.push(1);
                    o.extend_from_slice(first_sps.get(1..4).unwrap_or(&[0x42, 0, 0x1e]));
                    o.push(0xff); // 4-byte lengths
                    o.push(0xe0 | ps.sps.len() as u8);
                    for s in &ps.sps {
                        u16be(o, s.len() as u16);
                        o.extend_from_slice(s);
                    }
                    o.push(ps.pps.len() as u8);
                    for p in &ps.pps {
                        u16be(o, p.len() as u16);
                        o.extend_from_slice(p);
                    }
                });
                (info, b)
            }
            VideoCodec::H265 => {
                if ps.vps.is_empty() {
                    return Err(SpsError::Missing("VPS").into());
                }
                let (info, ptl, layers, nesting) = sps::h265_sps(first_sps)?;
                let mut b = Vec::new();
                put_box(&mut b, b"hvcC", |o| {
                    o.push(1);
                    o.extend_from_slice(&ptl);
                    u16be(o, 0xf000);
                    o.push(0xfc);
                    o.push(0xfc | (info.chroma_format as u8 & 3));
                    o.push(0xf8 | (info.bit_depth_luma_minus8 as u8 & 7));
                    o.push(0xf8 | (info.bit_depth_chroma_minus8 as u8 & 7));
                    u16be(o, 0);
                    o.push(((layers & 7) << 3) | (u8::from(nesting) << 2) | 3);
                    o.push(3);
                    for (t, list) in [(32u8, &ps.vps), (33, &ps.sps), (34, &ps.pps)] {
                        o.push(0x80 | t);
                        u16be(o, list.len() as u16);
                        for n in list {
                            u16be(o, n.len() as u16);
                            o.extend_from_slice(n);
                        }
                    }
                });
                (info, b)
            }
        };
        let width = u16::try_from(info.width).map_err(|_| malformed("width too large"))?;
        let height = u16::try_from(info.height).map_err(|_| malformed("height too large"))?;
        let kind = match codec {
            VideoCodec::H264 => b"avc1",
            VideoCodec::H265 => b"hvc1",
        };
        let mut sample_entry = Vec::new();
        put_box(&mut sample_entry, kind, |o| {
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1); // data reference index
            o.extend_from_slice(&[0; 16]);
            u16be(o, width);
            u16be(o, height);
            u32be(o, 0x0048_0000);
            u32be(o, 0x0048_0000);
            u32be(o, 0);
            u16be(o, 1); // frame count
            o.extend_from_slice(&[0; 32]); // compressor name
            u16be(o, 0x0018);
            u16be(o, 0xffff);
            o.extend_from_slice(&config_box);
        });
        Ok(TrackConfig { codec, width, height, sample_entry })
    }

    /// Reads a config back from a sample entry box.
    pub fn from_sample_entry(entry: &[u8]) -> Result<Self, Mp4Error> {
        let codec = match entry.get(4..8) {
            Some(b"avc1") => VideoCodec::H264,
            Some(b"hvc1") => VideoCodec::H265,
            _ => return Err(malformed("sample entry is neither avc1 nor hvc1")),
        };
        let width = read_u16(entry, 32)?;
        let height = read_u16(entry, 34)?;
        Ok(TrackConfig { codec, width, height, sample_entry: entry.to_vec() })
    }
}

/// Appends an access unit as length-prefixed NAL units, leaving out parameter sets and
/// access unit delimiters (they live in the sample entry). Returns the bytes appended.
pub fn append_sample(codec: VideoCodec, annex_b: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    for nal in annex_b_nals(annex_b) {
        if matches!(nal_kind(codec, nal), NalKind::Vps | NalKind::Sps | NalKind::Pps | NalKind::Aud) {
            continue;
        }
        let Ok(len) = u32::try_from(nal.len()) else {
            continue;
        };
        u32be(out, len);
        out.extend_from_slice(nal);
    }
    out.len() - start
}

fn put_ftyp(out: &mut Vec<u8>, fragmented: bool) {
    put_box(out, b"ftyp", |o| {
        o.extend_from_slice(if fragmented { b"iso6" } else { b"isom" });
        u32be(o, 0x200);
        let brands: &[&[u8; 4]] = if fragmented {
            &[b"iso6", b"iso5", b"isom", b"mp41"]
        } else {
            &[b"isom", b"iso2", b"avc1", b"mp41"]
        };
        for b in brands {
            o.extend_from_slice(*b);
        }
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Sample tables of a progressive file.
struct Tables<'a> {
    samples: &'a [SampleInfo],
    /// Per chunk: (first sample index, sample count, sample description index from 1, file offset).
    chunks: &'a [(usize, u32, u32, u64)],
}

fn put_moov(out: &mut Vec<u8>, entries: &[&[u8]], width: u16, height: u16, tables: Option<&Tables<'_>>) {
    let media_duration: u64 = tables.map_or(0, |t| t.samples.iter().map(|s| u64::from(s.duration)).sum());
    let movie_duration = media_duration * u64::from(MOVIE_TIMESCALE) / u64::from(TIMESCALE);
    put_box(out, b"moov", |o| {
        put_full_box(o, b"mvhd", 1, 0, |o| {
            u64be(o, 0);
            u64be(o, 0);
            u32be(o, MOVIE_TIMESCALE);
            u64be(o, movie_duration);
            u32be(o, 0x0001_0000); // rate
            u16be(o, 0x0100); // volume
            o.extend_from_slice(&[0; 10]);
            MATRIX.iter().for_each(|m| u32be(o, *m));
            o.extend_from_slice(&[0; 24]);
            u32be(o, 2); // next track id
        });
        put_box(o, b"trak", |o| {
            put_full_box(o, b"tkhd", 1, 3, |o| {
                u64be(o, 0);
                u64be(o, 0);
                u32be(o, 1); // track id
                u32be(o, 0);
                u64be(o, movie_duration);
                o.extend_from_slice(&[0; 8]);
                u16be(o, 0); // layer
                u16be(o, 0); // alternate group
                u16be(o, 0); // volume
                u16be(o, 0);
                MATRIX.iter().for_each(|m| u32be(o, *m));
                u32be(o, u32::from(width) << 16);
                u32be(o, u32::from(height) << 16);
            });
            put_box(o, b"mdia", |o| {
                put_full_box(o, b"mdhd", 1, 0, |o| {
                    u64be(o, 0);
                    u64be(o, 0);
                    u32be(o, TIMESCALE);
                    u64be(o, media_duration);
                    u16be(o, 0x55c4); // "und"
                    u16be(o, 0);
                });
                put_full_box(o, b"hdlr", 0, 0, |o| {
                    u32be(o, 0);
                    o.extend_from_slice(b"vide");
                    o.extend_from_slice(&[0; 12]);
                    o.extend_from_slice(b"Panoptes video\0");
                });
                put_box(o, b"minf", |o| {
                    put_full_box(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                    put_box(o, b"dinf", |o| {
                        put_full_box(o, b"dref", 0, 0, |o| {
                            u32be(o, 1);
                            put_full_box(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    put_box(o, b"stbl", |o| put_stbl(o, entries, tables));
                });
            });
        });
        if tables.is_none() {
            put_box(o, b"mvex", |o| {
                put_full_box(o, b"trex", 0, 0, |o| {
                    u32be(o, 1);
                    u32be(o, 1);
                    u32be(o, 0);
                    u32be(o, 0);
                    u32be(o, 0);
                });
            });
        }
    });
}

fn put_stbl(o: &mut Vec<u8>, entries: &[&[u8]], tables: Option<&Tables<'_>>) {
    put_full_box(o, b"stsd", 0, 0, |o| {
        u32be(o, entries.len() as u32);
        entries.iter().for_each(|e| o.extend_from_slice(e));
    });
    let samples = tables.map_or(&[][..], |t| t.samples);
    let chunks = tables.map_or(&[][..], |t| t.chunks);
    put_full_box(o, b"stts", 0, 0, |o| {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            match runs.last_mut() {
                Some((n, d)) if *d == s.duration => *n += 1,
                _ => runs.push((1, s.duration)),
            }
        }
        u32be(o, runs.len() as u32);
        runs.iter().for_each(|(n, d)| {
            u32be(o, *n);
            u32be(o, *d);
        });
    });
    if tables.is_some() {
        put_full_box(o, b"stss", 0, 0, |o| {
            let keys: Vec<u32> =
                samples.iter().enumerate().filter(|(_, s)| s.key).map(|(i, _)| i as u32 + 1).collect();
            u32be(o, keys.len() as u32);
            keys.iter().for_each(|k| u32be(o, *k));
        });
    }
    put_full_box(o, b"stsc", 0, 0, |o| {
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        for (i, (_, n, sdi, _)) in chunks.iter().enumerate() {
            match runs.last() {
                Some((_, pn, psdi)) if pn == n && psdi == sdi => {}
                _ => runs.push((i as u32 + 1, *n, *sdi)),
            }
        }
        u32be(o, runs.len() as u32);
        runs.iter().for_each(|(first, n, sdi)| {
            u32be(o, *first);
            u32be(o, *n);
            u32be(o, *sdi);
        });
    });
    put_full_box(o, b"stsz", 0, 0, |o| {
        u32be(o, 0);
        u32be(o, samples.len() as u32);
        samples.iter().for_each(|s| u32be(o, s.size));
    });
    put_full_box(o, b"co64", 0, 0, |o| {
        u32be(o, chunks.len() as u32);
        chunks.iter().for_each(|c| u64be(o, c.3));
    });
}

/// The init part of a fragmented segment: `ftyp` + `moov`.
pub fn init_segment(track: &TrackConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    put_ftyp(&mut out, true);
    put_moov(&mut out, &[&track.sample_entry], track.width, track.height, None);
    out
}

/// One fragment: `moof` + `mdat` with `data` (the samples' bytes, in order).
/// `decode_time` is the first sample's time since the segment start (90 kHz).
pub fn fragment(sequence: u32, decode_time: u64, samples: &[SampleInfo], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64 + samples.len() * 12);
    let mut data_offset_at = 0;
    put_box(&mut out, b"moof", |o| {
        put_full_box(o, b"mfhd", 0, 0, |o| u32be(o, sequence));
        put_box(o, b"traf", |o| {
            // default-base-is-moof
            put_full_box(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, 1));
            put_full_box(o, b"tfdt", 1, 0, |o| u64be(o, decode_time));
            // data offset, sample duration, size, flags present
            put_full_box(o, b"trun", 0, 0x000701, |o| {
                u32be(o, samples.len() as u32);
                data_offset_at = o.len();
                u32be(o, 0);
                for s in samples {
                    u32be(o, s.duration);
                    u32be(o, s.size);
                    u32be(o, if s.key { 0x0200_0000 } else { 0x0101_0000 });
                }
            });
        });
    });
    let data_offset = (out.len() + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    let mdat_size = (data.len() + 8) as u32;
    out.extend_from_slice(&mdat_size.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(data);
    out
}

/// The head of a progressive MP4 (`ftyp`, `moov`, `mdat` header) for samples whose data
/// follows in order, chunk by chunk. `chunks`: per chunk, its sample count and sample
/// description index (from 1). Returns the head; the caller then writes the samples' bytes.
pub fn progressive_head(
    entries: &[&[u8]],
    width: u16,
    height: u16,
    samples: &[SampleInfo],
    chunks: &[(u32, u32)],
) -> Vec<u8> {
    let total: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mut placed: Vec<(usize, u32, u32, u64)> = Vec::with_capacity(chunks.len());
    let mut first = 0usize;
    for (n, sdi) in chunks {
        placed.push((first, *n, *sdi, 0));
        first += *n as usize;
    }
    // The moov's size does not depend on the offsets' values: measure it, then fill them in.
    let mut head = Vec::new();
    put_ftyp(&mut head, false);
    put_moov(&mut head, entries, width, height, Some(&Tables { samples, chunks: &placed }));
    let data_start = head.len() as u64 + 16;
    let mut offset = data_start;
    for c in &mut placed {
        c.3 = offset;
        offset += samples[c.0..c.0 + c.1 as usize].iter().map(|s| u64::from(s.size)).sum::<u64>();
    }
    head.clear();
    put_ftyp(&mut head, false);
    put_moov(&mut head, entries, width, height, Some(&Tables { samples, chunks: &placed }));
    u32be(&mut head, 1);
    head.extend_from_slice(b"mdat");
    u64be(&mut head, total + 16);
    head
}

fn read_u16(b: &[u8], at: usize) -> Result<u16, Mp4Error> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or_else(|| malformed("truncated box"))
}
fn read_u32(b: &[u8], at: usize) -> Result<u32, Mp4Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| malformed("truncated box"))
}
fn read_u64(b: &[u8], at: usize) -> Result<u64, Mp4Error> {
    Ok((u64::from(read_u32(b, at)?) << 32) | u64::from(read_u32(b, at + 4)?))
}

/// A top-level box header: kind, offset of the box, header length, total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// Four-character code.
    pub kind: [u8; 4],
    /// Offset of the box in the file.
    pub offset: u64,
    /// Header length (8 or 16).
    pub header: u64,
    /// Total size including the header.
    pub size: u64,
}

/// Parses a box header from at least 16 bytes (or what is left) at `offset`.
pub fn box_header(bytes: &[u8], offset: u64) -> Option<BoxHeader> {
    let size32 = read_u32(bytes, 0).ok()?;
    let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    let (header, size) = match size32 {
        1 => (16, read_u64(bytes, 8).ok()?),
        0 => return None, // "to end of file": never written by us
        n => (8, u64::from(n)),
    };
    (size >= header).then_some(BoxHeader { kind, offset, header, size })
}

/// Iterates over the child boxes of `body`: (kind, contents).
fn children(body: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let h = box_header(rest, 0)?;
        let end = usize::try_from(h.size).ok().filter(|e| *e <= rest.len())?;
        let inner = &rest[h.header as usize..end];
        rest = &rest[end..];
        Some((h.kind, inner))
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Mp4Error> {
    children(body)
        .find(|(k, _)| k == kind)
        .map(|(_, b)| b)
        .ok_or_else(|| malformed(format!("no {} box", String::from_utf8_lossy(kind))))
}

/// Reads the sample entries (in order) of the one track in a `moov` box's contents.
pub fn moov_sample_entries(moov: &[u8]) -> Result<Vec<TrackConfig>, Mp4Error> {
    let stbl = child(child(child(child(moov, b"trak")?, b"mdia")?, b"minf")?, b"stbl")?;
    let stsd = child(stbl, b"stsd")?;
    let entries = stsd.get(8..).ok_or_else(|| malformed("short stsd"))?;
    let mut out = Vec::new();
    let mut rest = entries;
    while let Some(h) = box_header(rest, 0) {
        let end = usize::try_from(h.size)
            .ok()
            .filter(|e| *e <= rest.len())
            .ok_or_else(|| malformed("stsd entry"))?;
        out.push(TrackConfig::from_sample_entry(&rest[..end])?);
        rest = &rest[end..];
    }
    if out.is_empty() {
        return Err(malformed("stsd has no entry"));
    }
    Ok(out)
}

/// Samples of one `moof` box (its contents): decode time of the first, the samples, and
/// the offset of the first sample's data relative to the start of the `moof` box.
pub fn moof_samples(moof: &[u8]) -> Result<(u64, Vec<SampleInfo>, u64), Mp4Error> {
    let traf = child(moof, b"traf")?;
    let tfdt = child(traf, b"tfdt")?;
    let decode_time =
        if tfdt.first() == Some(&1) { read_u64(tfdt, 4)? } else { u64::from(read_u32(tfdt, 4)?) };
    let trun = child(traf, b"trun")?;
    let flags = read_u32(trun, 0)? & 0xff_ffff;
    if flags & 0x000701 != 0x000701 || flags & 0x000804 != 0 {
        return Err(malformed("trun layout not written by Panoptes"));
    }
    let count = read_u32(trun, 4)? as usize;
    let data_offset = u64::from(read_u32(trun, 8)?);
    if trun.len() < 12 + count * 12 {
        return Err(malformed("short trun"));
    }
    let samples = (0..count)
        .map(|i| {
            let at = 12 + i * 12;
            Ok(SampleInfo {
                duration: read_u32(trun, at)?,
                size: read_u32(trun, at + 4)?,
                key: read_u32(trun, at + 8)? & 0x0001_0000 == 0,
            })
        })
        .collect::<Result<Vec<_>, Mp4Error>>()?;
    Ok((decode_time, samples, data_offset))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    pub(crate) const SPS: [u8; 30] = [
        0x67, 0x4d, 0x40, 0x28, 0xda, 0x01, 0xe0, 0x08, 0x9f, 0x97, 0x01, 0x6a, 0x04, 0x04, 0x0b, 0x4a, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x64, 0x1e, 0x30, 0x65, 0x40,
    ];

    fn keyframe() -> Vec<u8> {
        let mut d = vec![0, 0, 0, 1];
        d.extend_from_slice(&SPS);
        d.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xef, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84]);
        d
    }

    #[test]
    fn sample_entry_round_trips_and_samples_lose_parameter_sets() {
        let t = TrackConfig::from_keyframe(VideoCodec::H264, &keyframe()).unwrap();
        assert_eq!((t.width, t.height), (1920, 1080));
        let back = TrackConfig::from_sample_entry(&t.sample_entry).unwrap();
        assert_eq!(back, t);
        let mut out = Vec::new();
        assert_eq!(append_sample(VideoCodec::H264, &keyframe(), &mut out), 7);
        assert_eq!(out, [0, 0, 0, 3, 0x65, 0x88, 0x84]);
    }

    #[test]
    fn fragments_parse_back() {
        let t = TrackConfig::from_keyframe(VideoCodec::H264, &keyframe()).unwrap();
        let init = init_segment(&t);
        let h = box_header(&init, 0).unwrap();
        assert_eq!(&h.kind, b"ftyp");
        let moov = box_header(&init[h.size as usize..], h.size).unwrap();
        assert_eq!(&moov.kind, b"moov");
        let body = &init[(h.size + 8) as usize..];
        assert_eq!(moov_sample_entries(body).unwrap(), vec![t]);

        let samples = [
            SampleInfo { duration: 3600, size: 3, key: true },
            SampleInfo { duration: 3000, size: 2, key: false },
        ];
        let f = fragment(7, 90_000, &samples, &[1, 2, 3, 4, 5]);
        let mh = box_header(&f, 0).unwrap();
        let (dt, s, off) = moof_samples(&f[8..mh.size as usize]).unwrap();
        assert_eq!((dt, s.as_slice(), off), (90_000, &samples[..], mh.size + 8));
        assert_eq!(&f[off as usize..], &[1, 2, 3, 4, 5]);
    }
}
