// The alert review queue: alerts newest first (keyset paged, virtualised), live additions
// from the alert stream, and the selected alert's snapshot, clip and review with a note.
// Keyboard: j/k move, a acknowledge, d dismiss, n note, c crop, v clip.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, api, type EventDto, type ReviewState } from '../api';
import { ClipPlayer } from '../components/ClipPlayer';
import { VirtualList } from '../components/VirtualList';
import { hideBroken, Empty, Icon, Kbd, LabelChip, MultiSelect, Spinner, StateChip, toast } from '../components/ui';
import { useKeys } from '../lib/keys';
import { usePaged } from '../lib/paging';
import { useUserName } from '../lib/people';
import { navigate } from '../lib/router';
import { fmtAgo, fmtDateTime, fmtDuration, fmtTime, iso, ms, SECOND } from '../lib/time';
import { cameraName, cameras, canReview, isAlert, me, onLiveEvent, useValue } from '../state';

export const LABELS = ['person', 'face', 'car', 'bus', 'truck', 'bicycle', 'motorcycle'];
const STATES: { value: string; label: string }[] = [
  { value: 'new', label: 'To review' },
  { value: 'acknowledged', label: 'Acknowledged' },
  { value: 'dismissed', label: 'Dismissed' },
  { value: 'all', label: 'All' },
];

const newestFirst = (a: EventDto, b: EventDto) => ms(b.start_time) - ms(a.start_time) || b.id.localeCompare(a.id);

function list(p: URLSearchParams, k: string): string[] {
  return (p.get(k) ?? '').split(',').filter(Boolean);
}

export function Review({ params }: { params: URLSearchParams }) {
  const cams = useValue(cameras);
  const user = useValue(me);
  const camFilter = list(params, 'camera');
  const labelFilter = list(params, 'label');
  const stateFilter = params.get('state') ?? 'new';
  const selectedId = params.get('id');
  const review: ReviewState[] | undefined = stateFilter === 'all' ? undefined : [stateFilter as ReviewState];
  const key = JSON.stringify([camFilter, labelFilter, stateFilter]);

  const paged = usePaged<EventDto>(
    key,
    async (cursor, signal) => {
      const page = await api.events(
        { alert: true, cameras: camFilter, labels: labelFilter, review, after: cursor ? String(cursor) : undefined, limit: 100 },
        signal,
      );
      return { items: page.events, next: page.next };
    },
    newestFirst,
  );

  const setParams = (changes: Record<string, string | null>, replace = true) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '') next.delete(k);
      else next.set(k, v);
    }
    navigate('/review', next, replace);
  };

  const items = paged.items;
  const index = selectedId ? items.findIndex((e) => e.id === selectedId) : -1;
  const selected = index >= 0 ? items[index] : undefined;
  // A linked alert not in the loaded pages (or filtered out): fetch it on its own.
  const [linked, setLinked] = useState<EventDto | null>(null);
  useEffect(() => {
    setLinked(null);
    if (!selectedId || selected || paged.loading) return;
    api.event(selectedId).then(setLinked).catch(() => setLinked(null));
  }, [selectedId, !!selected, paged.loading]);
  const current = selected ?? (linked?.id === selectedId ? linked : undefined);

  // Select the first alert once the list arrives.
  useEffect(() => {
    if (!selectedId && items.length) setParams({ id: items[0]!.id });
  }, [items.length > 0, selectedId]);

  const matches = (e: EventDto) =>
    (!camFilter.length || camFilter.includes(e.camera)) &&
    (!labelFilter.length || labelFilter.includes(e.label)) &&
    (!review || review.includes(e.review_state)) &&
    isAlert(e);

  // Live: new alerts appear at the top, reviews by others update in place.
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const listed = useRef(new Set<string>());
  listed.current = new Set(items.map((e) => e.id));
  useEffect(
    () =>
      onLiveEvent(async (n) => {
        const known = listed.current.has(n.id);
        // New alerts, and events that became alerts later (they entered a required zone).
        const candidate = n.kind === 'start' ? isAlert(n) : n.alert === true;
        if (!known && !candidate) return;
        const e = await api.event(n.id).catch(() => null);
        if (!e) return;
        if (listed.current.has(e.id)) paged.update(e);
        else if (matches(e)) {
          paged.prepend([e]);
          setFresh((s) => new Set(s).add(e.id));
        }
      }),
    [key],
  );

  const move = (d: number) => {
    if (!items.length) return;
    const i = Math.max(0, Math.min(items.length - 1, (index < 0 ? -1 : index) + d));
    setParams({ id: items[i]!.id });
  };

  const afterReview = (e: EventDto) => {
    // Leaves the queue when it no longer matches the state filter; the next one is selected.
    if (!matches(e) && index >= 0) {
      const next = items[index + 1] ?? items[index - 1];
      paged.remove(e.id);
      setParams({ id: next ? next.id : null });
    } else {
      paged.update(e);
    }
  };

  const camOptions = useMemo(() => cams.map((c) => ({ value: c.id, label: c.name })), [cams]);
  const labelOptions = useMemo(
    () => [...new Set([...LABELS, ...items.map((e) => e.label)])].map((l) => ({ value: l, label: l })),
    [items.length],
  );

  useKeys((e) => {
    if (e.key === 'j' || e.key === 'ArrowDown') {
      move(1);
      e.preventDefault();
    } else if (e.key === 'k' || e.key === 'ArrowUp') {
      move(-1);
      e.preventDefault();
    }
  });

  return (
    <div class="review">
      <section class="queue" aria-label="Alerts" data-testid="queue" data-loading={String(paged.loading)}>
        <div class="queue-filters">
          <div class="seg" role="group" aria-label="Review state">
            {STATES.map((s) => (
              <button
                key={s.value}
                class={'seg-btn' + (stateFilter === s.value ? ' active' : '')}
                aria-pressed={stateFilter === s.value}
                onClick={() => setParams({ state: s.value === 'new' ? null : s.value, id: null })}
              >
                {s.label}
              </button>
            ))}
          </div>
          <div class="row">
            <MultiSelect
              label="Cameras"
              options={camOptions}
              value={camFilter}
              onChange={(v) => setParams({ camera: v.join(','), id: null })}
              anyLabel="All cameras"
              testid="filter-camera"
            />
            <MultiSelect
              label="Classes"
              options={labelOptions}
              value={labelFilter}
              onChange={(v) => setParams({ label: v.join(','), id: null })}
              anyLabel="All classes"
              testid="filter-label"
            />
          </div>
        </div>
        <div class="queue-head">
          <span>
            {items.length}
            {paged.done ? '' : '+'} alert{items.length === 1 ? '' : 's'}
          </span>
          {paged.loading && <Spinner />}
          <div class="spacer" />
          <span class="muted small">
            <Kbd>j</Kbd>/<Kbd>k</Kbd> move · <Kbd>a</Kbd> ack · <Kbd>d</Kbd> dismiss · <Kbd>n</Kbd> note
          </span>
        </div>
        {paged.error && <div class="form-error">{paged.error}</div>}
        {!paged.loading && !items.length && !paged.error ? (
          <Empty title={stateFilter === 'new' ? 'Nothing to review' : 'No alerts'}>
            {stateFilter === 'new' ? 'New alerts appear here as cameras raise them.' : 'No alert matches these filters.'}
          </Empty>
        ) : (
          <VirtualList
            items={items}
            rowHeight={68}
            onEnd={paged.loadMore}
            keyOf={(e) => e.id}
            scrollToIndex={index}
            testid="alert-list"
            role="listbox"
            label="Alerts"
            render={(e) => (
              <div
                class={'alert-row' + (e.id === selectedId ? ' selected' : '') + (fresh.has(e.id) ? ' fresh' : '')}
                role="option"
                aria-selected={e.id === selectedId}
                data-testid="alert-row"
                data-id={e.id}
                data-state={e.review_state}
                onClick={() => setParams({ id: e.id })}
              >
                <img class="thumb" src={api.snapshotUrl(e.id, true)} alt="" loading="lazy" onError={hideBroken} />
                <div class="alert-main">
                  <div class="alert-line">
                    <LabelChip label={e.label} />
                    {e.sub_label && <span class="sub-label">{e.sub_label}</span>}
                    <span class="alert-cam">{cameraName(e.camera)}</span>
                  </div>
                  <div class="alert-line muted small">
                    <span title={fmtDateTime(e.start_time)}>{fmtTime(e.start_time)}</span>
                    <span>· {fmtAgo(e.start_time)}</span>
                    <span>· {Math.round(e.score_max * 100)}%</span>
                  </div>
                </div>
                <StateChip state={e.review_state} />
              </div>
            )}
            footer={!paged.done && items.length > 0 ? <div class="list-foot muted small">Loading more…</div> : null}
          />
        )}
      </section>
      <section class="detail" aria-label="Selected alert">
        {current ? (
          <Detail key={current.id} event={current} canAct={canReview(user)} onReviewed={afterReview} />
        ) : (
          <Empty title="No alert selected">Pick an alert on the left, or press j.</Empty>
        )}
      </section>
    </div>
  );
}

function Snapshot({ event, crop }: { event: EventDto; crop: boolean }) {
  const [failed, setFailed] = useState(false);
  const [x, y, w, h] = event.bbox;
  if (failed) return <div class="snap-missing muted">No snapshot for this event</div>;
  return (
    <div class={'snap' + (crop ? ' crop' : '')} data-testid="snapshot">
      <img src={api.snapshotUrl(event.id, crop)} alt={`${event.label} on ${cameraName(event.camera)}`} onError={() => setFailed(true)} />
      {!crop && w > 0 && (
        <div
          class="bbox"
          style={{ left: `${x * 100}%`, top: `${y * 100}%`, width: `${w * 100}%`, height: `${h * 100}%` }}
        >
          <span>
            {event.label} {Math.round(event.score_max * 100)}%
          </span>
        </div>
      )}
    </div>
  );
}

function Detail(p: { event: EventDto; canAct: boolean; onReviewed: (e: EventDto) => void }) {
  const e = p.event;
  const [crop, setCrop] = useState(false);
  const [media, setMedia] = useState<'snapshot' | 'clip'>('snapshot');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const noteRef = useRef<HTMLTextAreaElement>(null);
  const reviewer = useUserName(e.reviewed_by);
  const start = ms(e.start_time);
  const end = e.end_time ? ms(e.end_time) : null;

  const act = async (verdict: 'acknowledge' | 'dismiss') => {
    if (!p.canAct || busy) return;
    setBusy(true);
    try {
      const updated = await api.review(e.id, verdict, note);
      toast(`${verdict === 'acknowledge' ? 'Acknowledged' : 'Dismissed'}: ${e.label} on ${cameraName(e.camera)}`, 'ok');
      setNote('');
      p.onReviewed(updated);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        toast(err.message, 'info');
        api.event(e.id).then(p.onReviewed).catch(() => {});
      } else toast((err as Error).message, 'error');
    } finally {
      setBusy(false);
    }
  };

  useKeys((k) => {
    if (k.key === 'a') act('acknowledge');
    else if (k.key === 'd') act('dismiss');
    else if (k.key === 'n' && p.canAct) {
      k.preventDefault();
      noteRef.current?.focus();
    } else if (k.key === 'c') setCrop((c) => !c);
    else if (k.key === 'v') setMedia((m) => (m === 'clip' ? 'snapshot' : 'clip'));
  });

  return (
    <div class="detail-inner" data-testid="alert-detail" data-id={e.id}>
      <header class="detail-head">
        <div>
          <div class="detail-title">
            <LabelChip label={e.label} />
            {e.sub_label && <span class="sub-label">{e.sub_label}</span>}
            <span>{cameraName(e.camera)}</span>
            <StateChip state={e.review_state} />
          </div>
          <div class="muted small">
            {fmtDateTime(e.start_time)}
            {end ? ` · lasted ${fmtDuration(end - start)}` : ' · still in view'} · best score{' '}
            {Math.round(e.score_max * 100)}% (median {Math.round(e.score_median * 100)}%)
            {e.zones.length > 0 && <> · zones: {e.zones.join(', ')}</>}
          </div>
        </div>
        <div class="seg" role="group" aria-label="Media">
          <button class={'seg-btn' + (media === 'snapshot' ? ' active' : '')} onClick={() => setMedia('snapshot')}>
            Snapshot
          </button>
          <button class={'seg-btn' + (media === 'clip' ? ' active' : '')} onClick={() => setMedia('clip')} title="Clip (v)">
            Clip
          </button>
          {media === 'snapshot' && (
            <button class={'seg-btn' + (crop ? ' active' : '')} onClick={() => setCrop(!crop)} title="Crop (c)">
              Crop
            </button>
          )}
        </div>
      </header>
      <div class="detail-media">
        {media === 'snapshot' ? (
          <Snapshot event={e} crop={crop} />
        ) : (
          <ClipPlayer camera={e.camera} from={start - 5 * SECOND} to={(end ?? start) + 10 * SECOND} autoplay />
        )}
      </div>
      <div class="detail-actions">
        {e.review_state !== 'new' && (
          <div class="reviewed" data-testid="reviewed">
            <StateChip state={e.review_state} /> by <strong>{reviewer}</strong>
            {e.reviewed_at && <> at {fmtDateTime(e.reviewed_at)}</>}
            {e.review_note ? <blockquote>{e.review_note}</blockquote> : <span class="muted"> · no note</span>}
          </div>
        )}
        {p.canAct ? (
          <div class="review-form">
            <textarea
              ref={noteRef}
              placeholder={e.review_state === 'new' ? 'Note (optional): what you saw, what you did…' : 'Note for a changed decision…'}
              value={note}
              maxLength={2000}
              rows={2}
              data-testid="review-note"
              onInput={(ev) => setNote(ev.currentTarget.value)}
              onKeyDown={(ev) => {
                if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
                  ev.preventDefault();
                  void act('acknowledge');
                  noteRef.current?.blur();
                } else if (ev.key === 'Escape') {
                  ev.stopPropagation();
                  noteRef.current?.blur();
                }
              }}
            />
            <div class="row">
              <button
                class="btn primary"
                disabled={busy || e.review_state === 'acknowledged'}
                onClick={() => act('acknowledge')}
                data-testid="ack"
              >
                <Icon name="check" /> Acknowledge <Kbd>a</Kbd>
              </button>
              <button
                class="btn"
                disabled={busy || e.review_state === 'dismissed'}
                onClick={() => act('dismiss')}
                data-testid="dismiss"
              >
                <Icon name="x" /> Dismiss <Kbd>d</Kbd>
              </button>
              <div class="spacer" />
              <button
                class="btn ghost"
                onClick={() => navigate('/playback', { camera: e.camera, t: iso(start - 5 * SECOND), event: e.id })}
              >
                <Icon name="playback" /> Playback
              </button>
              <button class="btn ghost" onClick={() => navigate('/wall', { focus: e.camera })}>
                <Icon name="wall" /> Live
              </button>
            </div>
          </div>
        ) : (
          <div class="muted small">Your role can watch but not review alerts.</div>
        )}
      </div>
    </div>
  );
}
