// WHEP client (RFC 9725) for the live relay: one RTCPeerConnection per video, receive
// only. POST the offer to /api/live/{camera}/whep?view=grid|focus, set the answer, and
// DELETE the session's Location when done. The server is ICE-lite and puts every candidate
// in its answer, so there is no trickle ICE.
//
// A LivePlayer keeps a video playing: it reconnects with backoff when the connection
// fails or frames stop, and reports a clear state for the tile to show (including the
// codec error for H.265 cameras in browsers without H.265).
import { ApiError, getCsrf } from '../api';

export type View = 'grid' | 'focus';

export type PlayerState =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'playing' }
  | { kind: 'stalled' }
  | { kind: 'error'; message: string; retryInMs: number }
  | { kind: 'unsupported'; message: string };

export interface LiveStats {
  camera: string;
  view: View;
  state: PlayerState['kind'];
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  videoWidth: number;
  videoHeight: number;
  fps: number;
  /** Milliseconds from POST to the first frame shown, for this connection. */
  firstFrameMs: number | null;
  jitterBufferMs: number | null;
  packetsLost: number;
}

/** What the browser can play, for the codec message. */
export function browserHasH265(): boolean {
  const caps = (RTCRtpReceiver as unknown as { getCapabilities?: (k: string) => RTCRtpCapabilities | null })
    .getCapabilities?.('video');
  return !!caps?.codecs.some((c) => /h265|hevc/i.test(c.mimeType));
}

export const H265_MESSAGE =
  'This camera streams H.265, which this browser cannot play; configure an H.264 sub stream';

const players = new Set<LivePlayer>();

/** Every live player on the page (for the status bar and for tests reading stats). */
export function livePlayers(): LivePlayer[] {
  return [...players];
}

const BACKOFF = [1000, 2000, 4000, 8000, 15000];

export class LivePlayer {
  private pc: RTCPeerConnection | null = null;
  private location: string | null = null;
  private stopped = false;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private lastFrames = 0;
  private lastFramesAt = 0;
  private lastFpsSample = { frames: 0, at: 0 };
  private fps = 0;
  private t0 = 0;
  firstFrameMs: number | null = null;
  state: PlayerState = { kind: 'connecting', attempt: 0 };

  constructor(
    readonly camera: string,
    readonly view: View,
    readonly video: HTMLVideoElement,
    private readonly onState: (s: PlayerState) => void,
  ) {
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    players.add(this);
    void this.connect();
  }

  private set(s: PlayerState) {
    this.state = s;
    if (!this.stopped) this.onState(s);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.set({ kind: 'connecting', attempt: this.attempt });
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      const stream = e.streams[0] ?? new MediaStream([e.track]);
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this.retry('connection lost');
    };
    this.t0 = performance.now();
    this.firstFrameMs = null;
    const rvfc = (this.video as HTMLVideoElement & { requestVideoFrameCallback?: (cb: () => void) => number })
      .requestVideoFrameCallback;
    rvfc?.call(this.video, () => {
      if (pc !== this.pc) return;
      this.firstFrameMs = performance.now() - this.t0;
      // Shown at once; the watchdog keeps checking that frames keep coming.
      this.lastFramesAt = performance.now();
      if (this.state.kind !== 'playing') this.set({ kind: 'playing' });
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const url = `/api/live/${encodeURIComponent(this.camera)}/whep?view=${this.view}`;
      const headers: Record<string, string> = { 'content-type': 'application/sdp' };
      const csrf = getCsrf();
      if (csrf) headers['x-csrf-token'] = csrf;
      const r = await fetch(url, { method: 'POST', headers, body: pc.localDescription!.sdp, credentials: 'same-origin' });
      const body = await r.text();
      if (this.stopped || pc !== this.pc) {
        if (r.status === 201) this.deleteSession(r.headers.get('location'));
        return;
      }
      if (r.status !== 201) {
        let err: { code?: string; message?: string } = {};
        try {
          err = JSON.parse(body) as typeof err;
        } catch {
          /* not JSON */
        }
        throw new ApiError(r.status, err.code ?? 'http_' + r.status, err.message ?? (body || r.statusText));
      }
      this.location = r.headers.get('location');
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      this.lastFramesAt = performance.now();
      this.lastFrames = 0;
      this.startWatchdog();
    } catch (e) {
      if (this.stopped || pc !== this.pc) return;
      if (e instanceof ApiError && e.code === 'codec_unsupported') {
        this.teardown();
        this.set({ kind: 'unsupported', message: H265_MESSAGE });
        return;
      }
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
        this.teardown();
        this.set({ kind: 'error', message: e.message || 'Not available', retryInMs: 0 });
        return;
      }
      this.retry(e instanceof Error ? e.message : String(e));
    }
  }

  private startWatchdog() {
    this.stopWatchdog();
    this.watchdog = setInterval(() => void this.check(), 1000);
  }

  private stopWatchdog() {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
  }

  /** Playing while frames keep coming; reconnects after 8 s without one. */
  private async check() {
    const s = await this.rawStats();
    const now = performance.now();
    if (s.framesDecoded > this.lastFrames) {
      this.lastFrames = s.framesDecoded;
      this.lastFramesAt = now;
      this.attempt = 0;
      if (this.state.kind !== 'playing') this.set({ kind: 'playing' });
    } else if (now - this.lastFramesAt > 8000) {
      this.retry('no picture for 8 s');
      return;
    } else if (now - this.lastFramesAt > 2500 && this.state.kind === 'playing') {
      this.set({ kind: 'stalled' });
    }
    if (now - this.lastFpsSample.at >= 2000) {
      if (this.lastFpsSample.at) {
        this.fps = ((s.framesDecoded - this.lastFpsSample.frames) * 1000) / (now - this.lastFpsSample.at);
      }
      this.lastFpsSample = { frames: s.framesDecoded, at: now };
    }
  }

  private retry(why: string) {
    if (this.stopped) return;
    this.teardown();
    const wait = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)]!;
    this.attempt++;
    this.set({ kind: 'error', message: why, retryInMs: wait });
    this.timer = setTimeout(() => void this.connect(), wait);
  }

  private deleteSession(location: string | null) {
    if (!location) return;
    const headers: Record<string, string> = {};
    const csrf = getCsrf();
    if (csrf) headers['x-csrf-token'] = csrf;
    // keepalive: the DELETE still goes out when the page is being left.
    fetch(location, { method: 'DELETE', headers, keepalive: true, credentials: 'same-origin' }).catch(() => {});
  }

  private teardown() {
    this.stopWatchdog();
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
    this.deleteSession(this.location);
    this.location = null;
  }

  /** Retries now (a user's click on a failed tile). */
  retryNow() {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.attempt = 0;
    this.teardown();
    void this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.teardown();
    this.video.srcObject = null;
    players.delete(this);
  }

  private async rawStats() {
    let framesDecoded = 0;
    let frameWidth = 0;
    let frameHeight = 0;
    let jitterBufferMs: number | null = null;
    let packetsLost = 0;
    const pc = this.pc;
    if (pc) {
      (await pc.getStats()).forEach((r: Record<string, unknown>) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          framesDecoded = Number(r.framesDecoded ?? 0);
          frameWidth = Number(r.frameWidth ?? 0);
          frameHeight = Number(r.frameHeight ?? 0);
          packetsLost = Number(r.packetsLost ?? 0);
          const delay = Number(r.jitterBufferDelay ?? 0);
          const emitted = Number(r.jitterBufferEmittedCount ?? 0);
          if (emitted > 0) jitterBufferMs = (delay / emitted) * 1000;
        }
      });
    }
    return { framesDecoded, frameWidth, frameHeight, jitterBufferMs, packetsLost };
  }

  async stats(): Promise<LiveStats> {
    const s = await this.rawStats();
    return {
      camera: this.camera,
      view: this.view,
      state: this.state.kind,
      ...s,
      videoWidth: this.video.videoWidth,
      videoHeight: this.video.videoHeight,
      fps: Math.round(this.fps * 10) / 10,
      firstFrameMs: this.firstFrameMs === null ? null : Math.round(this.firstFrameMs),
    };
  }
}

// For operators' diagnostics and the browser tests: the stats of every live video.
declare global {
  interface Window {
    panoptesLive?: () => Promise<LiveStats[]>;
  }
}
window.panoptesLive = () => Promise.all(livePlayers().map((p) => p.stats()));

// Leaving the page ends its sessions at once (keepalive DELETEs) instead of leaving the
// server to notice the silence.
window.addEventListener('pagehide', (e) => {
  if (!e.persisted) for (const p of livePlayers()) p.stop();
});
