// Pure timeline arithmetic for playback: time ↔ pixels, tick steps, recorded spans from
// segments, and which segment plays a given instant. No DOM here (unit-tested).

import { DAY, HOUR, MINUTE, SECOND, ms } from './time';

export interface Span {
  start: number;
  end: number;
}

export interface Window {
  start: number;
  end: number;
}

export function xOf(t: number, w: Window, width: number): number {
  return ((t - w.start) / (w.end - w.start)) * width;
}

export function tOf(x: number, w: Window, width: number): number {
  return w.start + (x / Math.max(1, width)) * (w.end - w.start);
}

const STEPS = [
  SECOND, 5 * SECOND, 10 * SECOND, 30 * SECOND,
  MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY,
];

/** The smallest "round" step that keeps ticks at least `minPx` apart. */
export function tickStep(w: Window, width: number, minPx = 80): number {
  const perPx = (w.end - w.start) / Math.max(1, width);
  return STEPS.find((s) => s / perPx >= minPx) ?? DAY;
}

/** Tick times (multiples of `step` in local time) inside the window. */
export function ticks(w: Window, step: number): number[] {
  const offset = new Date(w.start).getTimezoneOffset() * MINUTE;
  let t = Math.ceil((w.start - offset) / step) * step + offset;
  const out: number[] = [];
  for (; t <= w.end && out.length < 500; t += step) out.push(t);
  return out;
}

export interface SegmentLike {
  start_time: string;
  end_time: string | null;
}

/**
 * Recorded spans: segments merged where they touch (gaps under `tolerance` ms are joined).
 * An open segment (no end) lasts until `now`.
 */
export function recordedSpans(segments: SegmentLike[], now: number, tolerance = 1500): Span[] {
  const spans = segments
    .map((s) => ({ start: ms(s.start_time), end: s.end_time ? ms(s.end_time) : now }))
    .filter((s) => Number.isFinite(s.start) && s.end > s.start)
    .sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end + tolerance) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

/**
 * The index of the segment that plays instant `t`: the one containing it, else the first
 * that starts after it (playback skips gaps). -1 when nothing is recorded at or after `t`.
 */
export function segmentAt(segments: SegmentLike[], t: number, now = Date.now()): number {
  let after = -1;
  let afterStart = Infinity;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const start = ms(s.start_time);
    const end = s.end_time ? ms(s.end_time) : now;
    if (t >= start && t < end) return i;
    if (start > t && start < afterStart) {
      after = i;
      afterStart = start;
    }
  }
  return after;
}

/** A window of `span` ms centred on `t`. */
export function around(t: number, span: number): Window {
  return { start: t - span / 2, end: t + span / 2 };
}

/** Zooms by `factor` (< 1 zooms in) keeping time `anchor` under the same pixel. */
export function zoom(w: Window, factor: number, anchor: number, min = 30 * SECOND, max = 7 * DAY): Window {
  const span = Math.min(max, Math.max(min, (w.end - w.start) * factor));
  const frac = (anchor - w.start) / (w.end - w.start);
  const start = anchor - frac * span;
  return { start, end: start + span };
}
