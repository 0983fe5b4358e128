// Plays recorded segments (one fMP4 file each, served with range requests) in one <video>
// as a continuous wall-clock timeline: seek to an instant, play on into the next segment,
// skip gaps, report the wall time being shown.
import type { Segment } from '../api';
import { ms } from './time';
import { segmentAt } from './timeline';

export interface SegmentPlayerEvents {
  /** The wall time shown changed (while playing, or after a seek). */
  onTime?: (wallMs: number) => void;
  /** Nothing recorded at or after the asked instant. */
  onNoRecording?: (wallMs: number) => void;
  onPlayState?: (playing: boolean) => void;
  onError?: (message: string) => void;
}

export class SegmentPlayer {
  private segments: Segment[] = [];
  private index = -1;
  /** Media time (s) of the current file's first frame. */
  private base = 0;
  private pendingSeek: number | null = null;
  private wantPlay = false;
  private destroyed = false;
  private readonly off: (() => void)[] = [];
  private rate = 1;

  constructor(
    readonly video: HTMLVideoElement,
    private readonly ev: SegmentPlayerEvents = {},
  ) {
    const on = (name: string, f: () => void) => {
      video.addEventListener(name, f);
      this.off.push(() => video.removeEventListener(name, f));
    };
    on('loadedmetadata', () => this.onLoaded());
    on('timeupdate', () => {
      if (this.index >= 0 && this.pendingSeek === null) this.ev.onTime?.(this.wallTime());
    });
    on('ended', () => this.next());
    on('play', () => this.ev.onPlayState?.(true));
    on('pause', () => this.ev.onPlayState?.(false));
    on('error', () => {
      const err = video.error;
      if (err) this.ev.onError?.(`Cannot play this recording (${err.message || 'media error ' + err.code})`);
    });
  }

  /** Adds segments (a newly loaded stretch of the timeline) to those known. */
  setSegments(list: Segment[]): void {
    const current = this.segments[this.index];
    const by = new Map(this.segments.map((s) => [s.id, s]));
    for (const s of list) by.set(s.id, s);
    this.segments = [...by.values()].sort((a, b) => ms(a.start_time) - ms(b.start_time));
    this.index = current ? this.segments.findIndex((s) => s.id === current.id) : -1;
  }

  get currentSegment(): Segment | undefined {
    return this.segments[this.index];
  }

  /** The wall time (ms) of the picture shown. */
  wallTime(): number {
    const s = this.segments[this.index];
    if (!s) return NaN;
    return ms(s.start_time) + (this.video.currentTime - this.base) * 1000;
  }

  /** Shows instant `t` (wall ms); plays on if playing. */
  seek(t: number): void {
    const i = segmentAt(this.segments, t);
    if (i < 0) {
      this.ev.onNoRecording?.(t);
      return;
    }
    const seg = this.segments[i]!;
    const target = Math.max(t, ms(seg.start_time));
    if (i === this.index && this.video.readyState >= 1) {
      this.video.currentTime = this.base + (target - ms(seg.start_time)) / 1000;
      this.ev.onTime?.(target);
      return;
    }
    this.load(i, target);
  }

  private load(i: number, target: number): void {
    const seg = this.segments[i]!;
    this.index = i;
    this.pendingSeek = target;
    this.video.src = seg.url;
    this.video.load();
    this.ev.onTime?.(target);
  }

  private onLoaded(): void {
    const seg = this.segments[this.index];
    if (!seg) return;
    const v = this.video;
    // Recorded fragments keep the camera's timestamps: the file may not start at 0.
    this.base = v.seekable.length ? v.seekable.start(0) : 0;
    if (this.pendingSeek !== null) {
      const off = Math.max(0, (this.pendingSeek - ms(seg.start_time)) / 1000);
      this.pendingSeek = null;
      v.currentTime = this.base + off;
    }
    v.playbackRate = this.rate;
    if (this.wantPlay) v.play().catch(() => {});
  }

  private next(): void {
    const n = this.index + 1;
    if (n < this.segments.length) {
      this.load(n, ms(this.segments[n]!.start_time));
    } else {
      this.ev.onPlayState?.(false);
    }
  }

  play(): void {
    this.wantPlay = true;
    if (this.index < 0) return;
    this.video.play().catch(() => {});
  }

  pause(): void {
    this.wantPlay = false;
    this.video.pause();
  }

  get playing(): boolean {
    return this.wantPlay;
  }

  setRate(r: number): void {
    this.rate = r;
    this.video.playbackRate = r;
  }

  destroy(): void {
    this.destroyed = true;
    for (const f of this.off) f();
    this.video.removeAttribute('src');
    this.video.load();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}
