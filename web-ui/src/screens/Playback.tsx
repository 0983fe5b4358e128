// Playback: one camera's recordings on a zoomable timeline with its events; click, drag or
// use the keys to scrub. The video plays the recorded segments back to back, skipping gaps.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, type EventDto, type RecordedSpan, type Segment } from '../api';
import { CameraLanes } from '../components/CameraLanes';
import { Timeline } from '../components/Timeline';
import { hideBroken, Empty, Icon, Kbd, LabelChip } from '../components/ui';
import { useKeys } from '../lib/keys';
import { navigate } from '../lib/router';
import { SegmentPlayer } from '../lib/segplayer';
import { fmtDateTime, fmtTime, fromLocalInput, HOUR, iso, ms, MINUTE, SECOND, toLocalInput } from '../lib/time';
import { around, recordedSpans, type Window, zoom } from '../lib/timeline';
import { cameras, useValue } from '../state';

const RATES = [0.5, 1, 2, 4, 8];

export function Playback({ params }: { params: URLSearchParams }) {
  const cams = useValue(cameras);
  const camera = params.get('camera') ?? cams[0]?.id ?? '';
  const cam = cams.find((c) => c.id === camera);
  const recordStream = cam?.streams.find((s) => s.roles.includes('record'))?.name;
  const startAt = useMemo(() => {
    const t = ms(params.get('t') ?? '');
    return Number.isFinite(t) ? t : Date.now() - 5 * MINUTE;
  }, [params.get('t')]);
  const highlight = params.get('event');

  const video = useRef<HTMLVideoElement>(null);
  const player = useRef<SegmentPlayer | null>(null);
  const [win, setWin] = useState<Window>(() => around(startAt, 10 * MINUTE));
  const [segments, setSegments] = useState<Segment[]>([]);
  const [events, setEvents] = useState<EventDto[]>([]);
  const [eventsMore, setEventsMore] = useState(false);
  const [playhead, setPlayhead] = useState<number | null>(null);
  const [playing, setPlaying] = useState(false);
  const [rate, setRate] = useState(1);
  const [notice, setNotice] = useState<string | null>(null);
  const [lanes, setLanes] = useState<RecordedSpan[]>([]);
  const [loading, setLoading] = useState(false);
  const pendingSeek = useRef<number | null>(startAt);
  const [reload, setReload] = useState(0);
  const retryTimer = useRef<ReturnType<typeof setTimeout>>();
  useEffect(() => () => clearTimeout(retryTimer.current), []);

  // One player per camera.
  useEffect(() => {
    const p = new SegmentPlayer(video.current!, {
      onTime: (t) => {
        setPlayhead(t);
        setNotice(null);
      },
      onNoRecording: (t) => {
        if (Date.now() - t < 5 * MINUTE) {
          // Recent: its segment is still being written (they close about every minute).
          setNotice(`Waiting for the recording of ${fmtTime(t)} to be written…`);
          pendingSeek.current = t;
          clearTimeout(retryTimer.current);
          retryTimer.current = setTimeout(() => setReload((n) => n + 1), 3000);
        } else {
          setNotice(`Nothing recorded at or after ${fmtDateTime(t)}`);
        }
      },
      onPlayState: setPlaying,
      onError: setNotice,
    });
    player.current = p;
    pendingSeek.current = startAt;
    setSegments([]);
    setPlayhead(null);
    setWin(around(startAt, 10 * MINUTE));
    return () => {
      p.destroy();
      player.current = null;
    };
  }, [camera]);

  // A new start time from the address (a link from review or search).
  useEffect(() => {
    pendingSeek.current = startAt;
    setWin((w) => (startAt >= w.start && startAt <= w.end ? w : around(startAt, w.end - w.start)));
    if (segments.length) seek(startAt, true);
  }, [startAt]);

  // Segments and events of the window (and a margin), debounced while scrubbing.
  useEffect(() => {
    if (!camera) return;
    const ctl = new AbortController();
    const span = win.end - win.start;
    const from = iso(win.start - span / 2);
    const to = iso(Math.min(Date.now() + MINUTE, win.end + span / 2));
    const t = setTimeout(async () => {
      setLoading(true);
      try {
        const [segs, evs] = await Promise.all([
          api.recordings(camera, from, to, recordStream, ctl.signal),
          api.events({ cameras: [camera], from, to, limit: 500 }, ctl.signal),
        ]);
        player.current?.setSegments(segs);
        setSegments(segs);
        setEvents(evs.events);
        setEventsMore(!!evs.next);
        if (pendingSeek.current !== null) {
          const target = pendingSeek.current;
          pendingSeek.current = null;
          seek(target, true);
        }
      } catch (e) {
        if ((e as Error).name !== 'AbortError') setNotice((e as Error).message);
      } finally {
        setLoading(false);
      }
    }, 150);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [camera, recordStream, reload, Math.round(win.start / 10000), Math.round(win.end / 10000)]);

  // Every camera's recorded spans in the window (one request for all of them).
  useEffect(() => {
    if (!cams.length) return;
    const ctl = new AbortController();
    const t = setTimeout(() => {
      api
        .spans({ from: iso(win.start), to: iso(Math.max(win.start + SECOND, Math.min(Date.now(), win.end))), max_gap_secs: 5 }, ctl.signal)
        .then(setLanes)
        .catch(() => {});
    }, 250);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [cams.length, reload, Math.round(win.start / 10000), Math.round(win.end / 10000)]);

  // Keep the playhead in view while playing.
  useEffect(() => {
    if (playhead === null || !playing) return;
    const span = win.end - win.start;
    if (playhead > win.end - span * 0.05 || playhead < win.start) setWin({ start: playhead - span * 0.3, end: playhead + span * 0.7 });
  }, [playhead, playing]);

  const seek = (t: number, autoplay = false) => {
    const p = player.current;
    if (!p) return;
    setNotice(null);
    p.seek(t);
    if (autoplay || p.playing) p.play();
  };
  const togglePlay = () => {
    const p = player.current;
    if (!p) return;
    if (p.playing) p.pause();
    else {
      if (!p.currentSegment) p.seek(playhead ?? startAt);
      p.play();
    }
  };
  const nudge = (d: number) => seek((playhead ?? startAt) + d);
  const sortedEvents = useMemo(() => [...events].sort((a, b) => ms(a.start_time) - ms(b.start_time)), [events]);
  const jumpEvent = (dir: 1 | -1) => {
    const now = playhead ?? startAt;
    const list = dir > 0 ? sortedEvents : [...sortedEvents].reverse();
    const e = list.find((x) => (dir > 0 ? ms(x.start_time) > now + 6 * SECOND : ms(x.start_time) < now - 6 * SECOND));
    if (e) openEvent(e);
  };
  const openEvent = (e: EventDto) => {
    navigate('/playback', { camera, t: iso(ms(e.start_time) - 5 * SECOND), event: e.id }, true);
  };

  useKeys((e) => {
    if (e.key === ' ') {
      e.preventDefault();
      togglePlay();
    } else if (e.key === 'ArrowLeft') {
      e.preventDefault();
      nudge(-(e.shiftKey ? MINUTE : 10 * SECOND));
    } else if (e.key === 'ArrowRight') {
      e.preventDefault();
      nudge(e.shiftKey ? MINUTE : 10 * SECOND);
    } else if (e.key === '+' || e.key === '=') setWin((w) => zoom(w, 0.5, playhead ?? (w.start + w.end) / 2));
    else if (e.key === '-') setWin((w) => zoom(w, 2, playhead ?? (w.start + w.end) / 2));
    else if (e.key === '.') jumpEvent(1);
    else if (e.key === ',') jumpEvent(-1);
  });

  const spans = useMemo(() => recordedSpans(segments, Date.now()), [segments]);
  if (!cams.length) return <Empty title="No cameras">Cameras you may see appear here.</Empty>;

  return (
    <div class="playback">
      <div class="toolbar">
        <h1 class="screen-title">Playback</h1>
        <label class="field inline">
          <span class="field-label">Camera</span>
          <select
            value={camera}
            data-testid="playback-camera"
            onChange={(e) => navigate('/playback', { camera: e.currentTarget.value, t: iso(playhead ?? startAt) }, true)}
          >
            {cams.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
        <label class="field inline">
          <span class="field-label">Go to</span>
          <input
            type="datetime-local"
            step="1"
            value={toLocalInput(playhead ?? startAt)}
            onChange={(e) => {
              const t = fromLocalInput(e.currentTarget.value);
              if (Number.isFinite(t)) navigate('/playback', { camera, t: iso(t) }, true);
            }}
          />
        </label>
        <div class="spacer" />
        <button class="btn" onClick={() => navigate('/wall', { focus: camera })}>
          <Icon name="wall" /> Live
        </button>
      </div>
      <div class="playback-body">
        <div class="player">
          <div class="player-video">
            <video ref={video} muted playsInline data-testid="playback-video" />
            <div class="player-time mono" data-testid="playback-time">
              {playhead !== null && Number.isFinite(playhead) ? fmtDateTime(playhead) : '–'}
            </div>
            {notice && <div class="player-notice">{notice}</div>}
          </div>
          <div class="controls">
            <button class="icon-btn" onClick={() => jumpEvent(-1)} title="Previous event (,)" aria-label="Previous event">
              <Icon name="back" />
              <Icon name="back" />
            </button>
            <button class="icon-btn" onClick={() => nudge(-10 * SECOND)} title="10 s back (←)" aria-label="10 seconds back">
              <Icon name="back" />
            </button>
            <button class="btn primary play" onClick={togglePlay} data-testid="play" aria-label={playing ? 'Pause' : 'Play'}>
              <Icon name={playing ? 'pause' : 'play'} /> {playing ? 'Pause' : 'Play'}
            </button>
            <button class="icon-btn" onClick={() => nudge(10 * SECOND)} title="10 s forward (→)" aria-label="10 seconds forward">
              <Icon name="fwd" />
            </button>
            <button class="icon-btn" onClick={() => jumpEvent(1)} title="Next event (.)" aria-label="Next event">
              <Icon name="fwd" />
              <Icon name="fwd" />
            </button>
            <div class="seg" role="group" aria-label="Speed">
              {RATES.map((r) => (
                <button
                  key={r}
                  class={'seg-btn' + (r === rate ? ' active' : '')}
                  onClick={() => {
                    setRate(r);
                    player.current?.setRate(r);
                  }}
                >
                  {r}×
                </button>
              ))}
            </div>
            <div class="spacer" />
            <button class="icon-btn" onClick={() => setWin((w) => zoom(w, 2, playhead ?? (w.start + w.end) / 2))} title="Zoom out (−)" aria-label="Zoom out">
              <Icon name="minus" />
            </button>
            <span class="muted small">{fmtSpan(win.end - win.start)}</span>
            <button class="icon-btn" onClick={() => setWin((w) => zoom(w, 0.5, playhead ?? (w.start + w.end) / 2))} title="Zoom in (+)" aria-label="Zoom in">
              <Icon name="plus" />
            </button>
            <button class="btn small" onClick={() => setWin(around(Date.now() - (win.end - win.start) / 2 + MINUTE, win.end - win.start))}>
              Now
            </button>
          </div>
          <Timeline
            label={`Timeline of ${cam?.name ?? camera}`}
            window={win}
            spans={spans}
            events={events}
            playhead={playhead}
            highlight={highlight}
            onSeek={(t) => seek(t)}
            onWindow={setWin}
            onEvent={openEvent}
          />
          {cams.length > 1 && (
            <CameraLanes
              window={win}
              cameras={cams}
              spans={lanes}
              current={camera}
              playhead={playhead}
              onPick={(c, t) => navigate('/playback', { camera: c, t: iso(t) }, true)}
            />
          )}
          <div class="legend muted small">
            <span class="lg lg-rec" /> recorded <span class="lg lg-ev" /> event <span class="lg lg-alert" /> alert ·{' '}
            {loading ? 'loading…' : `${segments.length} segments, ${events.length}${eventsMore ? '+' : ''} events in view`} ·{' '}
            <Kbd>Space</Kbd> play <Kbd>←</Kbd>
            <Kbd>→</Kbd> 10 s <Kbd>,</Kbd>
            <Kbd>.</Kbd> events · wheel zooms, drag scrubs
          </div>
        </div>
        <aside class="panel playback-events">
          <h2>Events in view</h2>
          <ul class="mini-events">
            {sortedEvents.map((e) => (
              <li key={e.id} class={highlight === e.id ? 'hl' : ''}>
                <a
                  href="#"
                  onClick={(x) => {
                    x.preventDefault();
                    openEvent(e);
                  }}
                >
                  <img src={api.snapshotUrl(e.id, true)} alt="" loading="lazy" onError={hideBroken} />
                  <span class="mini-main">
                    <LabelChip label={e.label} />
                    <span class="muted small">{fmtTime(e.start_time)}</span>
                  </span>
                </a>
              </li>
            ))}
            {!events.length && <li class="muted small">No events in this stretch</li>}
          </ul>
        </aside>
      </div>
    </div>
  );
}

function fmtSpan(msecs: number): string {
  if (msecs >= 2 * 24 * HOUR) return `${Math.round(msecs / (24 * HOUR))} days`;
  if (msecs >= 2 * HOUR) return `${Math.round(msecs / HOUR)} h`;
  if (msecs >= 2 * MINUTE) return `${Math.round(msecs / MINUTE)} min`;
  return `${Math.round(msecs / SECOND)} s`;
}
