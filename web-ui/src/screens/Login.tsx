// Login, and the one-time creation of the first admin with the setup token that the
// server prints at its first start.
import { useState } from 'preact/hooks';
import { ApiError, api, type Me } from '../api';
import { Spinner } from '../components/ui';

export function Login({ onLogin }: { onLogin: (m: Me) => void }) {
  const [mode, setMode] = useState<'login' | 'setup'>('login');
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === 'setup') await api.setup(token.trim(), name.trim(), password);
      onLogin(await api.login(name.trim(), password));
    } catch (err) {
      if (err instanceof ApiError) {
        if (err.code === 'bad_login') setError('Wrong user name or password.');
        else if (err.code === 'rate_limited') setError('Too many failed attempts. Wait a few minutes and try again.');
        else if (err.code === 'disabled' && mode === 'setup') setError('Setup is done: an admin exists. Log in instead.');
        else setError(err.message);
      } else {
        setError(String(err));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login-page">
      <form class="login-card" onSubmit={submit} data-testid="login-form" aria-label="Log in">
        <div class="login-brand">
          <svg viewBox="0 0 24 24" width="34" height="34" aria-hidden="true">
            <circle cx="12" cy="12" r="10" fill="none" stroke="currentColor" stroke-width="1.6" />
            <circle cx="12" cy="12" r="4" fill="currentColor" />
          </svg>
          <div>
            <div class="login-title">PANOPTES</div>
            <div class="muted small">Video recording and analytics</div>
          </div>
        </div>
        {mode === 'setup' && (
          <p class="muted small">
            First start: create the administrator with the one-time setup token printed in the server's log.
          </p>
        )}
        {mode === 'setup' && (
          <label class="field">
            <span class="field-label">Setup token</span>
            <input
              name="token"
              value={token}
              onInput={(e) => setToken(e.currentTarget.value)}
              autocomplete="off"
              spellcheck={false}
              required
            />
          </label>
        )}
        <label class="field">
          <span class="field-label">User name</span>
          <input
            name="username"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            autocomplete="username"
            autofocus
            required
          />
        </label>
        <label class="field">
          <span class="field-label">Password</span>
          <input
            name="password"
            type="password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            autocomplete={mode === 'setup' ? 'new-password' : 'current-password'}
            required
          />
        </label>
        {error && (
          <div class="form-error" role="alert">
            {error}
          </div>
        )}
        <button class="btn primary block" type="submit" disabled={busy}>
          {busy && <Spinner />}
          {mode === 'setup' ? 'Create admin and log in' : 'Log in'}
        </button>
        <button
          type="button"
          class="link small center"
          onClick={() => {
            setMode(mode === 'login' ? 'setup' : 'login');
            setError(null);
          }}
        >
          {mode === 'login' ? 'First start? Create the admin account' : 'Back to log in'}
        </button>
      </form>
    </div>
  );
}
