// A camera's timeline: recorded spans, events as markers, the playhead; click or drag to
// scrub, wheel to zoom around the pointer, shift+wheel to pan.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { EventDto } from '../api';
import { fmtDateTime, fmtHm, fmtTime, ms, DAY, MINUTE } from '../lib/time';
import { type Span, type Window, tOf, tickStep, ticks, xOf, zoom } from '../lib/timeline';

export function Timeline(p: {
  window: Window;
  spans: Span[];
  events: EventDto[];
  playhead: number | null;
  highlight?: string | null;
  onSeek: (t: number) => void;
  onWindow: (w: Window) => void;
  onEvent?: (e: EventDto) => void;
  label: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(900);
  const [hover, setHover] = useState<number | null>(null);
  const [drag, setDrag] = useState<number | null>(null);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  const w = p.window;
  const x = (t: number) => xOf(t, w, width);
  const timeAt = (clientX: number) => {
    const r = box.current!.getBoundingClientRect();
    return tOf(clientX - r.left, w, width);
  };
  const step = tickStep(w, width, 90);
  const span = w.end - w.start;
  const height = 86;
  const spanY = 30;
  const spanH = 22;

  const onWheel = (e: WheelEvent) => {
    e.preventDefault();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      const d = ((e.shiftKey ? e.deltaY : e.deltaX) / width) * span;
      p.onWindow({ start: w.start + d, end: w.end + d });
    } else {
      p.onWindow(zoom(w, e.deltaY > 0 ? 1.25 : 0.8, timeAt(e.clientX)));
    }
  };

  const playX = p.playhead !== null && Number.isFinite(p.playhead) ? x(p.playhead) : null;
  const shownT = drag ?? hover;
  return (
    <div
      class="timeline"
      ref={box}
      data-testid="timeline"
      role="slider"
      tabIndex={0}
      aria-label={p.label}
      aria-valuemin={w.start}
      aria-valuemax={w.end}
      aria-valuenow={p.playhead ?? undefined}
      aria-valuetext={p.playhead ? fmtDateTime(p.playhead) : 'no position'}
      onWheel={onWheel}
      onPointerDown={(e) => {
        if ((e.target as Element).closest('.ev-marker')) return;
        (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
        setDrag(timeAt(e.clientX));
      }}
      onPointerMove={(e) => {
        const t = timeAt(e.clientX);
        setHover(t);
        if (drag !== null) setDrag(t);
      }}
      onPointerUp={(e) => {
        if (drag === null) return;
        const t = timeAt(e.clientX);
        setDrag(null);
        p.onSeek(t);
      }}
      onPointerLeave={() => setHover(null)}
    >
      <svg width={width} height={height}>
        {ticks(w, step).map((t) => (
          <g key={t}>
            <line class="tl-grid" x1={x(t)} x2={x(t)} y1={16} y2={height} />
            <text class="tick" x={x(t) + 3} y={12}>
              {step >= DAY
                ? new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
                : step < MINUTE
                  ? fmtTime(t)
                  : fmtHm(t)}
            </text>
          </g>
        ))}
        <rect class="tl-track" x={0} y={spanY} width={width} height={spanH} />
        {p.spans.map((s) => {
          const a = Math.max(0, x(s.start));
          const b = Math.min(width, x(s.end));
          if (b <= 0 || a >= width) return null;
          return (
            <rect key={s.start} class="tl-span" x={a} y={spanY} width={Math.max(1, b - a)} height={spanH}>
              <title>
                Recorded {fmtDateTime(s.start)} – {fmtDateTime(s.end)}
              </title>
            </rect>
          );
        })}
        {p.events.map((e) => {
          const a = x(ms(e.start_time));
          const b = e.end_time ? x(ms(e.end_time)) : a + 2;
          if (b < 0 || a > width) return null;
          return (
            <g
              key={e.id}
              class={'ev-marker label-' + e.label + (p.highlight === e.id ? ' hl' : '') + (e.alert === false ? '' : ' alert')}
              onClick={(ev) => {
                ev.stopPropagation();
                p.onEvent?.(e);
              }}
            >
              <rect x={a} y={spanY + spanH + 6} width={Math.max(3, b - a)} height={10} rx={2} />
              <title>
                {e.label} {e.sub_label ?? ''} at {fmtTime(e.start_time)} ({Math.round(e.score_max * 100)}%)
              </title>
            </g>
          );
        })}
        {playX !== null && playX >= 0 && playX <= width && (
          <g class="tl-playhead">
            <line x1={playX} x2={playX} y1={16} y2={height} />
            <path d={`M${playX - 5} 16 L${playX + 5} 16 L${playX} 22 Z`} />
          </g>
        )}
        {shownT !== null && (
          <g class="tl-hover">
            <line x1={x(shownT)} x2={x(shownT)} y1={spanY} y2={spanY + spanH} />
            <text x={Math.min(width - 60, x(shownT) + 4)} y={height - 4}>
              {fmtTime(shownT)}
            </text>
          </g>
        )}
      </svg>
    </div>
  );
}
