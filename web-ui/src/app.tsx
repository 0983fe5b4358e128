// The shell: login gate, navigation, global keyboard shortcuts, the status strip.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, setCsrf, setUnauthorizedHandler, type Me } from './api';
import { Icon, Kbd, Modal, Toasts, toast } from './components/ui';
import { typing } from './lib/keys';
import { navigate, useRoute } from './lib/router';
import { fmtTime } from './lib/time';
import {
  isAdmin,
  me,
  refreshCameras,
  refreshStatus,
  startAlertStream,
  status,
  stopAlertStream,
  unseenAlerts,
  streamState,
  useValue,
} from './state';
import { Login } from './screens/Login';
import { Wall } from './screens/Wall';
import { Review } from './screens/Review';
import { Search } from './screens/Search';
import { Playback } from './screens/Playback';
import { Cameras } from './screens/Cameras';
import { Users } from './screens/Users';
import { Audit } from './screens/Audit';

interface NavItem {
  path: string;
  label: string;
  icon: string;
  key: string;
  admin?: boolean;
}

const NAV: NavItem[] = [
  { path: '/wall', label: 'Live', icon: 'wall', key: 'w' },
  { path: '/review', label: 'Alerts', icon: 'review', key: 'r' },
  { path: '/search', label: 'Search', icon: 'search', key: 's' },
  { path: '/playback', label: 'Playback', icon: 'playback', key: 'p' },
  { path: '/cameras', label: 'Cameras', icon: 'camera', key: 'c', admin: true },
  { path: '/users', label: 'Users', icon: 'users', key: 'u', admin: true },
  { path: '/audit', label: 'Audit log', icon: 'audit', key: 'a', admin: true },
];

function Clock() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return (
    <span class="clock" title={zone}>
      {fmtTime(now)}
    </span>
  );
}

function StatusStrip() {
  const st = useValue(status);
  const sse = useValue(streamState);
  const cams = new Set(st.map((s) => s.camera));
  const down = new Set(st.filter((s) => s.state === 'retrying' || s.state === 'auth_failed').map((s) => s.camera));
  return (
    <div class="status-strip">
      <span
        class={'dot ' + (sse === 'open' ? 'ok' : sse === 'down' ? 'bad' : 'warn')}
        title={sse === 'open' ? 'Alerts arrive live' : sse === 'down' ? 'Alert stream offline' : 'Connecting the alert stream…'}
        data-testid="alert-stream"
        data-state={sse}
      />
      <span title={down.size ? `${down.size} camera(s) down` : 'Every camera streams'}>
        <span class={down.size ? 'bad-text' : ''}>{cams.size - down.size}</span>/{cams.size} cameras
      </span>
    </div>
  );
}

function Help({ onClose }: { onClose: () => void }) {
  const rows: [string, string[], string][] = [
    ['Anywhere', ['g', 'w / r / s / p'], 'Live wall, alerts, search, playback'],
    ['', ['g', 'c / u / a'], 'Cameras, users, audit log (admins)'],
    ['', ['?'], 'This help'],
    ['Live wall', ['1–9'], 'Focus tile 1–9 on the main stream'],
    ['', ['Esc'], 'Back to the wall'],
    ['', ['←', '→'], 'Previous / next camera while focused'],
    ['', ['[', ']'], 'Previous / next page of tiles'],
    ['', ['l'], 'Next layout (1, 4, 9, 16, 25, 36, 64 tiles)'],
    ['Alerts', ['j', 'k'], 'Next / previous alert (or ↓ ↑)'],
    ['', ['a', 'd'], 'Acknowledge / dismiss the selected alert'],
    ['', ['n'], 'Write a note (Ctrl+Enter acknowledges, Esc leaves)'],
    ['', ['c'], 'Snapshot: crop / whole frame'],
    ['', ['v'], 'Snapshot / clip'],
    ['Playback', ['Space'], 'Play / pause'],
    ['', ['←', '→'], '10 s back / forward (with Shift: 1 min)'],
    ['', ['+', '−'], 'Zoom the timeline in / out'],
    ['', [',', '.'], 'Previous / next event'],
  ];
  return (
    <Modal title="Keyboard shortcuts" onClose={onClose}>
      <table class="help-table">
        <tbody>
          {rows.map(([where, keys, what], i) => (
            <tr key={i} class={where ? 'help-group' : ''}>
              <td class="muted small">{where}</td>
              <td class="help-keys">
                {keys.map((k) => (
                  <Kbd key={k}>{k}</Kbd>
                ))}
              </td>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Modal>
  );
}

export function App() {
  const user = useValue(me);
  const route = useRoute();
  const [checked, setChecked] = useState(false);
  const [help, setHelp] = useState(false);
  const unseen = useValue(unseenAlerts);
  useEffect(() => {
    if (route.path === '/review' && unseen) unseenAlerts.set(0);
  }, [route.path, unseen]);

  // Who am I (an existing session cookie), once.
  useEffect(() => {
    setUnauthorizedHandler(() => {
      if (me.get()) toast('Your session ended; please log in again', 'error');
      me.set(null);
      setCsrf(null);
      stopAlertStream();
    });
    api
      .me()
      .then((m) => {
        setCsrf(m.csrf_token);
        me.set(m);
      })
      .catch(() => me.set(null))
      .finally(() => setChecked(true));
  }, []);

  // Data every screen shares, while logged in.
  useEffect(() => {
    if (!user) return;
    startAlertStream();
    refreshCameras().catch((e: Error) => toast(`Cameras: ${e.message}`, 'error'));
    void refreshStatus();
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') void refreshStatus();
    }, 5000);
    const c = setInterval(() => {
      if (document.visibilityState === 'visible') refreshCameras().catch(() => {});
    }, 60000);
    return () => {
      clearInterval(t);
      clearInterval(c);
    };
  }, [user?.id]);

  // Global shortcuts: "g" then a letter moves between screens; "?" shows help.
  useEffect(() => {
    let g = 0;
    const onKey = (e: KeyboardEvent) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey || !me.get()) return;
      if (e.key === '?') {
        setHelp(true);
        e.preventDefault();
        return;
      }
      if (e.key === 'g') {
        g = Date.now();
        return;
      }
      if (Date.now() - g < 1200) {
        const item = NAV.find((n) => n.key === e.key && (!n.admin || isAdmin(me.get())));
        g = 0;
        if (item) {
          e.preventDefault();
          e.stopImmediatePropagation();
          navigate(item.path);
        }
      }
    };
    window.addEventListener('keydown', onKey, true);
    return () => window.removeEventListener('keydown', onKey, true);
  }, []);

  if (!checked) return <div class="boot">Panoptes</div>;
  if (!user) {
    return (
      <>
        <Login
          onLogin={(m: Me) => {
            setCsrf(m.csrf_token);
            me.set(m);
            if (route.path === '/' || route.path === '/login') navigate('/wall', undefined, true);
          }}
        />
        <Toasts />
      </>
    );
  }

  const path = route.path === '/' || route.path === '/login' ? '/wall' : route.path;
  const items = NAV.filter((n) => !n.admin || isAdmin(user));
  let screen;
  switch (path) {
    case '/wall':
      screen = <Wall params={route.params} />;
      break;
    case '/review':
      screen = <Review params={route.params} />;
      break;
    case '/search':
      screen = <Search params={route.params} />;
      break;
    case '/playback':
      screen = <Playback params={route.params} />;
      break;
    case '/cameras':
      screen = isAdmin(user) ? <Cameras /> : null;
      break;
    case '/users':
      screen = isAdmin(user) ? <Users /> : null;
      break;
    case '/audit':
      screen = isAdmin(user) ? <Audit /> : null;
      break;
    default:
      screen = null;
  }
  return (
    <div class="shell">
      <header class="topbar">
        <a class="brand" href="#/wall" aria-label="Panoptes home">
          <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
            <circle cx="12" cy="12" r="10" fill="none" stroke="currentColor" stroke-width="1.6" />
            <circle cx="12" cy="12" r="4" fill="currentColor" />
          </svg>
          <span>PANOPTES</span>
        </a>
        <nav class="nav" aria-label="Screens">
          {items.map((n) => (
            <a
              key={n.path}
              href={'#' + n.path}
              class={'nav-item' + (path === n.path ? ' active' : '')}
              aria-current={path === n.path ? 'page' : undefined}
              title={`${n.label} (g ${n.key})`}
              data-testid={'nav-' + n.path.slice(1)}
            >
              <Icon name={n.icon} />
              <span>{n.label}</span>
              {n.path === '/review' && unseen > 0 && (
                <span class="badge" title={`${unseen} new alert${unseen === 1 ? '' : 's'} since you last looked`}>
                  {unseen > 99 ? '99+' : unseen}
                </span>
              )}
            </a>
          ))}
        </nav>
        <div class="topbar-right">
          <StatusStrip />
          <Clock />
          <button class="icon-btn" onClick={() => setHelp(true)} title="Keyboard shortcuts (?)" aria-label="Keyboard shortcuts">
            <Icon name="keyboard" />
          </button>
          <span class="who" data-testid="who">
            <span class="who-name">{user.name}</span>
            <span class="who-role">{user.role}</span>
          </span>
          <button
            class="icon-btn"
            title="Log out"
            aria-label="Log out"
            onClick={async () => {
              try {
                await api.logout();
              } catch (e) {
                if (!(e instanceof ApiError)) throw e;
              }
              stopAlertStream();
              setCsrf(null);
              me.set(null);
              navigate('/login', undefined, true);
            }}
          >
            <Icon name="logout" />
          </button>
        </div>
      </header>
      <main class="screen" id="main">
        {screen ?? (
          <div class="empty">
            <div class="empty-title">Nothing here</div>
            <a href="#/wall">Go to the live wall</a>
          </div>
        )}
      </main>
      {help && <Help onClose={() => setHelp(false)} />}
      <Toasts />
    </div>
  );
}
