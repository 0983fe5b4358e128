// Hash routing (`#/review?camera=lobby`): works behind any static server and the
// binary's SPA fallback alike, and never reloads the page.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  path: string;
  params: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const h = hash.replace(/^#/, '');
  const [p = '', q = ''] = h.split('?', 2);
  const path = '/' + p.replace(/^\/+/, '').replace(/\/+$/, '');
  return { path, params: new URLSearchParams(q) };
}

export function hashFor(path: string, params?: Record<string, string | undefined | null> | URLSearchParams): string {
  let q = '';
  if (params instanceof URLSearchParams) {
    q = params.toString();
  } else if (params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
    q = u.toString();
  }
  return '#' + path + (q ? '?' + q : '');
}

/** Goes to a route; `replace` keeps the back button for real moves only. */
export function navigate(
  path: string,
  params?: Record<string, string | undefined | null> | URLSearchParams,
  replace = false,
): void {
  const h = hashFor(path, params);
  if (h === location.hash) return;
  if (replace) {
    history.replaceState(history.state, '', h);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = h;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
