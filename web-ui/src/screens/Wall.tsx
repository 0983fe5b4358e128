// The camera wall: a page of live tiles on the cameras' grid (sub) streams, and the focused
// view of one camera on its main stream. Only the tiles of the page in view hold a live
// session; a hidden browser tab holds none.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type EventDto, type StreamStatus } from '../api';
import { hideBroken, Icon, LabelChip, StateChip, toast } from '../components/ui';
import { LiveVideo } from '../live/LiveVideo';
import { useKeys } from '../lib/keys';
import { navigate } from '../lib/router';
import { fmtAgo, fmtBitrate, iso, MINUTE } from '../lib/time';
import { gridOf, streamFor } from '../lib/wall';
import { alertsByCamera, cameras, canReview, me, onLiveEvent, status, useValue } from '../state';

const LAYOUTS = [1, 4, 9, 16, 25, 36, 64];
const LAYOUT_KEY = 'panoptes.wall.layout';

function usePageVisible(): boolean {
  const [visible, setVisible] = useState(document.visibilityState === 'visible');
  useEffect(() => {
    let t: ReturnType<typeof setTimeout> | undefined;
    const on = () => {
      clearTimeout(t);
      // A short switch away keeps the sessions; a long one frees them.
      if (document.visibilityState === 'visible') setVisible(true);
      else t = setTimeout(() => setVisible(false), 15000);
    };
    document.addEventListener('visibilitychange', on);
    return () => {
      clearTimeout(t);
      document.removeEventListener('visibilitychange', on);
    };
  }, []);
  return visible;
}

export function Wall({ params }: { params: URLSearchParams }) {
  const cams = useValue(cameras);
  const st = useValue(status);
  const alerts = useValue(alertsByCamera);
  const visible = usePageVisible();
  const focus = params.get('focus');
  const [perPage, setPerPage] = useState<number>(() => {
    const saved = Number(localStorage.getItem(LAYOUT_KEY));
    return LAYOUTS.includes(saved) ? saved : 0;
  });
  const [page, setPage] = useState(0);
  const enabled = cams.filter((c) => c.enabled);
  // Default layout: the smallest that shows every camera, at most 16 tiles.
  const n = perPage || LAYOUTS.find((l) => l >= enabled.length && l <= 16) || 16;
  const pages = Math.max(1, Math.ceil(enabled.length / n));
  const pageNow = Math.min(page, pages - 1);
  const shown = enabled.slice(pageNow * n, pageNow * n + n);
  const { cols, rows } = gridOf(n);
  const [, tick] = useState(0);

  // Re-render as alerts age out of their 30 s pulse.
  useEffect(() => onLiveEvent(() => setTimeout(() => tick((x) => x + 1), 30500)), []);

  const setLayout = (l: number) => {
    localStorage.setItem(LAYOUT_KEY, String(l));
    setPerPage(l);
    setPage(0);
  };
  const open = (camera: string) => navigate('/wall', { focus: camera });

  useKeys((e) => {
    if (focus) return;
    if (/^[1-9]$/.test(e.key)) {
      const c = shown[Number(e.key) - 1];
      if (c) open(c.id);
    } else if (e.key === ']') setPage((p) => Math.min(pages - 1, p + 1));
    else if (e.key === '[') setPage((p) => Math.max(0, p - 1));
    else if (e.key === 'l') setLayout(LAYOUTS[(LAYOUTS.indexOf(n) + 1) % LAYOUTS.length]!);
  });

  if (focus) {
    return <Focus camera={focus} status={st} />;
  }
  return (
    <div class="wall">
      <div class="toolbar">
        <h1 class="screen-title">Live</h1>
        <span class="muted">
          {enabled.length} camera{enabled.length === 1 ? '' : 's'}
        </span>
        <div class="spacer" />
        <div class="seg" role="group" aria-label="Layout">
          {LAYOUTS.map((l) => (
            <button
              key={l}
              class={'seg-btn' + (l === n ? ' active' : '')}
              onClick={() => setLayout(l)}
              title={`${l} tiles (l cycles)`}
              aria-pressed={l === n}
            >
              {l}
            </button>
          ))}
        </div>
        {pages > 1 && (
          <div class="pager">
            <button class="icon-btn" onClick={() => setPage(Math.max(0, pageNow - 1))} disabled={pageNow === 0} aria-label="Previous page ([)">
              <Icon name="back" />
            </button>
            <span>
              Page {pageNow + 1} / {pages}
            </span>
            <button
              class="icon-btn"
              onClick={() => setPage(Math.min(pages - 1, pageNow + 1))}
              disabled={pageNow >= pages - 1}
              aria-label="Next page (])"
            >
              <Icon name="fwd" />
            </button>
          </div>
        )}
      </div>
      {enabled.length === 0 ? (
        <div class="empty">
          <div class="empty-title">No cameras</div>
          <div class="empty-body">Cameras you may see appear here. Admins add them under Cameras.</div>
        </div>
      ) : (
        <div
          class={'wall-grid' + (n >= 25 ? ' dense' : '')}
          data-testid="wall-grid"
          style={{ gridTemplateColumns: `repeat(${cols}, minmax(0, 1fr))`, gridTemplateRows: `repeat(${rows}, minmax(0, 1fr))` }}
        >
          {shown.map((c, i) =>
            visible ? (
              <LiveVideo
                key={c.id}
                camera={c.id}
                name={c.name}
                view="grid"
                index={i}
                stream={streamFor(st, c.id, 'grid')}
                alert={alerts[c.id]}
                onActivate={() => open(c.id)}
              />
            ) : (
              <div class="tile" key={c.id}>
                <div class="tile-overlay muted">Paused while the tab is hidden</div>
              </div>
            ),
          )}
        </div>
      )}
    </div>
  );
}

function Focus({ camera, status: st }: { camera: string; status: StreamStatus[] }) {
  const cams = useValue(cameras);
  const alerts = useValue(alertsByCamera);
  const user = useValue(me);
  const cam = cams.find((c) => c.id === camera);
  const enabled = cams.filter((c) => c.enabled);
  const idx = enabled.findIndex((c) => c.id === camera);
  const [recent, setRecent] = useState<EventDto[] | null>(null);
  const streams = useMemo(() => st.filter((s) => s.camera === camera), [st, camera]);
  const main = streamFor(st, camera, 'focus');

  useEffect(() => {
    let live = true;
    const load = () =>
      api
        .events({ cameras: [camera], limit: 8 })
        .then((p) => live && setRecent(p.events))
        .catch(() => live && setRecent([]));
    void load();
    // At most one reload per 2 s however busy the camera is.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = onLiveEvent((e) => {
      if (e.camera !== camera || (e.kind !== 'start' && e.kind !== 'review') || timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        void load();
      }, 2000);
    });
    return () => {
      live = false;
      clearTimeout(timer);
      off();
    };
  }, [camera]);

  const back = () => navigate('/wall');
  useKeys((e) => {
    if (e.key === 'Escape') back();
    else if (e.key === 'ArrowRight' && idx >= 0) navigate('/wall', { focus: enabled[(idx + 1) % enabled.length]!.id }, true);
    else if (e.key === 'ArrowLeft' && idx >= 0)
      navigate('/wall', { focus: enabled[(idx - 1 + enabled.length) % enabled.length]!.id }, true);
  });

  return (
    <div class="focus">
      <div class="toolbar">
        <button class="btn" onClick={back} title="Back to the wall (Esc)">
          <Icon name="back" /> Wall
        </button>
        <h1 class="screen-title">{cam?.name ?? camera}</h1>
        <span class="muted mono">{camera}</span>
        <div class="spacer" />
        <span class="muted small">← → other cameras · Esc back</span>
      </div>
      <div class="focus-body">
        <LiveVideo camera={camera} name={cam?.name ?? camera} view="focus" stream={main} alert={alerts[camera]} big />
        <aside class="focus-side">
          <section class="panel">
            <h2>Streams</h2>
            {streams.map((s) => (
              <div class="kv-block" key={s.stream}>
                <div class="kv-head">
                  <span class="mono">{s.stream}</span>
                  <span class={'chip st-' + s.state}>{s.state.replace('_', ' ')}</span>
                </div>
                <div class="muted small">{s.roles.join(', ')}</div>
                {s.state === 'streaming' && (
                  <div class="small">
                    {s.codec} · {s.width}×{s.height} · {s.fps?.toFixed(1)} fps · {fmtBitrate(s.bitrate_bps)}
                  </div>
                )}
                {s.last_error && <div class="small bad-text">{s.last_error}</div>}
              </div>
            ))}
          </section>
          <section class="panel">
            <h2>Actions</h2>
            <div class="stack">
              <button
                class="btn"
                onClick={() => navigate('/playback', { camera, t: iso(Date.now() - 2 * MINUTE) })}
              >
                <Icon name="playback" /> Playback (last minutes)
              </button>
              <button class="btn" onClick={() => navigate('/review', { camera })}>
                <Icon name="review" /> Alerts of this camera
              </button>
              {canReview(user) && (
                <button
                  class="btn"
                  title="Analyse every frame for 2 minutes, whatever the motion gate says"
                  onClick={() =>
                    api
                      .detect(camera, 120)
                      .then(() => toast('Full-rate analysis for 2 minutes', 'ok'))
                      .catch((e: Error) => toast(e.message, 'error'))
                  }
                >
                  <Icon name="bolt" /> Analyse now
                </button>
              )}
            </div>
          </section>
          <section class="panel grow">
            <h2>Recent events</h2>
            {recent === null && <div class="muted small">Loading…</div>}
            {recent?.length === 0 && <div class="muted small">None yet</div>}
            <ul class="mini-events">
              {recent?.map((e) => (
                <li key={e.id}>
                  <a href={`#/review?id=${e.id}&camera=${encodeURIComponent(camera)}&state=all`}>
                    <img src={api.snapshotUrl(e.id, true)} alt="" loading="lazy" onError={hideBroken} />
                    <span class="mini-main">
                      <LabelChip label={e.label} />
                      <span class="muted small">{fmtAgo(e.start_time)}</span>
                    </span>
                    <StateChip state={e.review_state} />
                  </a>
                </li>
              ))}
            </ul>
          </section>
        </aside>
      </div>
    </div>
  );
}
