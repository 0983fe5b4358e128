// Keyset paging as a hook: pages are fetched on demand (the list asks when its end comes
// into view), never everything at once. A change of `key` (the filters) starts over and
// aborts the request under way.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Page<T> {
  items: T[];
  next: string | number | null;
}

export type Fetcher<T> = (cursor: string | number | null, signal: AbortSignal) => Promise<Page<T>>;

export interface Paged<T> {
  items: T[];
  loading: boolean;
  error: string | null;
  /** No more pages. */
  done: boolean;
  loadMore: () => void;
  reload: () => void;
  /** Adds items at the top (live updates), skipping ids already listed. */
  prepend: (items: T[]) => void;
  /** Replaces the item with the same id. */
  update: (item: T) => void;
  remove: (id: string | number) => void;
}

/**
 * `order` keeps live additions in the list's order (an old event that becomes an alert
 * goes where it belongs, not on top).
 */
export function usePaged<T extends { id: string | number }>(
  key: string,
  fetcher: Fetcher<T>,
  order?: (a: T, b: T) => number,
): Paged<T> {
  const [items, setItems] = useState<T[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const cursor = useRef<string | number | null>(null);
  const inflight = useRef<AbortController | null>(null);
  const generation = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const doneRef = useRef(false);
  const orderRef = useRef(order);
  orderRef.current = order;

  const load = useCallback((first: boolean) => {
    if (!first && (inflight.current || doneRef.current)) return;
    inflight.current?.abort();
    const ctl = new AbortController();
    inflight.current = ctl;
    const gen = generation.current;
    setLoading(true);
    setError(null);
    fetcherRef
      .current(first ? null : cursor.current, ctl.signal)
      .then((page) => {
        if (gen !== generation.current) return;
        cursor.current = page.next;
        doneRef.current = page.next === null || page.next === undefined;
        setDone(doneRef.current);
        setItems((old) => {
          if (first) return page.items;
          const seen = new Set(old.map((i) => i.id));
          return old.concat(page.items.filter((i) => !seen.has(i.id)));
        });
      })
      .catch((e: Error) => {
        if (e.name === 'AbortError' || gen !== generation.current) return;
        setError(e.message);
      })
      .finally(() => {
        if (inflight.current === ctl) inflight.current = null;
        if (gen === generation.current) setLoading(false);
      });
  }, []);

  const reload = useCallback(() => {
    generation.current++;
    inflight.current?.abort();
    inflight.current = null;
    cursor.current = null;
    doneRef.current = false;
    setDone(false);
    setItems([]);
    load(true);
  }, [load]);

  useEffect(() => {
    reload();
    return () => inflight.current?.abort();
  }, [key]);

  return {
    items,
    loading,
    error,
    done,
    loadMore: useCallback(() => load(false), [load]),
    reload,
    prepend: useCallback((add: T[]) => {
      setItems((old) => {
        const seen = new Set(old.map((i) => i.id));
        const fresh = add.filter((i) => !seen.has(i.id));
        if (!fresh.length) return old;
        const all = fresh.concat(old);
        return orderRef.current ? all.sort(orderRef.current) : all;
      });
    }, []),
    update: useCallback((item: T) => {
      setItems((old) => {
        const i = old.findIndex((o) => o.id === item.id);
        if (i < 0) return old;
        const copy = old.slice();
        copy[i] = item;
        return copy;
      });
    }, []),
    remove: useCallback((id: string | number) => setItems((old) => old.filter((o) => o.id !== id)), []),
  };
}
