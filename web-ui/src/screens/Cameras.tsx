// Camera administration: every camera with its streams' live state; add, edit, enable or
// delete the cameras made through the API. Cameras from the configuration file are shown
// read-only. Stream credentials are write-only: the server never returns them.
import { useState } from 'preact/hooks';
import { api, type Camera, type NewStream, type StreamRole, type StreamStatus } from '../api';
import { FormModal, useFormError } from '../components/FormModal';
import { Confirm, Empty, Field, Icon, toast } from '../components/ui';
import { fmtBitrate } from '../lib/time';
import { cameras, camerasApi, refreshCameras, refreshStatus, status, useValue } from '../state';

const ROLES: StreamRole[] = ['record', 'live', 'grid', 'detect'];

function StreamState({ s }: { s: StreamStatus | undefined }) {
  if (!s) return <span class="muted">–</span>;
  return (
    <span class="stream-state">
      <span class={'chip st-' + s.state}>{s.state.replace('_', ' ')}</span>
      {s.state === 'streaming' && (
        <span class="muted small">
          {s.codec} {s.width}×{s.height} {s.fps?.toFixed(0)} fps {fmtBitrate(s.bitrate_bps)}
        </span>
      )}
      {s.last_error && <span class="small bad-text">{s.last_error}</span>}
      {/^(hvc1|hev1)/.test(s.codec ?? '') && s.roles.some((r) => r === 'live' || r === 'grid') && (
        <span class="chip st-connecting" title="Most browsers cannot play H.265 live: add an H.264 sub stream for the wall">
          H.265 live
        </span>
      )}
    </span>
  );
}

export function Cameras() {
  const list = useValue(cameras);
  const st = useValue(status);
  const hasApi = useValue(camerasApi);
  const [editing, setEditing] = useState<Camera | 'new' | null>(null);
  const [deleting, setDeleting] = useState<Camera | null>(null);

  const reload = async () => {
    await refreshCameras();
    await refreshStatus();
  };

  return (
    <div class="admin">
      <div class="toolbar">
        <h1 class="screen-title">Cameras</h1>
        <span class="muted">{list.length} cameras</span>
        <div class="spacer" />
        {hasApi !== false && (
          <button class="btn primary" onClick={() => setEditing('new')} data-testid="add-camera">
            <Icon name="plus" /> Add camera
          </button>
        )}
      </div>
      {hasApi === false && (
        <div class="notice">This server does not offer camera management yet: the list below comes from the live status.</div>
      )}
      {!list.length ? (
        <Empty title="No cameras">Add one, or list cameras in the configuration file.</Empty>
      ) : (
        <div class="table-wrap">
          <table class="table" data-testid="cameras-table">
            <thead>
              <tr>
                <th>Camera</th>
                <th>Streams</th>
                <th>State</th>
                <th>Zones / lines</th>
                <th>Managed by</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.map((c) => (
                <tr key={c.id} class={c.enabled ? '' : 'disabled-row'}>
                  <td>
                    <div class="strong">{c.name}</div>
                    <div class="muted small mono">{c.id}</div>
                    {!c.enabled && <span class="chip st-disabled">disabled</span>}
                  </td>
                  <td>
                    {c.streams.map((s) => (
                      <div key={s.name} class="stream-line">
                        <span class="mono">{s.name}</span>
                        <span class="muted small">{s.roles.join(', ')}</span>
                        <span class="muted small mono url">{s.url ?? '(hidden)'}</span>
                        {s.has_credentials && <Icon name="lock" title="Has credentials" />}
                      </div>
                    ))}
                  </td>
                  <td>
                    {c.streams.map((s) => (
                      <div key={s.name} class="stream-line">
                        <StreamState s={st.find((x) => x.camera === c.id && x.stream === s.name)} />
                      </div>
                    ))}
                  </td>
                  <td class="small">
                    {c.zones?.length ? c.zones.join(', ') : <span class="muted">no zones</span>}
                    <br />
                    {c.lines?.length ? c.lines.join(', ') : <span class="muted">no lines</span>}
                  </td>
                  <td>
                    {c.managed_by === 'config' ? (
                      <span class="chip" title="Change it in the configuration file">
                        <Icon name="lock" /> config file
                      </span>
                    ) : (
                      <span class="chip">API</span>
                    )}
                  </td>
                  <td class="actions">
                    {c.managed_by === 'api' && hasApi && (
                      <>
                        <button class="icon-btn" title="Edit" aria-label={`Edit ${c.name}`} onClick={() => setEditing(c)}>
                          <Icon name="edit" />
                        </button>
                        <button class="icon-btn danger" title="Delete" aria-label={`Delete ${c.name}`} onClick={() => setDeleting(c)}>
                          <Icon name="trash" />
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {editing && (
        <CameraForm
          camera={editing === 'new' ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={async () => {
            setEditing(null);
            await reload();
          }}
        />
      )}
      {deleting && (
        <Confirm
          title={`Delete ${deleting.name}?`}
          confirmLabel="Delete camera"
          danger
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            try {
              await api.deleteCamera(deleting.id);
              toast(`Deleted ${deleting.name}`, 'ok');
              await reload();
            } catch (e) {
              toast((e as Error).message, 'error');
            }
          }}
        >
          <p>
            Live view and recording of <strong>{deleting.name}</strong> stop. Its recordings and events stay until
            retention removes them.
          </p>
        </Confirm>
      )}
    </div>
  );
}

interface StreamDraft extends NewStream {
  key: number;
  hadCredentials: boolean;
}

let streamKey = 0;

function CameraForm(p: { camera: Camera | null; onClose: () => void; onSaved: () => Promise<void> }) {
  const c = p.camera;
  const [id, setId] = useState(c?.id ?? '');
  const [name, setName] = useState(c?.name ?? '');
  const [enabled, setEnabled] = useState(c?.enabled ?? true);
  const [streams, setStreams] = useState<StreamDraft[]>(
    c?.streams.map((s) => ({ key: ++streamKey, name: s.name, url: s.url ?? '', roles: s.roles, hadCredentials: s.has_credentials })) ?? [
      { key: ++streamKey, name: 'main', url: '', roles: ['record', 'live', 'detect'], hadCredentials: false },
    ],
  );
  const [analytics, setAnalytics] = useState(
    c?.analytics && Object.keys(c.analytics).length ? JSON.stringify(c.analytics, null, 2) : '',
  );
  const { error, setError, run } = useFormError();
  const setStream = (k: number, patch: Partial<StreamDraft>) =>
    setStreams(streams.map((s) => (s.key === k ? { ...s, ...patch } : s)));

  const save = () => run(async () => {
    let parsedAnalytics: Record<string, unknown> | null = null;
    if (analytics.trim()) {
      try {
        const v: unknown = JSON.parse(analytics);
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('an object');
        parsedAnalytics = v as Record<string, unknown>;
      } catch (e) {
        setError({ field: 'analytics', message: `Not a JSON object: ${(e as Error).message}` });
        return;
      }
    }
    const body: NewStream[] = streams.map((s) => {
      const out: NewStream = { name: s.name.trim(), url: s.url.trim(), roles: s.roles };
      if (s.username) out.username = s.username;
      if (s.password) out.password = s.password;
      return out;
    });
    if (c) {
      // A stream sent without username/password keeps its stored login; null analytics
      // removes them.
      await api.updateCamera(c.id, { name: name.trim(), enabled, streams: body, analytics: parsedAnalytics });
    } else {
      const created: Parameters<typeof api.createCamera>[0] = { id: id.trim(), name: name.trim() || id.trim(), enabled, streams: body };
      if (parsedAnalytics) created.analytics = parsedAnalytics;
      await api.createCamera(created);
    }
    toast(c ? `Saved ${name}` : `Added ${name || id}`, 'ok');
    await p.onSaved();
  });

  return (
    <FormModal
      title={c ? `Edit ${c.name}` : 'Add camera'}
      testid="camera-form"
      wide
      saveLabel={c ? 'Save' : 'Add camera'}
      error={error}
      atField={(f) => f === 'id' || f === 'name' || f.startsWith('analytics')}
      onSave={save}
      onClose={p.onClose}
    >
      <div class="form-grid">
        <Field label="Id" hint="Letters, digits, - and _; cannot change later" error={error?.field === 'id' ? error.message : null}>
          <input name="id" value={id} disabled={!!c} onInput={(e) => setId(e.currentTarget.value)} placeholder="gate-north" required />
        </Field>
        <Field label="Name" error={error?.field === 'name' ? error.message : null}>
          <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="North gate" />
        </Field>
        <label class="check-row">
          <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} /> Enabled
        </label>
      </div>
      <h3>Streams</h3>
      {streams.map((s) => (
        <fieldset class="stream-form" key={s.key}>
          <div class="stream-grid">
            <Field label="Name">
              <input value={s.name} onInput={(e) => setStream(s.key, { name: e.currentTarget.value })} />
            </Field>
            <Field label="RTSP URL" hint="Without credentials">
              <input
                name="url"
                value={s.url}
                placeholder="rtsp://192.0.2.10:554/stream1"
                onInput={(e) => setStream(s.key, { url: e.currentTarget.value })}
              />
            </Field>
            <Field label="User name">
              <input
                value={s.username ?? ''}
                autocomplete="off"
                placeholder={s.hadCredentials ? '(unchanged)' : ''}
                onInput={(e) => setStream(s.key, { username: e.currentTarget.value })}
              />
            </Field>
            <Field label="Password">
              <input
                type="password"
                autocomplete="new-password"
                value={s.password ?? ''}
                placeholder={s.hadCredentials ? '(unchanged)' : ''}
                onInput={(e) => setStream(s.key, { password: e.currentTarget.value })}
              />
            </Field>
          </div>
          <div class="row">
            <span class="field-label">Roles</span>
            {ROLES.map((r) => (
              <label class="check-row" key={r}>
                <input
                  type="checkbox"
                  checked={s.roles.includes(r)}
                  onChange={(e) =>
                    setStream(s.key, { roles: e.currentTarget.checked ? [...s.roles, r] : s.roles.filter((x) => x !== r) })
                  }
                />
                {r}
              </label>
            ))}
            <div class="spacer" />
            {streams.length > 1 && (
              <button class="btn small ghost" onClick={() => setStreams(streams.filter((x) => x.key !== s.key))}>
                Remove stream
              </button>
            )}
          </div>
        </fieldset>
      ))}
      <button
        class="btn small"
        onClick={() => setStreams([...streams, { key: ++streamKey, name: 'sub', url: '', roles: ['grid'], hadCredentials: false }])}
      >
        <Icon name="plus" /> Add a stream
      </button>
      <Field
        label="Analytics (JSON)"
        hint='Zones, counting lines, alert rules, motion and tracker settings, as in the configuration file: {"zones": [{"name": "lane", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}], "alerts": {"labels": ["car"], "required_zones": ["lane"]}}'
        error={error?.field?.startsWith('analytics') ? error.message : null}
      >
        <textarea
          class="mono"
          rows={5}
          spellcheck={false}
          value={analytics}
          placeholder="{}"
          onInput={(e) => setAnalytics(e.currentTarget.value)}
        />
      </Field>
      <p class="muted small">
        Roles: <b>record</b> writes to disk, <b>live</b> plays in the focused view, <b>grid</b> plays in wall tiles (use a
        small H.264 sub stream), <b>detect</b> feeds the analytics.
      </p>
    </FormModal>
  );
}
