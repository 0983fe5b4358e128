// User administration: roles, camera grants, disabling, passwords.
import { useEffect, useState } from 'preact/hooks';
import { api, type Role, type User } from '../api';
import { FormModal, useFormError } from '../components/FormModal';
import { AsyncButton, Confirm, Empty, Field, Icon, Spinner, toast } from '../components/ui';
import { invalidateUsers } from '../lib/people';
import { fmtDateTime } from '../lib/time';
import { cameraName, cameras, me, useValue } from '../state';

const ROLE_TEXT: Record<Role, string> = {
  admin: 'Everything, on every camera: cameras, users, audit log',
  operator: 'Watch, review alerts, export clips on granted cameras',
  viewer: 'Watch granted cameras',
};

export function Users() {
  const [users, setUsers] = useState<User[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<User | 'new' | null>(null);
  const [disabling, setDisabling] = useState<User | null>(null);
  const self = useValue(me);

  const load = () =>
    api
      .users()
      .then((u) => {
        setUsers(u);
        setError(null);
        invalidateUsers();
      })
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    void load();
  }, []);

  return (
    <div class="admin">
      <div class="toolbar">
        <h1 class="screen-title">Users</h1>
        {users && <span class="muted">{users.length} users</span>}
        <div class="spacer" />
        <button class="btn primary" onClick={() => setEditing('new')} data-testid="add-user">
          <Icon name="plus" /> Add user
        </button>
      </div>
      {error && <div class="form-error">{error}</div>}
      {users === null && !error && <Spinner />}
      {users?.length === 0 && <Empty title="No users" />}
      {users && users.length > 0 && (
        <div class="table-wrap">
          <table class="table" data-testid="users-table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Role</th>
                <th>Cameras</th>
                <th>State</th>
                <th>Created</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.id} class={u.disabled ? 'disabled-row' : ''}>
                  <td>
                    <span class="strong">{u.name}</span>
                    {u.id === self?.id && <span class="muted small"> (you)</span>}
                  </td>
                  <td>
                    <span class={'chip role-' + u.role}>{u.role}</span>
                  </td>
                  <td class="small">
                    {u.role === 'admin' ? (
                      <span class="muted">all</span>
                    ) : u.cameras.length ? (
                      u.cameras.map(cameraName).join(', ')
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                  <td>{u.disabled ? <span class="chip st-disabled">disabled</span> : <span class="chip st-streaming">active</span>}</td>
                  <td class="small muted">{fmtDateTime(u.created_at)}</td>
                  <td class="actions">
                    <button class="icon-btn" title="Edit" aria-label={`Edit ${u.name}`} onClick={() => setEditing(u)}>
                      <Icon name="edit" />
                    </button>
                    {u.id !== self?.id &&
                      (u.disabled ? (
                        <AsyncButton
                          class="btn small ghost"
                          onClick={() =>
                            api
                              .updateUser(u.id, { disabled: false })
                              .then(() => toast(`Enabled ${u.name}`, 'ok'))
                              .then(load)
                              .catch((e: Error) => toast(e.message, 'error'))
                          }
                        >
                          Enable
                        </AsyncButton>
                      ) : (
                        <button class="icon-btn danger" title="Disable" aria-label={`Disable ${u.name}`} onClick={() => setDisabling(u)}>
                          <Icon name="lock" />
                        </button>
                      ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {editing && (
        <UserForm
          user={editing === 'new' ? null : editing}
          isSelf={editing !== 'new' && editing.id === self?.id}
          onClose={() => setEditing(null)}
          onSaved={async () => {
            setEditing(null);
            await load();
          }}
        />
      )}
      {disabling && (
        <Confirm
          title={`Disable ${disabling.name}?`}
          confirmLabel="Disable user"
          danger
          onClose={() => setDisabling(null)}
          onConfirm={async () => {
            try {
              await api.disableUser(disabling.id);
              toast(`Disabled ${disabling.name}`, 'ok');
              await load();
            } catch (e) {
              toast((e as Error).message, 'error');
            }
          }}
        >
          <p>
            <strong>{disabling.name}</strong> can no longer log in: their sessions end and their API tokens are revoked at
            once. Users are never deleted, so their reviews and audit entries keep naming them; you can enable them again.
          </p>
        </Confirm>
      )}
    </div>
  );
}

function UserForm(p: { user: User | null; isSelf: boolean; onClose: () => void; onSaved: () => Promise<void> }) {
  const u = p.user;
  const cams = useValue(cameras);
  const [name, setName] = useState(u?.name ?? '');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>(u?.role ?? 'viewer');
  const [grants, setGrants] = useState<string[]>(u?.cameras ?? []);
  const [disabled, setDisabled] = useState(u?.disabled ?? false);
  const { error, run } = useFormError();

  const save = () => run(async () => {
    if (u) {
      const patch: Parameters<typeof api.updateUser>[1] = { role, cameras: grants, disabled };
      if (password) patch.password = password;
      await api.updateUser(u.id, patch);
    } else {
      await api.createUser({ name: name.trim(), password, role, cameras: grants });
    }
    toast(u ? `Saved ${u.name}` : `Added ${name}`, 'ok');
    await p.onSaved();
  });

  return (
    <FormModal
      title={u ? `Edit ${u.name}` : 'Add user'}
      testid="user-form"
      saveLabel={u ? 'Save' : 'Add user'}
      error={error}
      atField={(f) => f === 'name' || f === 'password'}
      onSave={save}
      onClose={p.onClose}
    >
      <div class="form-grid">
        <Field label="Name" error={error?.field === 'name' ? error.message : null}>
          <input value={name} disabled={!!u} onInput={(e) => setName(e.currentTarget.value)} autocomplete="off" />
        </Field>
        <Field
          label={u ? 'New password' : 'Password'}
          hint={u ? 'Leave empty to keep the current one' : 'At least 12 characters'}
          error={error?.field === 'password' ? error.message : null}
        >
          <input type="password" value={password} autocomplete="new-password" onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
      </div>
      <div class="field">
        <span class="field-label">Role</span>
        {(['viewer', 'operator', 'admin'] as Role[]).map((r) => (
          <label class="check-row" key={r}>
            <input type="radio" name="role" checked={role === r} disabled={p.isSelf} onChange={() => setRole(r)} />
            <span class={'chip role-' + r}>{r}</span>
            <span class="muted small">{ROLE_TEXT[r]}</span>
          </label>
        ))}
      </div>
      {role !== 'admin' && (
        <div class="field">
          <span class="field-label">Cameras ({grants.length} of {cams.length})</span>
          <div class="grant-grid">
            {cams.map((c) => (
              <label class="check-row" key={c.id}>
                <input
                  type="checkbox"
                  checked={grants.includes(c.id)}
                  onChange={(e) => setGrants(e.currentTarget.checked ? [...grants, c.id] : grants.filter((x) => x !== c.id))}
                />
                {c.name}
              </label>
            ))}
          </div>
          <div class="row">
            <button class="link small" type="button" onClick={() => setGrants(cams.map((c) => c.id))}>
              All
            </button>
            <button class="link small" type="button" onClick={() => setGrants([])}>
              None
            </button>
          </div>
        </div>
      )}
      {u && !p.isSelf && (
        <label class="check-row">
          <input type="checkbox" checked={disabled} onChange={(e) => setDisabled(e.currentTarget.checked)} /> Disabled (cannot
          log in)
        </label>
      )}
    </FormModal>
  );
}
