// A windowed list with fixed row height: only the rows in view (plus a margin) are in the
// DOM, so 100,000 loaded rows cost the same to render as 30. Asks for the next page when
// its end comes near.
import type { ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';

export interface VirtualListProps<T> {
  items: T[];
  rowHeight: number;
  render: (item: T, index: number) => ComponentChildren;
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
      <div class="vrow" key={i} style={{ top: `${i * p.rowHeight}px`, height: `${p.rowHeight}px` }}>
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
