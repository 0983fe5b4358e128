//! Boxes and points in frame pixels.

use serde::{Deserialize, Serialize};

/// An axis-aligned box, x1/y1 inclusive top-left, x2/y2 bottom-right, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

/// A point in pixels (or, in zone configuration, in 0..1 frame units).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal.
    pub x: f32,
    /// Vertical (down).
    pub y: f32,
}

impl BBox {
    /// A box from its corners.
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// Width (0 if inverted).
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    /// Height (0 if inverted).
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    /// Area.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Centre.
    pub fn center(&self) -> Point {
        Point { x: (self.x1 + self.x2) / 2.0, y: (self.y1 + self.y2) / 2.0 }
    }

    /// Middle of the bottom edge: where an object touches the ground.
    pub fn bottom_center(&self) -> Point {
        Point { x: (self.x1 + self.x2) / 2.0, y: self.y2 }
    }

    /// Intersection over union (0 when either box is empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        let iw = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let ih = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// Clipped to `0..w`, `0..h`.
    pub fn clip(&self, w: f32, h: f32) -> BBox {
        BBox {
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
            x2: self.x2.clamp(0.0, w),
            y2: self.y2.clamp(0.0, h),
        }
    }

    /// Shifted by (dx, dy).
    pub fn translate(&self, dx: f32, dy: f32) -> BBox {
        BBox { x1: self.x1 + dx, y1: self.y1 + dy, x2: self.x2 + dx, y2: self.y2 + dy }
    }

    /// Whether every coordinate is finite.
    pub fn is_finite(&self) -> bool {
        self.x1.is_finite() && self.y1.is_finite() && self.x2.is_finite() && self.y2.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_basics() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let half = a.iou(&BBox::new(5.0, 0.0, 15.0, 10.0));
        assert!((half - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(BBox::default().iou(&BBox::default()), 0.0);
    }
}
