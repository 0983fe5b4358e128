// Wall layout and stream choice (pure, unit-tested).
import type { StreamStatus } from '../api';

/** Columns × rows for `n` tiles on a wide screen. */
export function gridOf(n: number): { cols: number; rows: number } {
  const cols = Math.ceil(Math.sqrt(n));
  return { cols, rows: Math.ceil(n / cols) };
}

/** The stream a view plays, as the server picks it (grid: grid role, else live; focus: the reverse). */
export function streamFor(list: StreamStatus[], camera: string, view: 'grid' | 'focus'): StreamStatus | undefined {
  const mine = list.filter((s) => s.camera === camera);
  const order = view === 'grid' ? (['grid', 'live'] as const) : (['live', 'grid'] as const);
  for (const r of order) {
    const s = mine.find((x) => x.roles.includes(r));
    if (s) return s;
  }
  return mine[0];
}
