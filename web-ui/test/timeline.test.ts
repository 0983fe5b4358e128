import { describe, expect, it } from 'vitest';
import { recordedSpans, segmentAt, tickStep, ticks, tOf, xOf, zoom } from '../src/lib/timeline';
import { HOUR, MINUTE, SECOND } from '../src/lib/time';

const t0 = Date.UTC(2026, 10, 24, 12, 0, 0);
const seg = (a: number, b: number | null) => ({
  start_time: new Date(t0 + a * SECOND).toISOString(),
  end_time: b === null ? null : new Date(t0 + b * SECOND).toISOString(),
});

describe('timeline', () => {
  it('maps time to pixels and back', () => {
    const w = { start: t0, end: t0 + HOUR };
    expect(xOf(t0 + HOUR / 2, w, 1000)).toBe(500);
    expect(tOf(250, w, 1000)).toBe(t0 + HOUR / 4);
  });

  it('merges touching segments into spans and keeps gaps', () => {
    const spans = recordedSpans([seg(60, 120), seg(0, 60), seg(121, 180), seg(300, 360)], t0 + HOUR);
    expect(spans).toEqual([
      { start: t0, end: t0 + 180 * SECOND },
      { start: t0 + 300 * SECOND, end: t0 + 360 * SECOND },
    ]);
  });

  it('finds the segment playing an instant, or the next after a gap', () => {
    const segs = [seg(0, 60), seg(60, 120), seg(300, 360)];
    expect(segmentAt(segs, t0 + 30 * SECOND)).toBe(0);
    expect(segmentAt(segs, t0 + 60 * SECOND)).toBe(1);
    expect(segmentAt(segs, t0 + 200 * SECOND)).toBe(2);
    expect(segmentAt(segs, t0 + 400 * SECOND)).toBe(-1);
    expect(segmentAt(segs, t0 - 10 * SECOND)).toBe(0);
  });

  it('zooms around an anchor that stays put', () => {
    const w = { start: t0, end: t0 + HOUR };
    const anchor = t0 + HOUR / 4;
    const z = zoom(w, 0.5, anchor);
    expect(z.end - z.start).toBe(HOUR / 2);
    expect((anchor - z.start) / (z.end - z.start)).toBeCloseTo(0.25);
    expect(zoom(w, 1e-6, anchor).end - zoom(w, 1e-6, anchor).start).toBe(30 * SECOND);
  });

  it('picks round tick steps', () => {
    expect(tickStep({ start: t0, end: t0 + HOUR }, 1200, 80)).toBe(5 * MINUTE);
    const ts = ticks({ start: t0 + 1, end: t0 + HOUR }, 15 * MINUTE);
    expect(ts.length).toBe(4);
    expect(ts.every((t) => new Date(t).getMinutes() % 15 === 0 && new Date(t).getSeconds() === 0)).toBe(true);
  });
});
