// Events per hour as bars over a time range (SVG, no library). Clicking a bar narrows the
// search to that hour.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { fmtDateTime, fmtHm, HOUR, ms } from '../lib/time';
import { tickStep, ticks } from '../lib/timeline';

export function HourChart(p: {
  from: number;
  to: number;
  counts: { hour: string; count: number }[];
  onPick?: (hourStart: number) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(800);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  const height = 120;
  const pad = { l: 36, r: 8, t: 8, b: 20 };
  const first = Math.floor(p.from / HOUR) * HOUR;
  const hours = Math.max(1, Math.ceil((p.to - first) / HOUR));
  const by = new Map(p.counts.map((c) => [Math.floor(ms(c.hour) / HOUR) * HOUR, c.count]));
  const max = Math.max(1, ...by.values());
  const plotW = width - pad.l - pad.r;
  const plotH = height - pad.t - pad.b;
  const bw = plotW / hours;
  const x = (t: number) => pad.l + ((t - first) / (hours * HOUR)) * plotW;
  const total = [...by.values()].reduce((a, b) => a + b, 0);
  const step = Math.max(HOUR, tickStep({ start: first, end: first + hours * HOUR }, plotW, 70));
  const niceMax = max <= 5 ? max : Math.ceil(max / 5) * 5;

  const bars = [];
  for (let i = 0; i < hours; i++) {
    const t = first + i * HOUR;
    const c = by.get(t) ?? 0;
    if (!c) continue;
    const h = (c / niceMax) * plotH;
    bars.push(
      <rect
        key={t}
        class="bar"
        x={pad.l + i * bw + Math.min(1, bw * 0.1)}
        y={pad.t + plotH - h}
        width={Math.max(1, bw - Math.min(2, bw * 0.2))}
        height={h}
        onClick={() => p.onPick?.(t)}
      >
        <title>
          {fmtDateTime(t)}: {c} event{c === 1 ? '' : 's'}
        </title>
      </rect>,
    );
  }
  return (
    <div class="chart" ref={box} data-testid="hour-chart">
      <svg width={width} height={height} role="img" aria-label={`Events per hour: ${total} in range`}>
        <line class="axis" x1={pad.l} x2={width - pad.r} y1={pad.t + plotH} y2={pad.t + plotH} />
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line class="grid" x1={pad.l} x2={width - pad.r} y1={pad.t + plotH * (1 - f)} y2={pad.t + plotH * (1 - f)} />
            <text class="tick" x={pad.l - 6} y={pad.t + plotH * (1 - f) + 4} text-anchor="end">
              {Math.round(niceMax * f)}
            </text>
          </g>
        ))}
        {bars}
        {ticks({ start: first, end: first + hours * HOUR }, step).map((t) => (
          <text key={t} class="tick" x={x(t)} y={height - 5} text-anchor="middle">
            {step >= 24 * HOUR || new Date(t).getHours() === 0 ? new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : fmtHm(t)}
          </text>
        ))}
      </svg>
    </div>
  );
}
