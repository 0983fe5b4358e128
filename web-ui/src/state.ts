// App-wide state: the logged-in user, the cameras (names, streams, zones), their live
// stream status, and the alert stream (Server-Sent Events). Small observable values with a
// hook, no framework.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, type Camera, type EventDto, type Me, type StreamStatus } from './api';

export class Value<T> {
  private subs = new Set<(v: T) => void>();
  constructor(private v: T) {}
  get(): T {
    return this.v;
  }
  set(v: T): void {
    if (Object.is(v, this.v)) return;
    this.v = v;
    for (const s of [...this.subs]) s(v);
  }
  subscribe(f: (v: T) => void): () => void {
    this.subs.add(f);
    return () => this.subs.delete(f);
  }
}

export function useValue<T>(v: Value<T>): T {
  const [x, setX] = useState(v.get());
  useEffect(() => {
    setX(v.get());
    return v.subscribe(setX);
  }, [v]);
  return x;
}

export const me = new Value<Me | null>(null);
export const cameras = new Value<Camera[]>([]);
export const status = new Value<StreamStatus[]>([]);
/** Whether GET /api/cameras exists on this server (else cameras come from the status). */
export const camerasApi = new Value<boolean | null>(null);

export function canReview(m: Me | null): boolean {
  return m?.role === 'admin' || m?.role === 'operator';
}

export function isAdmin(m: Me | null): boolean {
  return m?.role === 'admin';
}

/** Cameras from the status board, for servers without GET /api/cameras. */
export function camerasFromStatus(list: StreamStatus[]): Camera[] {
  const by = new Map<string, Camera>();
  for (const s of list) {
    let c = by.get(s.camera);
    if (!c) {
      c = { id: s.camera, name: s.camera, enabled: true, managed_by: 'config', streams: [], zones: [], lines: [] };
      by.set(s.camera, c);
    }
    c.streams.push({ name: s.stream, roles: s.roles, url: s.url, has_credentials: false });
    if (s.state === 'disabled') c.enabled = false;
  }
  return [...by.values()].sort((a, b) => a.id.localeCompare(b.id));
}

export async function refreshStatus(): Promise<void> {
  try {
    status.set(await api.status());
    if (camerasApi.get() === false) cameras.set(camerasFromStatus(status.get()));
  } catch {
    /* the banner shows the connection state */
  }
}

export async function refreshCameras(): Promise<void> {
  if (camerasApi.get() !== false) {
    try {
      const list = await api.cameras();
      camerasApi.set(true);
      cameras.set([...list].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id)));
      return;
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 405)) throw e;
      camerasApi.set(false);
    }
  }
  if (!status.get().length) status.set(await api.status());
  cameras.set(camerasFromStatus(status.get()));
}

export function cameraName(id: string): string {
  return cameras.get().find((c) => c.id === id)?.name ?? id;
}

// --- alert stream (SSE) ---------------------------------------------------------------

/** A notification from /api/events/stream. */
export interface LiveEvent {
  kind: 'start' | 'update' | 'end' | 'review' | string;
  id: string;
  camera: string;
  label?: string;
  state?: string;
  alert?: boolean;
}

export const streamState = new Value<'connecting' | 'open' | 'down'>('connecting');
/** Alerts raised since the page loaded, by camera: when (ms) and the label. */
export const alertsByCamera = new Value<Record<string, { at: number; label: string; id: string }>>({});
/** Alerts that arrived since the review queue was last on screen. */
export const unseenAlerts = new Value(0);
const alerted = new Set<string>();
const listeners = new Set<(e: LiveEvent) => void>();
let source: EventSource | null = null;

export function onLiveEvent(f: (e: LiveEvent) => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** Whether a live notification is an alert (older servers send no `alert`: every start is). */
export function isAlert(e: { alert?: boolean }): boolean {
  return e.alert !== false;
}

export function startAlertStream(): void {
  if (source) return;
  streamState.set('connecting');
  const es = new EventSource('/api/events/stream');
  source = es;
  es.onopen = () => streamState.set('open');
  es.onerror = () => {
    // EventSource reconnects by itself; CLOSED means it gave up (e.g. 401).
    streamState.set(es.readyState === EventSource.CLOSED ? 'down' : 'connecting');
    if (es.readyState === EventSource.CLOSED && source === es) {
      source = null;
      setTimeout(() => me.get() && startAlertStream(), 5000);
    }
  };
  const handle = (kind: string) => (m: MessageEvent<string>) => {
    let data: Partial<LiveEvent>;
    try {
      data = JSON.parse(m.data) as Partial<LiveEvent>;
    } catch {
      return;
    }
    const e: LiveEvent = { ...data, kind: data.kind ?? kind, id: String(data.id ?? ''), camera: String(data.camera ?? '') };
    // An alert pulses its camera once: when it starts, or when a later update makes an
    // event an alert (it entered a required zone).
    const raised = e.kind === 'start' ? isAlert(e) : (e.kind === 'update' || e.kind === 'end') && e.alert === true;
    if (raised && e.camera && !alerted.has(e.id)) {
      if (alerted.size > 10000) alerted.clear();
      alerted.add(e.id);
      alertsByCamera.set({ ...alertsByCamera.get(), [e.camera]: { at: Date.now(), label: e.label ?? '', id: e.id } });
      if (!location.hash.startsWith('#/review')) unseenAlerts.set(unseenAlerts.get() + 1);
    }
    for (const f of [...listeners]) f(e);
  };
  for (const k of ['start', 'update', 'end', 'review', 'message']) es.addEventListener(k, handle(k) as EventListener);
}

export function stopAlertStream(): void {
  source?.close();
  source = null;
  streamState.set('connecting');
}

/** Fetches one event for a live notification (the stream carries only its summary). */
export async function eventFor(e: LiveEvent): Promise<EventDto | null> {
  try {
    return await api.event(e.id);
  } catch {
    return null;
  }
}
