// One live video (a wall tile or the focused view): owns a LivePlayer while mounted and
// overlays its state, so a tile is never a silent black square.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { StreamStatus } from '../api';
import { fmtBitrate } from '../lib/time';
import { LivePlayer, type PlayerState, type View } from './whep';

export interface LiveVideoProps {
  camera: string;
  name: string;
  view: View;
  /** The status of the stream this view plays (for offline reasons and figures). */
  stream?: StreamStatus | undefined;
  alert?: { label: string; at: number } | null | undefined;
  index?: number;
  onActivate?: () => void;
  big?: boolean;
}

function stateText(s: PlayerState, stream?: StreamStatus): { text: string; kind: string } | null {
  if (stream && (stream.state === 'retrying' || stream.state === 'auth_failed')) {
    return {
      kind: 'bad',
      text: (stream.state === 'auth_failed' ? 'Camera refused the credentials: ' : 'Camera offline: ') + (stream.last_error ?? ''),
    };
  }
  if (stream?.state === 'disabled') return { kind: 'muted', text: 'Camera disabled' };
  switch (s.kind) {
    case 'playing':
      return null;
    case 'connecting':
      return { kind: 'muted', text: s.attempt ? `Reconnecting (attempt ${s.attempt + 1})…` : 'Connecting…' };
    case 'stalled':
      return { kind: 'warn', text: 'No new frames…' };
    case 'error':
      return {
        kind: 'bad',
        text: s.retryInMs ? `${s.message}; retrying in ${Math.round(s.retryInMs / 1000)} s` : s.message,
      };
    case 'unsupported':
      return { kind: 'bad', text: s.message };
  }
}

export function LiveVideo(p: LiveVideoProps) {
  const video = useRef<HTMLVideoElement>(null);
  const player = useRef<LivePlayer | null>(null);
  const [state, setState] = useState<PlayerState>({ kind: 'connecting', attempt: 0 });

  useEffect(() => {
    const v = video.current!;
    const pl = new LivePlayer(p.camera, p.view, v, setState);
    player.current = pl;
    return () => {
      pl.stop();
      player.current = null;
    };
  }, [p.camera, p.view]);

  const overlay = stateText(state, p.stream);
  const alerting = !!p.alert && Date.now() - p.alert.at < 30000;
  const s = p.stream;
  return (
    <div
      class={'tile' + (alerting ? ' alerting' : '') + (p.big ? ' big' : '') + (state.kind === 'playing' ? ' playing' : '')}
      data-testid={p.view === 'focus' ? 'focus-video' : 'tile'}
      data-camera={p.camera}
      data-state={state.kind}
      role={p.onActivate ? 'button' : undefined}
      tabIndex={p.onActivate ? 0 : undefined}
      aria-label={p.onActivate ? `${p.name}: open on the main stream` : p.name}
      onClick={p.onActivate}
      onKeyDown={(e) => {
        if (p.onActivate && (e.key === 'Enter' || e.key === ' ')) {
          e.preventDefault();
          p.onActivate();
        }
      }}
    >
      <video ref={video} muted autoplay playsInline disablePictureInPicture />
      <div class="tile-top">
        {p.index !== undefined && p.index < 9 && <span class="tile-index">{p.index + 1}</span>}
        <span class="tile-name">{p.name}</span>
        {state.kind === 'playing' && <span class="live-badge">LIVE</span>}
      </div>
      {alerting && p.alert && (
        <div class="tile-alert" role="status">
          ALERT · {p.alert.label || 'event'}
        </div>
      )}
      {s && s.state === 'streaming' && (
        <div class="tile-meta">
          {s.width}×{s.height} · {s.fps?.toFixed(0)} fps · {fmtBitrate(s.bitrate_bps)}
        </div>
      )}
      {overlay && (
        <div class={'tile-overlay ' + overlay.kind} data-testid="tile-message">
          <span>{overlay.text}</span>
          {(state.kind === 'error' || state.kind === 'stalled') && (
            <button
              class="btn small"
              onClick={(e) => {
                e.stopPropagation();
                player.current?.retryNow();
              }}
            >
              Retry now
            </button>
          )}
        </div>
      )}
    </div>
  );
}
