//! Parameter sets: picking them out of Annex B key frames and reading the few fields an
//! MP4 sample entry needs (picture size, profile/level) from H.264 and H.265 SPSs.

use panoptes_core::VideoCodec;
use panoptes_core::frame::annex_b_nals;

/// Why a parameter set could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    /// A parameter set the codec needs is missing from the key frame.
    #[error("key frame has no {0}")]
    Missing(&'static str),
    /// The SPS ended early or has values out of range.
    #[error("malformed SPS: {0}")]
    Malformed(&'static str),
}

/// The parameter sets found in front of a key frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    /// H.265 only.
    pub vps: Vec<Vec<u8>>,
    /// Sequence parameter sets.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets.
    pub pps: Vec<Vec<u8>>,
}

/// NAL unit kind as far as the recorder cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NalKind {
    Vps,
    Sps,
    Pps,
    /// Access unit delimiter: dropped from samples.
    Aud,
    Other,
}

pub(crate) fn nal_kind(codec: VideoCodec, nal: &[u8]) -> NalKind {
    let Some(&b) = nal.first() else {
        return NalKind::Other;
    };
    match codec {
        VideoCodec::H264 => match b & 0x1f {
            7 => NalKind::Sps,
            8 => NalKind::Pps,
            9 => NalKind::Aud,
            _ => NalKind::Other,
        },
        VideoCodec::H265 => match (b >> 1) & 0x3f {
            32 => NalKind::Vps,
            33 => NalKind::Sps,
            34 => NalKind::Pps,
            35 => NalKind::Aud,
            _ => NalKind::Other,
        },
    }
}

/// Collects the parameter sets of an Annex B access unit (duplicates removed).
pub fn parameter_sets(codec: VideoCodec, data: &[u8]) -> ParameterSets {
    let mut ps = ParameterSets::default();
    for nal in annex_b_nals(data) {
        let list = match nal_kind(codec, nal) {
            NalKind::Vps => &mut ps.vps,
            NalKind::Sps => &mut ps.sps,
            NalKind::Pps => &mut ps.pps,
            _ => continue,
        };
        if !list.iter().any(|n| n == nal) {
            list.push(nal.to_vec());
        }
    }
    ps
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self.data.get(self.pos / 8).ok_or(SpsError::Malformed("truncated"))?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), SpsError> {
        self.pos += n;
        if self.pos > self.data.len() * 8 {
            return Err(SpsError::Malformed("truncated"));
        }
        Ok(())
    }

    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::Malformed("exp-Golomb code too long"));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    fn se(&mut self) -> Result<i32, SpsError> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Ok(if k % 2 == 0 { -v } else { v })
    }
}

/// What a sample entry needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// Displayed width in pixels.
    pub width: u32,
    /// Displayed height in pixels.
    pub height: u32,
    /// `chroma_format_idc`.
    pub chroma_format: u32,
    /// Luma bit depth minus 8.
    pub bit_depth_luma_minus8: u32,
    /// Chroma bit depth minus 8.
    pub bit_depth_chroma_minus8: u32,
}

/// Reads an H.264 SPS NAL unit (with its one-byte header).
pub fn h264_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    let data = rbsp(nal);
    let mut b = Bits::new(data.get(1..).ok_or(SpsError::Malformed("empty"))?);
    let profile = b.bits(8)?;
    b.skip(16)?; // constraint flags, level
    b.ue()?; // sps id
    let (mut chroma, mut bdl, mut bdc) = (1, 0, 0);
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma = b.ue()?;
        if chroma == 3 {
            b.skip(1)?;
        }
        bdl = b.ue()?;
        bdc = b.ue()?;
        b.skip(1)?; // qpprime_y_zero_transform_bypass
        if b.bit()? == 1 {
            let lists = if chroma == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            // delta_scale is -128..=127; anything else is a corrupt SPS
                            // (and would overflow).
                            let delta = b.se()?;
                            if !(-128..=127).contains(&delta) {
                                return Err(SpsError::Malformed("scaling list delta out of range"));
                            }
                            next = (last + delta + 256).rem_euclid(256);
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.skip(1)?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            if n > 255 {
                return Err(SpsError::Malformed("too many ref frames in POC cycle"));
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.skip(1)?;
    let w_mbs = u64::from(b.ue()?) + 1;
    let h_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = u64::from(b.bit()?);
    if frame_mbs_only == 0 {
        b.skip(1)?;
    }
    b.skip(1)?; // direct_8x8_inference
    let (mut l, mut r, mut t, mut bo) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? == 1 {
        l = b.ue()?.into();
        r = b.ue()?.into();
        t = b.ue()?.into();
        bo = b.ue()?.into();
    }
    let (sub_w, sub_h) = match chroma {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = if chroma == 0 { 1 } else { sub_w };
    let crop_y = if chroma == 0 { 2 - frame_mbs_only } else { sub_h * (2 - frame_mbs_only) };
    let width = (w_mbs * 16).checked_sub((l + r) * crop_x);
    let height = ((2 - frame_mbs_only) * h_units * 16).checked_sub((t + bo) * crop_y);
    match (width, height) {
        (Some(w @ 1..=16384), Some(h @ 1..=16384)) => Ok(SpsInfo {
            width: w as u32,
            height: h as u32,
            chroma_format: chroma,
            bit_depth_luma_minus8: bdl,
            bit_depth_chroma_minus8: bdc,
        }),
        _ => Err(SpsError::Malformed("picture size out of range")),
    }
}

/// Reads an H.265 SPS NAL unit (with its two-byte header). Also returns the 12 bytes of
/// the general profile/tier/level, which `hvcC` repeats.
pub fn h265_sps(nal: &[u8]) -> Result<(SpsInfo, [u8; 12], u8, bool), SpsError> {
    let data = rbsp(nal);
    let body = data.get(2..).ok_or(SpsError::Malformed("empty"))?;
    let mut b = Bits::new(body);
    b.skip(4)?; // vps id
    let max_sub_layers_minus1 = b.bits(3)?;
    let nesting = b.bit()? == 1;
    let mut ptl = [0u8; 12];
    ptl.copy_from_slice(body.get(1..13).ok_or(SpsError::Malformed("truncated PTL"))?);
    b.skip(96)?;
    let mut sub = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        sub.push((b.bit()?, b.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - max_sub_layers_minus1 as usize))?;
    }
    for (profile, level) in sub {
        if profile == 1 {
            b.skip(88)?;
        }
        if level == 1 {
            b.skip(8)?;
        }
    }
    b.ue()?; // sps id
    let chroma = b.ue()?;
    if chroma == 3 {
        b.skip(1)?;
    }
    let w = u64::from(b.ue()?);
    let h = u64::from(b.ue()?);
    let (mut l, mut r, mut t, mut bo) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? == 1 {
        l = b.ue()?.into();
        r = b.ue()?.into();
        t = b.ue()?.into();
        bo = b.ue()?.into();
    }
    let bdl = b.ue()?;
    let bdc = b.ue()?;
    let (sub_w, sub_h) = match chroma {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = w.checked_sub((l + r) * sub_w);
    let height = h.checked_sub((t + bo) * sub_h);
    match (width, height) {
        (Some(w @ 1..=16384), Some(h @ 1..=16384)) => Ok((
            SpsInfo {
                width: w as u32,
                height: h as u32,
                chroma_format: chroma,
                bit_depth_luma_minus8: bdl,
                bit_depth_chroma_minus8: bdc,
            },
            ptl,
            max_sub_layers_minus1 as u8 + 1,
            nesting,
        )),
        _ => Err(SpsError::Malformed("picture size out of range")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn removes_emulation_prevention() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
    }

    /// Found by the `sps` fuzz target: a huge scaling-list delta overflowed an addition.
    #[test]
    fn a_corrupt_scaling_list_is_an_error_not_a_panic() {
        let data = [
            0x0b, 0x86, 0x92, 0x92, 0x92, 0x00, 0x86, 0x92, 0x92, 0x92, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x09, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
            0xfe, 0x92, 0x74, 0x75, 0xb8, 0xfe, 0xfc, 0xff, 0xff, 0xff, 0x00, 0x00, 0xef, 0x26, 0x00, 0x18,
        ];
        assert!(h264_sps(&data).is_err());
    }

    #[test]
    fn reads_exp_golomb() {
        // 1 → 0, 010 → 1, 011 → 2, 00100 → 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut b = Bits::new(&data);
        assert_eq!(
            [b.ue().ok(), b.ue().ok(), b.ue().ok(), b.ue().ok()],
            [Some(0), Some(1), Some(2), Some(3)]
        );
    }

    #[test]
    fn reads_the_test_clips_spss() {
        // x264 Main 1920x1080 (1088 coded, cropped by 8) and x265 Main 1280x720.
        let sps = [
            0x67, 0x4d, 0x40, 0x28, 0xda, 0x01, 0xe0, 0x08, 0x9f, 0x97, 0x01, 0x6a, 0x04, 0x04, 0x0b, 0x4a,
            0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x64, 0x1e, 0x30, 0x65, 0x40,
        ];
        assert_eq!(h264_sps(&sps).map(|i| (i.width, i.height)), Ok((1920, 1080)));
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
            0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x2a, 0x49, 0x32, 0xbc, 0x05, 0xa8, 0x10,
            0x10, 0x2d, 0x20, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
        ];
        let (info, ptl, layers, _) =
            h265_sps(&sps).map_err(|e| e.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((info.width, info.height, info.chroma_format, layers), (1280, 720, 1, 1));
        assert_eq!(ptl[0], 0x01, "general profile Main");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [&[][..], &[0x67], &[0x67, 0xff, 0xff], &[0x42, 0x01, 0x01]] {
            let _ = h264_sps(data);
            let _ = h265_sps(data);
        }
    }
}
