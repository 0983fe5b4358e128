// Incident search: time range, cameras, classes, zones, score, plate/name text and review
// state → events per hour, per class and per counting line, and a results table paged by
// keyset as it scrolls. A result opens its snapshot, playback, or a clip export.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, api, type CountDto, type EventDto, type ExportManifest } from '../api';
import { HourChart } from '../components/HourChart';
import { VirtualList } from '../components/VirtualList';
import { AsyncButton, Empty, Field, Icon, LabelChip, Modal, MultiSelect, Spinner, StateChip, toast } from '../components/ui';
import { usePaged } from '../lib/paging';
import { navigate } from '../lib/router';
import { DAY, fmtBytes, fmtDateTime, fmtDuration, fromLocalInput, HOUR, iso, ms, SECOND, toLocalInput } from '../lib/time';
import { cameraName, cameras, canReview, me, useValue } from '../state';
import { LABELS } from './Review';

const PRESETS: { key: string; label: string; span: number }[] = [
  { key: '1h', label: 'Last hour', span: HOUR },
  { key: '6h', label: '6 h', span: 6 * HOUR },
  { key: '24h', label: '24 h', span: DAY },
  { key: '7d', label: '7 days', span: 7 * DAY },
  { key: '30d', label: '30 days', span: 30 * DAY },
];

interface Filters {
  range: string;
  from: number;
  to: number;
  cameras: string[];
  labels: string[];
  zones: string[];
  minScore: number;
  text: string;
  state: string;
}

function filtersOf(p: URLSearchParams, now: number): Filters {
  const range = p.get('range') ?? (p.get('from') ? 'custom' : '24h');
  const preset = PRESETS.find((x) => x.key === range);
  const from = preset ? now - preset.span : ms(p.get('from') ?? iso(now - DAY));
  const to = preset ? now : ms(p.get('to') ?? iso(now));
  const split = (k: string) => (p.get(k) ?? '').split(',').filter(Boolean);
  return {
    range,
    from,
    to,
    cameras: split('camera'),
    labels: split('label'),
    zones: split('zone'),
    minScore: Number(p.get('min') ?? 0) || 0,
    text: p.get('q') ?? '',
    state: p.get('state') ?? '',
  };
}

function paramsOf(f: Filters): Record<string, string | null> {
  const custom = f.range === 'custom';
  return {
    range: custom ? null : f.range,
    from: custom ? iso(f.from) : null,
    to: custom ? iso(f.to) : null,
    camera: f.cameras.join(',') || null,
    label: f.labels.join(',') || null,
    zone: f.zones.join(',') || null,
    min: f.minScore ? String(f.minScore) : null,
    q: f.text || null,
    state: f.state || null,
  };
}

export function Search({ params }: { params: URLSearchParams }) {
  const cams = useValue(cameras);
  // "Now" is fixed per search so preset ranges do not drift while paging.
  const [now, setNow] = useState(Date.now());
  const applied = useMemo(() => filtersOf(params, now), [params.toString(), now]);
  const [draft, setDraft] = useState<Filters>(applied);
  useEffect(() => setDraft(applied), [applied]);
  const [selected, setSelected] = useState<EventDto | null>(null);

  const key = JSON.stringify(applied);
  const paged = usePaged<EventDto>(key, async (cursor, signal) => {
    const page = await api.events(
      {
        from: iso(applied.from),
        to: iso(applied.to),
        cameras: applied.cameras,
        labels: applied.labels,
        zones: applied.zones,
        min_score: applied.minScore ? applied.minScore / 100 : undefined,
        sub_label: applied.text || undefined,
        review: applied.state ? [applied.state as EventDto['review_state']] : undefined,
        after: cursor ? String(cursor) : undefined,
        limit: 200,
      },
      signal,
    );
    return { items: page.events, next: page.next };
  });

  const [hours, setHours] = useState<{ hour: string; count: number }[] | null>(null);
  const [byLabel, setByLabel] = useState<CountDto[] | null>(null);
  const [byLine, setByLine] = useState<CountDto[] | null | 'unsupported'>(null);
  useEffect(() => {
    const ctl = new AbortController();
    const q = { from: iso(applied.from), to: iso(applied.to), cameras: applied.cameras, labels: applied.labels };
    setHours(null);
    setByLabel(null);
    api
      .counts({ ...q, by: 'hour' }, ctl.signal)
      .then((c) => setHours(c.filter((x) => x.hour).map((x) => ({ hour: x.hour!, count: x.count }))))
      .catch(() => setHours([]));
    api
      .counts({ ...q, by: 'label' }, ctl.signal)
      .then(setByLabel)
      .catch(() => setByLabel([]));
    api
      .counts({ ...q, by: 'line' }, ctl.signal)
      .then(setByLine)
      .catch((e: Error) => {
        if (e.name !== 'AbortError') setByLine(e instanceof ApiError && e.status === 422 ? 'unsupported' : []);
      });
    return () => ctl.abort();
  }, [key]);

  // The total, from the per-class counts (the table itself loads page by page).
  const inRange = byLabel === null ? null : byLabel.reduce((n, c) => n + c.count, 0);
  const apply = (f: Filters) => {
    setNow(Date.now());
    setSelected(null);
    navigate('/search', paramsOf(f), true);
  };
  const zoneOptions = useMemo(
    () => [...new Set(cams.flatMap((c) => c.zones ?? []))].sort().map((z) => ({ value: z, label: z })),
    [cams],
  );

  return (
    <div class="search">
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          apply(draft);
        }}
        aria-label="Search filters"
        data-testid="search-form"
      >
        <div class="field">
          <span class="field-label">Time</span>
          <div class="seg" role="group" aria-label="Time range">
            {PRESETS.map((p) => (
              <button
                type="button"
                key={p.key}
                class={'seg-btn' + (draft.range === p.key ? ' active' : '')}
                onClick={() => apply({ ...draft, range: p.key })}
              >
                {p.label}
              </button>
            ))}
            <button
              type="button"
              class={'seg-btn' + (draft.range === 'custom' ? ' active' : '')}
              onClick={() => setDraft({ ...draft, range: 'custom' })}
            >
              Custom
            </button>
          </div>
        </div>
        {draft.range === 'custom' && (
          <>
            <Field label="From">
              <input
                type="datetime-local"
                step="1"
                data-testid="search-from"
                value={toLocalInput(draft.from)}
                onChange={(e) => setDraft({ ...draft, from: fromLocalInput(e.currentTarget.value) || draft.from })}
              />
            </Field>
            <Field label="To">
              <input
                type="datetime-local"
                step="1"
                data-testid="search-to"
                value={toLocalInput(draft.to)}
                onChange={(e) => setDraft({ ...draft, to: fromLocalInput(e.currentTarget.value) || draft.to })}
              />
            </Field>
          </>
        )}
        <MultiSelect
          label="Cameras"
          options={cams.map((c) => ({ value: c.id, label: c.name }))}
          value={draft.cameras}
          onChange={(v) => setDraft({ ...draft, cameras: v })}
          anyLabel="All cameras"
          testid="search-camera"
        />
        <MultiSelect
          label="Classes"
          options={LABELS.map((l) => ({ value: l, label: l }))}
          value={draft.labels}
          onChange={(v) => setDraft({ ...draft, labels: v })}
          anyLabel="All classes"
          testid="search-label"
        />
        {zoneOptions.length > 0 && (
          <MultiSelect
            label="Zones"
            options={zoneOptions}
            value={draft.zones}
            onChange={(v) => setDraft({ ...draft, zones: v })}
            anyLabel="Any zone"
          />
        )}
        <Field label="Min. score %">
          <input
            type="number"
            min="0"
            max="100"
            step="5"
            class="narrow"
            value={draft.minScore || ''}
            placeholder="0"
            onInput={(e) => setDraft({ ...draft, minScore: Number(e.currentTarget.value) || 0 })}
          />
        </Field>
        <Field label="Plate / name">
          <input
            type="search"
            value={draft.text}
            placeholder="e.g. AB 123"
            onInput={(e) => setDraft({ ...draft, text: e.currentTarget.value })}
          />
        </Field>
        <Field label="Review">
          <select value={draft.state} onChange={(e) => setDraft({ ...draft, state: e.currentTarget.value })}>
            <option value="">Any</option>
            <option value="new">To review</option>
            <option value="acknowledged">Acknowledged</option>
            <option value="dismissed">Dismissed</option>
          </select>
        </Field>
        <button class="btn primary" type="submit" data-testid="search-submit">
          <Icon name="search" /> Search
        </button>
      </form>

      <div class="search-body">
        <div class="search-main">
          <section class="panel charts">
            <div class="panel-head">
              <h2>Events per hour</h2>
              <span class="muted small">
                {fmtDateTime(applied.from)} – {fmtDateTime(applied.to)}
              </span>
            </div>
            {hours === null ? (
              <div class="chart-placeholder">
                <Spinner />
              </div>
            ) : (
              <HourChart
                from={applied.from}
                to={applied.to}
                counts={hours}
                onPick={(t) => apply({ ...applied, range: 'custom', from: t, to: t + HOUR })}
              />
            )}
            <div class="count-row">
              {byLabel?.map((c) => (
                <button
                  key={c.label}
                  type="button"
                  class="count-chip"
                  title="Search this class only"
                  onClick={() => apply({ ...applied, labels: [c.label!] })}
                >
                  <LabelChip label={c.label ?? '?'} /> <strong>{c.count}</strong>
                </button>
              ))}
              {byLabel?.length === 0 && <span class="muted small">No events in this range</span>}
            </div>
            {Array.isArray(byLine) && byLine.length > 0 && <LineCounts rows={byLine} />}
            {byLine === 'unsupported' && cams.some((c) => c.lines?.length) && (
              <div class="muted small lines">Line-crossing counts are not offered by this server yet.</div>
            )}
          </section>
          <section class="panel results">
            <div class="panel-head">
              <h2>Results</h2>
              <span class="muted small" data-testid="result-count">
                {inRange !== null && <>{inRange.toLocaleString()} in the range and classes · </>}
                {paged.items.length.toLocaleString()} loaded{paged.done ? '' : ' (more as you scroll)'}
              </span>
              {paged.loading && <Spinner />}
            </div>
            <div class="table-head results-grid" role="row">
              <span>Time</span>
              <span>Camera</span>
              <span>Class</span>
              <span>Plate / name</span>
              <span class="num">Score</span>
              <span>Duration</span>
              <span>Zones</span>
              <span>Review</span>
            </div>
            {paged.error && <div class="form-error">{paged.error}</div>}
            {!paged.loading && !paged.items.length && !paged.error ? (
              <Empty title="No events">Nothing matches these filters in this time range.</Empty>
            ) : (
              <VirtualList
                items={paged.items}
                rowHeight={36}
                onEnd={paged.loadMore}
            keyOf={(e) => e.id}
                testid="results"
                role="table"
                label="Results"
                render={(e) => (
                  <div
                    class={'results-grid result-row' + (selected?.id === e.id ? ' selected' : '')}
                    role="row"
                    data-testid="result-row"
                    data-id={e.id}
                    tabIndex={0}
                    onClick={() => setSelected(e)}
                    onKeyDown={(k) => k.key === 'Enter' && setSelected(e)}
                  >
                    <span class="mono">{fmtDateTime(e.start_time)}</span>
                    <span>{cameraName(e.camera)}</span>
                    <span>
                      <LabelChip label={e.label} />
                    </span>
                    <span class="mono">{e.sub_label ?? ''}</span>
                    <span class="num">{Math.round(e.score_max * 100)}%</span>
                    <span>{e.end_time ? fmtDuration(ms(e.end_time) - ms(e.start_time)) : 'ongoing'}</span>
                    <span class="muted">{e.zones.join(', ')}</span>
                    <span>
                      <StateChip state={e.review_state} />
                    </span>
                  </div>
                )}
              />
            )}
          </section>
        </div>
        {selected && <ResultDetail event={selected} onClose={() => setSelected(null)} />}
      </div>
    </div>
  );
}

/** Crossings per counting line and direction, as bars. */
function LineCounts({ rows }: { rows: CountDto[] }) {
  const max = Math.max(1, ...rows.map((r) => r.count));
  return (
    <div class="lines" data-testid="line-counts">
      <h3>Line crossings</h3>
      <table class="table compact">
        <thead>
          <tr>
            <th>Camera</th>
            <th>Line</th>
            <th>Direction</th>
            <th>Class</th>
            <th class="num">Count</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((c, i) => (
            <tr key={i}>
              <td>{c.camera ? cameraName(c.camera) : '–'}</td>
              <td>{c.line ?? c.line_id ?? '–'}</td>
              <td>{c.direction ?? '–'}</td>
              <td>{c.label ?? 'all'}</td>
              <td class="num">{c.count.toLocaleString()}</td>
              <td class="bar-cell">
                <span class="hbar" style={{ width: `${(c.count / max) * 100}%` }} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ResultDetail({ event: e, onClose }: { event: EventDto; onClose: () => void }) {
  const user = useValue(me);
  const [manifest, setManifest] = useState<ExportManifest | null>(null);
  const start = ms(e.start_time);
  const end = e.end_time ? ms(e.end_time) : start;
  const [pre, setPre] = useState(10);
  const [post, setPost] = useState(10);
  return (
    <aside class="result-detail panel" data-testid="result-detail">
      <div class="panel-head">
        <h2>
          <LabelChip label={e.label} /> {cameraName(e.camera)}
        </h2>
        <button class="icon-btn" onClick={onClose} aria-label="Close">
          <Icon name="close" />
        </button>
      </div>
      <img class="result-snap" src={api.snapshotUrl(e.id)} alt={`${e.label} snapshot`} />
      <dl class="kv">
        <dt>Start</dt>
        <dd>{fmtDateTime(e.start_time)}</dd>
        <dt>End</dt>
        <dd>{e.end_time ? fmtDateTime(e.end_time) : 'ongoing'}</dd>
        <dt>Score</dt>
        <dd>
          {Math.round(e.score_max * 100)}% best, {Math.round(e.score_median * 100)}% median
        </dd>
        {e.sub_label && (
          <>
            <dt>Plate / name</dt>
            <dd class="mono">{e.sub_label}</dd>
          </>
        )}
        <dt>Zones</dt>
        <dd>{e.zones.join(', ') || '–'}</dd>
        <dt>Review</dt>
        <dd>
          <StateChip state={e.review_state} /> {e.review_note && <span class="muted">“{e.review_note}”</span>}
        </dd>
        <dt>Id</dt>
        <dd class="mono small">{e.id}</dd>
      </dl>
      <div class="stack">
        <button class="btn" onClick={() => navigate('/playback', { camera: e.camera, t: iso(start - 5 * SECOND), event: e.id })}>
          <Icon name="playback" /> Play the recording
        </button>
        <button class="btn" onClick={() => navigate('/review', { id: e.id, state: 'all' })}>
          <Icon name="review" /> Open in review
        </button>
      </div>
      {canReview(user) && (
        <div class="export-box">
          <h3>Evidence clip</h3>
          <div class="row">
            <Field label="Seconds before">
              <input type="number" min="0" max="600" class="narrow" value={pre} onInput={(x) => setPre(Number(x.currentTarget.value) || 0)} />
            </Field>
            <Field label="Seconds after">
              <input type="number" min="0" max="600" class="narrow" value={post} onInput={(x) => setPost(Number(x.currentTarget.value) || 0)} />
            </Field>
          </div>
          <AsyncButton
            class="btn primary"
            data-testid="export"
            onClick={async () => {
              try {
                setManifest(await api.exportClip(e.camera, iso(start - pre * SECOND), iso(end + post * SECOND)));
              } catch (err) {
                toast(
                  err instanceof ApiError && err.status === 404
                    ? 'No finished recording covers this time yet'
                    : (err as Error).message,
                  'error',
                );
              }
            }}
          >
            <Icon name="download" /> Export clip
          </AsyncButton>
        </div>
      )}
      {manifest && <ExportDone manifest={manifest} onClose={() => setManifest(null)} />}
    </aside>
  );
}

function ExportDone({ manifest: m, onClose }: { manifest: ExportManifest; onClose: () => void }) {
  return (
    <Modal title="Clip exported" onClose={onClose} testid="export-done">
      <dl class="kv">
        <dt>File</dt>
        <dd class="mono">{m.clip}</dd>
        <dt>SHA-256</dt>
        <dd class="mono small break">{m.sha256}</dd>
        <dt>Size</dt>
        <dd>{fmtBytes(m.bytes)}</dd>
        <dt>Covers</dt>
        <dd>
          {fmtDateTime(m.actual.start)} – {fmtDateTime(m.actual.end)} ({m.duration_seconds.toFixed(1)} s, {m.frames} frames,{' '}
          {m.codec})
        </dd>
        <dt>Gaps</dt>
        <dd>{m.gaps.length ? m.gaps.map((g) => `${fmtDateTime(g.start)}–${fmtDateTime(g.end)}`).join('; ') : 'none'}</dd>
        <dt>Exported by</dt>
        <dd>
          {m.exported_by} at {fmtDateTime(m.exported_at)}
        </dd>
      </dl>
      {m.audit && (
        <p class="muted small">
          Audit entry #{m.audit.id} · hash <span class="mono break">{m.audit.hash}</span>
        </p>
      )}
      {m.download ? (
        <div class="row">
          <a class="btn primary" href={m.download} download={m.clip} data-testid="export-download">
            <Icon name="download" /> Download the clip
          </a>
          {m.manifest && (
            <a class="btn" href={m.manifest} download>
              Manifest (JSON)
            </a>
          )}
        </div>
      ) : (
        <p class="muted small">The clip and its manifest are in the server's exports directory.</p>
      )}
    </Modal>
  );
}
