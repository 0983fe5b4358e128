//! Frame → model input tensor, the contract of `docs/models.md` ("Pre-processing contract").
//!
//! [`Letterbox::plan`] computes the input size and the scales (pure); [`Preprocessor::fill`]
//! writes one frame into one batch slot of the input tensor: the resized pixels are
//! normalised, channel-reordered and laid out in a single pass. When the frame already has
//! the resized size (the gateway can scale at decode time), it is read straight into the
//! tensor; otherwise `fast_image_resize` (bilinear convolution, as Pillow's `BILINEAR`)
//! writes into a reusable scratch buffer first.

use fast_image_resize as fir;
use panoptes_models::{Colour, InputSpec, Layout, Resize};

use crate::frame::FrameRef;
use crate::geometry::BBox;

/// Why a frame could not be turned into an input tensor.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The frame's buffer is smaller than its size says, or a side is zero.
    #[error("frame {width}x{height} has {len} bytes of RGB, expected {expected}")]
    BadFrame {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// The output slice has the wrong length.
    #[error("tensor slot has {got} values, expected {expected}")]
    BadSlot {
        /// Values present.
        got: usize,
        /// Values needed.
        expected: usize,
    },
    /// fast_image_resize refused.
    #[error("resize failed: {0}")]
    Resize(String),
}

/// How a model input relates to the frame: `x_frame = x_input / scale_x` (no offset: the
/// resized image sits at the top-left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input tensor width.
    pub in_w: u32,
    /// Input tensor height.
    pub in_h: u32,
    /// Width of the resized frame inside the input (≤ `in_w`).
    pub resized_w: u32,
    /// Height of the resized frame inside the input.
    pub resized_h: u32,
    /// `resized_w / frame width`.
    pub scale_x: f32,
    /// `resized_h / frame height`.
    pub scale_y: f32,
    /// Frame width.
    pub frame_w: u32,
    /// Frame height.
    pub frame_h: u32,
}

impl Letterbox {
    /// The input geometry for a `w`×`h` frame (`w`, `h` > 0).
    pub fn plan(spec: &InputSpec, w: u32, h: u32) -> Letterbox {
        let (fw, fh) = (f64::from(w.max(1)), f64::from(h.max(1)));
        let (sw, sh) = (f64::from(spec.width), f64::from(spec.height));
        let (in_w, in_h, rw, rh) = if spec.dynamic {
            let m = f64::from(spec.multiple_of.unwrap_or(32).max(1));
            let s = (sw / fw).min(sh / fh);
            let iw = ((fw * s / m).ceil() * m).max(m) as u32;
            let ih = ((fh * s / m).ceil() * m).max(m) as u32;
            (iw, ih, iw, ih)
        } else {
            match spec.resize.unwrap_or(Resize::Stretch) {
                Resize::Stretch => (spec.width, spec.height, spec.width, spec.height),
                Resize::Fit => {
                    let s = (sw / fw).min(sh / fh);
                    // round half up, as the Python reference's int(x + 0.5)
                    let rw = ((fw * s + 0.5).floor() as u32).clamp(1, spec.width);
                    let rh = ((fh * s + 0.5).floor() as u32).clamp(1, spec.height);
                    (spec.width, spec.height, rw, rh)
                }
                Resize::Height => {
                    let rw = ((sh * fw / fh).ceil() as u32).max(1);
                    (spec.width.max(rw), spec.height, rw, spec.height)
                }
            }
        };
        Letterbox {
            in_w,
            in_h,
            resized_w: rw,
            resized_h: rh,
            scale_x: (f64::from(rw) / fw) as f32,
            scale_y: (f64::from(rh) / fh) as f32,
            frame_w: w,
            frame_h: h,
        }
    }

    /// A point in input pixels → frame pixels, clipped to the frame.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x / self.scale_x).clamp(0.0, self.frame_w as f32),
            (y / self.scale_y).clamp(0.0, self.frame_h as f32),
        )
    }

    /// A box in input pixels → frame pixels, clipped to the frame.
    pub fn box_to_frame(&self, b: BBox) -> BBox {
        let (x1, y1) = self.to_frame(b.x1, b.y1);
        let (x2, y2) = self.to_frame(b.x2, b.y2);
        BBox { x1, y1, x2, y2 }
    }

    /// Number of f32 values of one batch slot.
    pub fn slot_len(&self) -> usize {
        self.in_w as usize * self.in_h as usize * 3
    }
}

/// Reusable pre-processing state (resizer and scratch buffer): one per detector.
#[derive(Debug, Default)]
pub struct Preprocessor {
    resizer: fir::Resizer,
    scratch: Vec<u8>,
}

impl Preprocessor {
    /// A new preprocessor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `frame` into `slot` (one batch item, `lb.slot_len()` values, in `spec.layout`).
    pub fn fill(
        &mut self,
        frame: &FrameRef<'_>,
        spec: &InputSpec,
        lb: &Letterbox,
        slot: &mut [f32],
    ) -> Result<(), PreprocessError> {
        let expected = frame.width as usize * frame.height as usize * 3;
        if !frame.is_valid() {
            return Err(PreprocessError::BadFrame {
                width: frame.width,
                height: frame.height,
                len: frame.rgb.len(),
                expected,
            });
        }
        if slot.len() != lb.slot_len() {
            return Err(PreprocessError::BadSlot { got: slot.len(), expected: lb.slot_len() });
        }
        let pixels: &[u8] = if (lb.resized_w, lb.resized_h) == (frame.width, frame.height) {
            &frame.rgb[..expected]
        } else {
            let need = lb.resized_w as usize * lb.resized_h as usize * 3;
            self.scratch.resize(need, 0);
            let src = fir::images::ImageRef::new(
                frame.width,
                frame.height,
                &frame.rgb[..expected],
                fir::PixelType::U8x3,
            )
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            let mut dst = fir::images::Image::from_slice_u8(
                lb.resized_w,
                lb.resized_h,
                &mut self.scratch,
                fir::PixelType::U8x3,
            )
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            let options =
                fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
            self.resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            &self.scratch
        };
        write_normalised(pixels, lb, spec, slot);
        Ok(())
    }
}

/// Normalises `pixels` (packed RGB, `resized_w`×`resized_h`) into the slot, padding the rest.
fn write_normalised(pixels: &[u8], lb: &Letterbox, spec: &InputSpec, slot: &mut [f32]) {
    // value = (pixel - mean) / std = pixel * mul + add, per model channel
    let mul: [f32; 3] = std::array::from_fn(|c| 1.0 / spec.std[c]);
    let add: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    // model channel c reads source (RGB) channel src[c]
    let src: [usize; 3] = match spec.colour {
        Colour::Rgb => [0, 1, 2],
        Colour::Bgr => [2, 1, 0],
    };
    let pad: [f32; 3] = std::array::from_fn(|c| spec.pad_value * mul[c] + add[c]);
    let (iw, ih) = (lb.in_w as usize, lb.in_h as usize);
    let (rw, rh) = (lb.resized_w as usize, lb.resized_h as usize);
    match spec.layout {
        Layout::Nchw => {
            let plane = iw * ih;
            for c in 0..3 {
                let out = &mut slot[c * plane..(c + 1) * plane];
                let (m, a, s) = (mul[c], add[c], src[c]);
                for y in 0..ih {
                    let row = &mut out[y * iw..(y + 1) * iw];
                    if y < rh {
                        let px = &pixels[y * rw * 3..(y + 1) * rw * 3];
                        for (o, p) in row[..rw].iter_mut().zip(px.chunks_exact(3)) {
                            *o = f32::from(p[s]) * m + a;
                        }
                        row[rw..].fill(pad[c]);
                    } else {
                        row.fill(pad[c]);
                    }
                }
            }
        }
        Layout::Nhwc => {
            for y in 0..ih {
                let row = &mut slot[y * iw * 3..(y + 1) * iw * 3];
                for (x, o) in row.chunks_exact_mut(3).enumerate() {
                    if y < rh && x < rw {
                        let p = &pixels[(y * rw + x) * 3..(y * rw + x) * 3 + 3];
                        for c in 0..3 {
                            o[c] = f32::from(p[src[c]]) * mul[c] + add[c];
                        }
                    } else {
                        o.copy_from_slice(&pad);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panoptes_models::Manifest;

    fn spec(id: &str) -> InputSpec {
        Manifest::builtin().unwrap().get(id).unwrap().input.clone()
    }

    #[test]
    fn plans_match_the_python_reference() {
        // fit: 1280x720 -> 416x234 on a 416x416 canvas
        let lb = Letterbox::plan(&spec("nanodet"), 1280, 720);
        assert_eq!((lb.in_w, lb.in_h, lb.resized_w, lb.resized_h), (416, 416, 416, 234));
        // bus.jpg 810x1080 -> 312x416
        let lb = Letterbox::plan(&spec("nanodet"), 810, 1080);
        assert_eq!((lb.resized_w, lb.resized_h), (312, 416));
        // dynamic: 1280x720 -> 640x384; 176x144 -> 640x544; bus 810x1080 -> 480x640 (WxH)
        let cf = spec("centerface");
        let lb = Letterbox::plan(&cf, 1280, 720);
        assert_eq!((lb.in_w, lb.in_h), (640, 384));
        assert_eq!((lb.resized_w, lb.resized_h), (640, 384));
        let lb = Letterbox::plan(&cf, 176, 144);
        assert_eq!((lb.in_w, lb.in_h), (640, 544));
        let lb = Letterbox::plan(&cf, 810, 1080);
        assert_eq!((lb.in_w, lb.in_h), (480, 640));
        // text line: height 48, width max(320, ceil(48 w / h))
        let lb = Letterbox::plan(&spec("ppocr-rec"), 1000, 100);
        assert_eq!((lb.in_w, lb.in_h, lb.resized_w), (480, 48, 480));
    }

    #[test]
    fn boxes_map_back_to_frame_coordinates() {
        let lb = Letterbox::plan(&spec("nanodet"), 1280, 720);
        let s = 416.0 / 1280.0;
        let b = lb.box_to_frame(BBox::new(100.0 * s, 50.0 * s, 600.0 * s, 400.0 * s));
        for (got, want) in [(b.x1, 100.0), (b.y1, 50.0), (b.x2, 600.0), (b.y2, 400.0)] {
            assert!((got - want).abs() < 1.0, "{b:?}");
        }
        // a box reaching into the padding is clipped to the frame
        let b = lb.box_to_frame(BBox::new(-5.0, 200.0, 500.0, 416.0));
        assert_eq!((b.x1, b.x2, b.y2), (0.0, 1280.0, 720.0));
        // the y scale is the rounded one: 234 / 720
        assert!((lb.scale_y - 234.0 / 720.0).abs() < 1e-7);
    }

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y));
            }
        }
        v
    }

    #[test]
    fn fills_nchw_bgr_with_normalisation_and_padding() {
        let mut s = spec("nanodet");
        s.width = 8;
        s.height = 8;
        // 8x4 frame at input size: read straight, no resize
        let px = frame(8, 4, |x, y| [10 * x as u8, 20 * y as u8, 7]);
        let f = FrameRef::new(8, 4, &px).unwrap();
        let lb = Letterbox::plan(&s, 8, 4);
        assert_eq!((lb.resized_w, lb.resized_h), (8, 4));
        let mut slot = vec![f32::NAN; lb.slot_len()];
        Preprocessor::new().fill(&f, &s, &lb, &mut slot).unwrap();
        let at = |c: usize, y: usize, x: usize| slot[c * 64 + y * 8 + x];
        // channel 0 is blue (7), channel 2 red (10 x)
        assert!((at(0, 1, 3) - (7.0 - 103.53) / 57.375).abs() < 1e-5);
        assert!((at(1, 2, 3) - (40.0 - 116.28) / 57.12).abs() < 1e-5);
        assert!((at(2, 1, 3) - (30.0 - 123.675) / 58.395).abs() < 1e-5);
        // rows 4.. are padding (pixel 0)
        assert!((at(2, 6, 0) - (0.0 - 123.675) / 58.395).abs() < 1e-5);
        assert!(slot.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn fills_nhwc_rgb_with_resize() {
        let mut s = spec("centernet");
        s.width = 4;
        s.height = 4;
        let px = frame(8, 4, |_, _| [200, 100, 50]);
        let f = FrameRef::new(8, 4, &px).unwrap();
        let lb = Letterbox::plan(&s, 8, 4);
        assert_eq!((lb.resized_w, lb.resized_h), (4, 2));
        let mut slot = vec![f32::NAN; lb.slot_len()];
        Preprocessor::new().fill(&f, &s, &lb, &mut slot).unwrap();
        assert_eq!(&slot[0..3], &[200.0, 100.0, 50.0]);
        assert_eq!(&slot[(2 * 4) * 3..(2 * 4) * 3 + 3], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn rejects_short_buffers() {
        let s = spec("nanodet");
        let px = vec![0u8; 10];
        let f = FrameRef { width: 8, height: 4, rgb: &px };
        let lb = Letterbox::plan(&s, 8, 4);
        let mut slot = vec![0.0; lb.slot_len()];
        assert!(matches!(
            Preprocessor::new().fill(&f, &s, &lb, &mut slot),
            Err(PreprocessError::BadFrame { .. })
        ));
    }
}
