// The recorded clip around an event: the segments covering [from, to], played from
// `from` with the wall-clock time shown.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { SegmentPlayer } from '../lib/segplayer';
import { fmtTime, iso } from '../lib/time';

export function ClipPlayer(p: { camera: string; from: number; to: number; autoplay?: boolean }) {
  const video = useRef<HTMLVideoElement>(null);
  const [state, setState] = useState<'loading' | 'ready' | 'none' | 'error'>('loading');
  const [message, setMessage] = useState('');
  const [wall, setWall] = useState<number | null>(null);

  const [attempt, setAttempt] = useState(0);
  // A recent event's segment may still be open: look again every 5 s for a few minutes.
  useEffect(() => {
    if (state !== 'none' || Date.now() - p.to > 5 * 60_000) return;
    const t = setTimeout(() => setAttempt((a) => a + 1), 5000);
    return () => clearTimeout(t);
  }, [state, attempt]);

  useEffect(() => {
    const v = video.current!;
    const ctl = new AbortController();
    const player = new SegmentPlayer(v, {
      onTime: setWall,
      onNoRecording: () => setState('none'),
      onError: (m) => {
        setState('error');
        setMessage(m);
      },
    });
    setState('loading');
    api
      .recordings(p.camera, iso(p.from - 60_000), iso(p.to), undefined, ctl.signal)
      .then((segs) => {
        if (!segs.length) {
          setState('none');
          return;
        }
        player.setSegments(segs);
        setState('ready');
        player.seek(p.from);
        if (p.autoplay) player.play();
      })
      .catch((e: Error) => {
        if (e.name === 'AbortError') return;
        setState('error');
        setMessage(e.message);
      });
    return () => {
      ctl.abort();
      player.destroy();
    };
  }, [p.camera, p.from, p.to, attempt]);

  return (
    <div class="clip" data-testid="clip">
      <video ref={video} controls muted playsInline />
      {state === 'ready' && wall !== null && <div class="clip-time mono">{fmtTime(wall)}</div>}
      {state === 'loading' && <div class="clip-msg muted">Loading recording…</div>}
      {state === 'none' && (
        <div class="clip-msg muted">
          {Date.now() - p.to < 5 * 60_000
            ? 'Waiting for the recording to be written (segments close about every minute)…'
            : 'No recording covers this time.'}
        </div>
      )}
      {state === 'error' && <div class="clip-msg bad-text">{message}</div>}
    </div>
  );
}
