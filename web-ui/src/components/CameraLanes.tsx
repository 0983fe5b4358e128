// Every camera's recorded spans in the playback window, one thin lane each: where there is
// video, at a glance. A click plays that camera at that instant.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { RecordedSpan } from '../api';
import { fmtDateTime, fmtTime, ms } from '../lib/time';
import { type Window, tOf, xOf } from '../lib/timeline';

const LANE = 14;

export function CameraLanes(p: {
  window: Window;
  cameras: { id: string; name: string }[];
  spans: RecordedSpan[];
  current: string;
  playhead: number | null;
  onPick: (camera: string, t: number) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(900);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);
  // The same scale as the timeline above, so the two line up.
  const x = (t: number) => xOf(t, p.window, width);
  const by = new Map<string, RecordedSpan[]>();
  for (const s of p.spans) {
    const list = by.get(s.camera) ?? [];
    list.push(s);
    by.set(s.camera, list);
  }
  const height = p.cameras.length * LANE;
  const playX = p.playhead !== null && Number.isFinite(p.playhead) ? x(p.playhead) : null;
  return (
    <div class="lanes" ref={box} data-testid="camera-lanes">
      <svg width={width} height={height} role="img" aria-label="Recorded video per camera">
        {p.cameras.map((c, i) => (
          <g
            key={c.id}
            class={'lane' + (c.id === p.current ? ' current' : '')}
            transform={`translate(0, ${i * LANE})`}
            onClick={(e) => {
              const r = box.current!.getBoundingClientRect();
              p.onPick(c.id, tOf(e.clientX - r.left, p.window, width));
            }}
          >
            <rect class="lane-bg" x={0} y={0} width={width} height={LANE - 2} />
            {(by.get(c.id) ?? []).map((s) => {
              const a = Math.max(0, x(ms(s.start_time)));
              const b = Math.min(width, x(ms(s.end_time)));
              if (b <= 0 || a >= width) return null;
              return (
                <rect key={s.start_time} class="lane-span" x={a} y={2} width={Math.max(1, b - a)} height={LANE - 6}>
                  <title>
                    {c.name}: recorded {fmtDateTime(s.start_time)} – {fmtTime(s.end_time)}
                  </title>
                </rect>
              );
            })}
            <text class="lane-name" x={6} y={LANE - 4}>
              {c.name}
            </text>
          </g>
        ))}
        {playX !== null && playX >= 0 && playX <= width && <line class="lane-playhead" x1={playX} x2={playX} y1={0} y2={height} />}
      </svg>
    </div>
  );
}
