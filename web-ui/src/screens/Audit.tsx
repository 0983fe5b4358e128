// The audit log: who did what, when, from where; newest first, paged by keyset as it
// scrolls. The log is hash-chained on the server (`panoptes audit verify`).
import { useEffect, useState } from 'preact/hooks';
import { api, type AuditEntry } from '../api';
import { VirtualList } from '../components/VirtualList';
import { Empty, Icon, Spinner } from '../components/ui';
import { usePaged } from '../lib/paging';
import { fmtDateTime } from '../lib/time';
import { cameraName } from '../state';

const ACTION_TEXT: Record<string, string> = {
  login: 'Logged in',
  login_failed: 'Failed login',
  logout: 'Logged out',
  review: 'Reviewed an event',
  recording_view: 'Watched a recording',
  live_view: 'Watched live',
  export: 'Exported a clip',
  token_create: 'Created an API token',
  token_revoke: 'Revoked an API token',
  setup_admin: 'Created the first admin',
  user_create: 'Created a user',
  user_update: 'Changed a user',
  user_disable: 'Disabled a user',
  camera_create: 'Added a camera',
  camera_update: 'Changed a camera',
  camera_delete: 'Deleted a camera',
};

function detailText(d: unknown): string {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  const parts: string[] = [];
  for (const [k, v] of Object.entries(d as Record<string, unknown>)) {
    if (v === null || v === undefined || v === '') continue;
    if (k === 'segments' && Array.isArray(v)) parts.push(`${v.length} segments`);
    else if (typeof v === 'object') continue;
    else parts.push(`${k}: ${String(v)}`);
  }
  return parts.join(' · ');
}

function Target({ e }: { e: AuditEntry }) {
  if (!e.target) return <span class="muted">–</span>;
  if (e.action === 'review') {
    return (
      <a href={`#/review?id=${encodeURIComponent(e.target)}&state=all`} class="mono small">
        event {e.target.slice(0, 8)}
      </a>
    );
  }
  if (['live_view', 'recording_view', 'export'].includes(e.action)) return <span>{cameraName(e.target)}</span>;
  return <span>{e.target}</span>;
}

export function Audit() {
  const [reloadKey, setReloadKey] = useState(0);
  const [action, setAction] = useState('');
  const [actor, setActor] = useState('');
  const [actorQuery, setActorQuery] = useState('');
  useEffect(() => {
    const t = setTimeout(() => setActorQuery(actor.trim()), 300);
    return () => clearTimeout(t);
  }, [actor]);
  const paged = usePaged<AuditEntry>(JSON.stringify([reloadKey, action, actorQuery]), async (cursor, signal) => {
    const page = await api.audit(
      { limit: 200, before: cursor, action: action || undefined, actor: actorQuery || undefined },
      signal,
    );
    return { items: page.entries, next: page.next };
  });
  const shown = paged.items;

  return (
    <div class="admin audit">
      <div class="toolbar">
        <h1 class="screen-title">Audit log</h1>
        <span class="muted small">Append-only and hash-chained: verify it with panoptes audit verify</span>
        <div class="spacer" />
        <label class="field inline">
          <span class="field-label">Action</span>
          <select value={action} onChange={(e) => setAction(e.currentTarget.value)} data-testid="audit-action">
            <option value="">All actions</option>
            {Object.entries(ACTION_TEXT).map(([k, v]) => (
              <option key={k} value={k}>
                {k} · {v}
              </option>
            ))}
          </select>
        </label>
        <label class="field inline">
          <span class="field-label">User</span>
          <input type="search" value={actor} onInput={(e) => setActor(e.currentTarget.value)} placeholder="name" />
        </label>
        <button class="icon-btn" onClick={() => setReloadKey((k) => k + 1)} title="Reload" aria-label="Reload">
          <Icon name="refresh" />
        </button>
      </div>
      <div class="panel results">
        <div class="table-head audit-grid" role="row">
          <span>Time</span>
          <span>User</span>
          <span>Action</span>
          <span>Target</span>
          <span>Details</span>
          <span>Address</span>
        </div>
        {paged.error && <div class="form-error">{paged.error}</div>}
        {!paged.loading && !paged.items.length && !paged.error ? (
          <Empty title="No entries" />
        ) : (
          <VirtualList
            items={shown}
            rowHeight={34}
            onEnd={paged.loadMore}
            keyOf={(e) => e.id}
            testid="audit-list"
            role="table"
            label="Audit log"
            render={(e) => (
              <div class="audit-grid audit-row" role="row" data-testid="audit-row" data-action={e.action}>
                <span class="mono">{fmtDateTime(e.at)}</span>
                <span class="strong">{e.actor || <span class="muted">system</span>}</span>
                <span>
                  <span class={'chip act-' + e.action}>{e.action}</span>
                  <span class="muted small"> {ACTION_TEXT[e.action] ?? ''}</span>
                </span>
                <span>
                  <Target e={e} />
                </span>
                <span class="muted small ellipsis" title={JSON.stringify(e.details ?? e.detail)}>
                  {detailText(e.details ?? e.detail)}
                </span>
                <span class="mono small muted">{e.ip ?? ''}</span>
              </div>
            )}
            footer={paged.loading ? <div class="list-foot"><Spinner /></div> : null}
          />
        )}
      </div>
    </div>
  );
}
