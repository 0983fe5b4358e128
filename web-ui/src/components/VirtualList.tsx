// A windowed list with fixed row height: only the rows in view (plus a margin) are in the
// DOM, so 100,000 loaded rows cost the same to render as 30. Asks for the next page when
// its end comes near.
import type { ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';

export interface VirtualListProps<T> {
  items: T[];
  rowHeight: number;
  render: (item: T, index: number) => ComponentChildren;
  /** A stable key per item (rows keep their DOM node when items are added above). */
  keyOf?: (item: T) => string | number;
  /** Called when the last rows come into view (load the next page). */
  onEnd?: () => void;
  /** Keep this row in view (keyboard selection). */
  scrollToIndex?: number;
  overscan?: number;
  class?: string;
  footer?: ComponentChildren;
  testid?: string;
  role?: 'listbox' | 'table' | 'list';
  label?: string;
}

export function VirtualList<T>(p: VirtualListProps<T>) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const overscan = p.overscan ?? 8;

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(top / p.rowHeight) - overscan);
  const last = Math.min(p.items.length, Math.ceil((top + height) / p.rowHeight) + overscan);

  useEffect(() => {
    if (p.onEnd && last >= p.items.length - overscan) p.onEnd();
  }, [last, p.items.length]);

  // Items added above the first one (live updates): keep the rows in view where they are,
  // unless the list is scrolled to the top, where the newest should show.
  const firstKey = useRef<string | number | undefined>(undefined);
  useLayoutEffect(() => {
    const el = box.current;
    const keyOf = p.keyOf;
    if (!el || !keyOf) return;
    const prev = firstKey.current;
    firstKey.current = p.items.length ? keyOf(p.items[0]!) : undefined;
    if (prev === undefined || el.scrollTop === 0 || firstKey.current === prev) return;
    const moved = p.items.findIndex((i) => keyOf(i) === prev);
    if (moved > 0 && moved < 1000) {
      el.scrollTop += moved * p.rowHeight;
      setTop(el.scrollTop);
    }
  }, [p.items]);

  useEffect(() => {
    const el = box.current;
    const i = p.scrollToIndex;
    if (!el || i === undefined || i < 0) return;
    const y = i * p.rowHeight;
    if (y < el.scrollTop) el.scrollTop = y;
    else if (y + p.rowHeight > el.scrollTop + el.clientHeight) el.scrollTop = y + p.rowHeight - el.clientHeight;
  }, [p.scrollToIndex]);

  const rows = [];
  for (let i = first; i < last; i++) {
    rows.push(
      <div class="vrow" key={p.keyOf ? p.keyOf(p.items[i]!) : i} style={{ top: `${i * p.rowHeight}px`, height: `${p.rowHeight}px` }}>
        {p.render(p.items[i]!, i)}
      </div>,
    );
  }
  return (
    <div
      class={'vlist ' + (p.class ?? '')}
      ref={box}
      onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}
      data-testid={p.testid}
      role={p.role}
      aria-label={p.label}
    >
      <div class="vlist-body" style={{ height: `${p.items.length * p.rowHeight}px` }}>
        {rows}
      </div>
      {p.footer}
    </div>
  );
}
