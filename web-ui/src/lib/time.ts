// Time formatting and ranges. Times travel as RFC 3339 UTC strings; the UI shows local
// time (the control room's clock) with the zone in tooltips.

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

export function ms(t: string | number | Date): number {
  return typeof t === 'number' ? t : new Date(t).getTime();
}

export function iso(t: number | Date): string {
  return new Date(t).toISOString();
}

/** `2026-11-24 14:03:07` in local time. */
export function fmtDateTime(t: string | number | Date): string {
  const d = new Date(ms(t));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `14:03:07` in local time. */
export function fmtTime(t: string | number | Date): string {
  const d = new Date(ms(t));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `14:03` in local time. */
export function fmtHm(t: string | number | Date): string {
  const d = new Date(ms(t));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A duration such as `4.2 s`, `3 min 05 s`, `2 h 10 min`. */
export function fmtDuration(msecs: number): string {
  if (!Number.isFinite(msecs) || msecs < 0) return '–';
  if (msecs < MINUTE) return `${(msecs / SECOND).toFixed(msecs < 10 * SECOND ? 1 : 0)} s`;
  if (msecs < HOUR) return `${Math.floor(msecs / MINUTE)} min ${pad(Math.floor((msecs % MINUTE) / SECOND))} s`;
  return `${Math.floor(msecs / HOUR)} h ${pad(Math.floor((msecs % HOUR) / MINUTE))} min`;
}

/** "12 s ago", "5 min ago", or the date for older times. */
export function fmtAgo(t: string | number, now = Date.now()): string {
  const d = now - ms(t);
  if (d < 0) return fmtTime(t);
  if (d < MINUTE) return `${Math.max(0, Math.round(d / SECOND))} s ago`;
  if (d < HOUR) return `${Math.round(d / MINUTE)} min ago`;
  if (d < DAY) return `${Math.round(d / HOUR)} h ago`;
  return fmtDateTime(t);
}

/** Value for `<input type="datetime-local">` (local time, seconds). */
export function toLocalInput(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Parses a `datetime-local` value (local time); NaN when empty or invalid. */
export function fromLocalInput(s: string): number {
  if (!s) return NaN;
  return new Date(s).getTime();
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

export function fmtBitrate(bps: number | undefined): string {
  if (!bps) return '–';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mb/s` : `${Math.round(bps / 1e3)} kb/s`;
}
