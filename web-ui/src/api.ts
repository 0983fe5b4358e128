// The HTTP contract with panoptes (docs/api.md, /api/openapi.json): types of what it
// answers and one fetch wrapper that adds the CSRF header and turns error bodies
// (`{code, message, field?}`) into ApiError.

export type Role = 'admin' | 'operator' | 'viewer';
export type StreamRole = 'record' | 'live' | 'grid' | 'detect';
export type ReviewState = 'new' | 'acknowledged' | 'dismissed';

export interface Me {
  id: number;
  name: string;
  role: Role;
  csrf_token?: string;
}

export interface StreamStatus {
  camera: string;
  stream: string;
  roles: StreamRole[];
  url: string;
  state: 'disabled' | 'connecting' | 'streaming' | 'retrying' | 'auth_failed';
  codec?: string;
  width?: number;
  height?: number;
  fps?: number;
  bitrate_bps?: number;
  last_frame_unix_ms?: number;
  last_error?: string;
  next_attempt_unix_ms?: number;
  reconnects: number;
  frames: number;
  dropped_frames: number;
}

export interface CameraStream {
  name: string;
  roles: StreamRole[];
  /** Without credentials; null when the server cannot show it. */
  url: string | null;
  has_credentials: boolean;
}

export interface Camera {
  id: string;
  name: string;
  enabled: boolean;
  node?: string | null;
  managed_by: 'config' | 'api';
  streams: CameraStream[];
  zones: string[];
  lines: string[];
  /** Zones with polygons, lines, alert rules, motion and tracker settings. */
  analytics?: Record<string, unknown>;
}

export interface NewStream {
  name: string;
  url: string;
  roles: StreamRole[];
  username?: string;
  password?: string;
}

/** What POST/PATCH /api/cameras take: the configuration's camera table as JSON. */
export interface CameraBody {
  name: string;
  enabled: boolean;
  streams: NewStream[];
  analytics: Record<string, unknown> | null;
}

export interface EventDto {
  id: string;
  camera: string;
  label: string;
  sub_label: string | null;
  score_max: number;
  score_median: number;
  /** Normalised [x, y, w, h] of the best snapshot's box. */
  bbox: [number, number, number, number];
  zones: string[];
  start_time: string;
  end_time: string | null;
  review_state: ReviewState;
  reviewed_by: number | null;
  reviewed_at: string | null;
  review_note: string | null;
  alert?: boolean;
}

export interface EventPage {
  events: EventDto[];
  next: string | null;
}

export interface EventQuery {
  from?: string;
  to?: string;
  cameras?: string[];
  labels?: string[];
  zones?: string[];
  min_score?: number;
  review?: ReviewState[];
  sub_label?: string;
  alert?: boolean;
  after?: string;
  limit?: number;
}

export interface CountDto {
  hour?: string | null;
  label?: string | null;
  /** Counting line (`by=line`): its camera, name and crossing direction (`in`/`out`). */
  camera?: string | null;
  line?: string | null;
  line_id?: string | null;
  direction?: string | null;
  count: number;
}

export interface Segment {
  id: number;
  camera: string;
  stream: string;
  start_time: string;
  end_time: string | null;
  bytes: number | null;
  sha256: string | null;
  codec: string;
  url: string;
}

export interface ExportManifest {
  version: number;
  clip: string;
  sha256: string;
  bytes: number;
  camera: string;
  stream: string;
  codec: string;
  requested: { start: string; end: string };
  actual: { start: string; end: string };
  duration_seconds: number;
  frames: number;
  segments: { path: string; sha256: string; range: { start: string; end: string }; frames: number }[];
  gaps: { start: string; end: string }[];
  exported_by: string;
  exported_at: string;
  trim: string;
  /** Where to download the clip and its manifest. */
  download?: string;
  manifest?: string;
  /** The export's own audit entry. */
  audit?: { id: number; at: string; hash: string };
}

export interface RecordedSpan {
  camera: string;
  start_time: string;
  end_time: string;
}

export interface User {
  id: number;
  name: string;
  role: Role;
  cameras: string[];
  disabled: boolean;
  created_at: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  details?: unknown;
  /** Older name of `details`. */
  detail?: unknown;
  ip: string | null;
}

export interface AuditPage {
  entries: AuditEntry[];
  next: string | number | null;
}

export interface AuditQuery {
  limit: number;
  before?: string | number | null;
  action?: string;
  actor?: string;
}

/** An error answer, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrf: string | null = null;
let onUnauthorized: (() => void) | null = null;

/** Remembers the session's CSRF token (from login or /api/auth/me). */
export function setCsrf(token: string | null | undefined): void {
  csrf = token ?? null;
}

export function getCsrf(): string | null {
  return csrf;
}

/** Called when a request answers 401 (the session ended): the app shows the login. */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

async function toError(r: Response): Promise<ApiError> {
  const text = await r.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { code?: string; message?: string; field?: string };
    return new ApiError(r.status, body.code ?? 'http_' + r.status, body.message ?? r.statusText, body.field);
  } catch {
    return new ApiError(r.status, 'http_' + r.status, text.trim() || r.statusText || `HTTP ${r.status}`);
  }
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  signal?: AbortSignal;
  /** Do not treat 401 as "session ended" (the login form's own request). */
  quiet401?: boolean;
}

/** A raw request to the API with the session's CSRF header; throws ApiError unless 2xx. */
export async function request(path: string, opts: RequestOptions = {}): Promise<Response> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json' };
  let body: BodyInit | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['x-csrf-token'] = csrf;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, body, signal: opts.signal, credentials: 'same-origin' });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server cannot be reached');
  }
  if (!r.ok) {
    const err = await toError(r);
    if (r.status === 401 && !opts.quiet401) onUnauthorized?.();
    throw err;
  }
  return r;
}

/** A JSON request; `undefined` for 204. */
export async function json<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const r = await request(path, opts);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

/** `?a=1&b=x,y` from a record, skipping empty values. */
export function query(params: Record<string, string | number | boolean | string[] | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) {
      if (v.length) q.set(k, v.join(','));
    } else {
      q.set(k, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// --- endpoints -------------------------------------------------------------------------

/** Whether the server knows the `alert` filter (servers before it refuse unknown fields). */
let alertFilter = true;

async function events(q: EventQuery, signal?: AbortSignal): Promise<EventPage> {
  const path = () =>
    '/api/events' +
    query({
      from: q.from,
      to: q.to,
      cameras: q.cameras,
      labels: q.labels,
      zones: q.zones,
      min_score: q.min_score,
      review: q.review,
      sub_label: q.sub_label,
      alert: alertFilter ? q.alert : undefined,
      after: q.after,
      limit: q.limit,
    });
  try {
    return await json<EventPage>(path(), { signal });
  } catch (e) {
    if (q.alert !== undefined && alertFilter && e instanceof ApiError && e.status === 400 && /alert/.test(e.message)) {
      alertFilter = false;
      return json<EventPage>(path(), { signal });
    }
    throw e;
  }
}

export const api = {
  login: (name: string, password: string) =>
    json<Me>('/api/auth/login', { method: 'POST', body: { name, password }, quiet401: true }),
  logout: () => json<void>('/api/auth/logout', { method: 'POST', quiet401: true }),
  me: () => json<Me>('/api/auth/me', { quiet401: true }),
  setup: (token: string, name: string, password: string) =>
    json<{ id: number; name: string; role: Role }>('/api/setup', {
      method: 'POST',
      body: { token, name, password },
      quiet401: true,
    }),

  status: () => json<StreamStatus[]>('/api/cameras/status'),
  cameras: () => json<Camera[]>('/api/cameras'),
  createCamera: (c: Omit<CameraBody, 'analytics'> & { id: string; analytics?: Record<string, unknown> }) => json<Camera>('/api/cameras', { method: 'POST', body: c }),
  updateCamera: (id: string, patch: Partial<CameraBody>) =>
    json<Camera>(`/api/cameras/${encodeURIComponent(id)}`, { method: 'PATCH', body: patch }),
  deleteCamera: (id: string) => json<void>(`/api/cameras/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  detect: (id: string, seconds: number) =>
    request(`/api/cameras/${encodeURIComponent(id)}/detect`, { method: 'POST', body: { seconds } }),

  events: (q: EventQuery, signal?: AbortSignal) => events(q, signal),
  event: (id: string) => json<EventDto>(`/api/events/${encodeURIComponent(id)}`),
  review: (id: string, verdict: 'acknowledge' | 'dismiss', note: string) =>
    json<EventDto>(`/api/events/${encodeURIComponent(id)}/review`, {
      method: 'POST',
      body: { verdict, note: note.trim() ? note.trim() : null },
    }),
  counts: (
    q: { from: string; to: string; cameras?: string[]; labels?: string[]; by: 'hour' | 'label' | 'line' },
    signal?: AbortSignal,
  ) => json<CountDto[]>('/api/events/counts' + query(q), { signal }),
  snapshotUrl: (id: string, crop = false) =>
    `/api/events/${encodeURIComponent(id)}/snapshot${crop ? '?crop=true' : ''}`,

  recordings: (camera: string, from: string, to: string, stream?: string, signal?: AbortSignal) =>
    json<Segment[]>('/api/recordings' + query({ camera, stream, from, to }), { signal }),
  spans: (q: { cameras?: string[]; stream?: string; from: string; to: string; max_gap_secs?: number }, signal?: AbortSignal) =>
    json<RecordedSpan[]>('/api/recordings/spans' + query(q), { signal }),
  exportClip: (camera: string, from: string, to: string, stream?: string) =>
    json<ExportManifest>('/api/exports', { method: 'POST', body: { camera, stream, from, to } }),

  users: () => json<User[]>('/api/users'),
  createUser: (u: { name: string; password: string; role: Role; cameras: string[] }) =>
    json<User>('/api/users', { method: 'POST', body: u }),
  updateUser: (id: number, patch: Partial<{ role: Role; password: string; cameras: string[]; disabled: boolean }>) =>
    json<User>(`/api/users/${id}`, { method: 'PATCH', body: patch }),
  /** Users are never deleted: DELETE disables (sessions end, tokens are revoked). */
  disableUser: (id: number) => json<void>(`/api/users/${id}`, { method: 'DELETE' }),

  audit: (q: AuditQuery, signal?: AbortSignal) =>
    json<AuditPage>(
      '/api/audit' + query({ limit: q.limit, before: q.before ?? undefined, action: q.action, actor: q.actor }),
      { signal },
    ),
};
