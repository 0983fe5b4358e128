// Small shared pieces: icons, dialogs, toasts, a multi-select, keyboard hints, chips.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { Value, useValue } from '../state';

// --- icons (inline SVG, 16 px, currentColor) -------------------------------------------

const paths: Record<string, string> = {
  wall: 'M2 2h5v5H2zM9 2h5v5H9zM2 9h5v5H2zM9 9h5v5H9z',
  review: 'M8 1l6 3v4c0 3.5-2.6 6.3-6 7-3.4-.7-6-3.5-6-7V4zM5 8l2 2 4-4',
  search: 'M7 2a5 5 0 1 1 0 10A5 5 0 0 1 7 2zM11 11l4 4',
  playback: 'M2 3h12v10H2zM6.5 5.5v5l4-2.5z',
  camera: 'M1.5 5h9v7h-9zM10.5 7.5l4-2v6l-4-2',
  users: 'M6 7a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5zM1.5 14c0-2.5 2-4.5 4.5-4.5s4.5 2 4.5 4.5M11 7a2 2 0 1 0 0-4M12 9.5c1.6.4 2.8 2 2.8 4',
  audit: 'M3 1.5h7l3 3v10H3zM10 1.5v3h3M5.5 8h5M5.5 10.5h5M5.5 13h3',
  logout: 'M6 2H2.5v12H6M10.5 4.5L14 8l-3.5 3.5M14 8H6',
  close: 'M3.5 3.5l9 9M12.5 3.5l-9 9',
  check: 'M2.5 8.5l3.5 3.5 7.5-8',
  x: 'M4 4l8 8M12 4l-8 8',
  play: 'M4 2.5v11l9-5.5z',
  pause: 'M4 2.5h3v11H4zM9 2.5h3v11H9z',
  back: 'M10 3L5 8l5 5',
  fwd: 'M6 3l5 5-5 5',
  plus: 'M8 2.5v11M2.5 8h11',
  minus: 'M2.5 8h11',
  download: 'M8 2v8M4.5 6.5L8 10l3.5-3.5M2.5 13.5h11',
  expand: 'M2 6V2h4M10 2h4v4M14 10v4h-4M6 14H2v-4',
  lock: 'M4 7.5h8v6.5H4zM5.5 7.5V5a2.5 2.5 0 0 1 5 0v2.5',
  edit: 'M11 2.5l2.5 2.5-8 8H3v-2.5z',
  trash: 'M2.5 4h11M6 4V2.5h4V4M4 4l.7 9.5h6.6L12 4',
  bolt: 'M9 1.5L3.5 9H8l-1 5.5L12.5 7H8z',
  keyboard: 'M1.5 4h13v8h-13zM4 6.5h1M7 6.5h1M10 6.5h1M4.5 9.5h7',
  refresh: 'M13 4.5A6 6 0 1 0 14 8M13 1.5v3h-3',
  grid: 'M2 2h12v12H2zM2 6h12M2 10h12M6 2v12M10 2v12',
};

export function Icon({ name, size = 16, title }: { name: keyof typeof paths | string; size?: number; title?: string }) {
  return (
    <svg
      class="icon"
      width={size}
      height={size}
      viewBox="0 0 16 16"
      fill="none"
      stroke="currentColor"
      stroke-width="1.5"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden={title ? undefined : 'true'}
      role={title ? 'img' : undefined}
    >
      {title && <title>{title}</title>}
      <path d={paths[name] ?? ''} />
    </svg>
  );
}

export function Kbd({ children }: { children: ComponentChildren }) {
  return <kbd class="kbd">{children}</kbd>;
}

// --- dialogs -------------------------------------------------------------------------

export function Modal(p: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  footer?: ComponentChildren;
  wide?: boolean;
  testid?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    const first = box.current?.querySelector<HTMLElement>('input,select,textarea,button:not(.modal-x)');
    first?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        p.onClose();
      }
    };
    window.addEventListener('keydown', onKey, true);
    return () => {
      window.removeEventListener('keydown', onKey, true);
      prev?.focus?.();
    };
  }, []);
  return (
    <div class="modal-back" onMouseDown={(e) => e.target === e.currentTarget && p.onClose()}>
      <div
        class={'modal' + (p.wide ? ' wide' : '')}
        role="dialog"
        aria-modal="true"
        aria-label={p.title}
        ref={box}
        data-testid={p.testid}
      >
        <header class="modal-head">
          <h2>{p.title}</h2>
          <button class="icon-btn modal-x" onClick={p.onClose} aria-label="Close" type="button">
            <Icon name="close" />
          </button>
        </header>
        <div class="modal-body">{p.children}</div>
        {p.footer && <footer class="modal-foot">{p.footer}</footer>}
      </div>
    </div>
  );
}

// --- toasts ----------------------------------------------------------------------------

interface Toast {
  id: number;
  kind: 'info' | 'ok' | 'error';
  text: string;
}
const toasts = new Value<Toast[]>([]);
let toastId = 0;

export function toast(text: string, kind: Toast['kind'] = 'info', ttl = 4500): void {
  const t = { id: ++toastId, kind, text };
  toasts.set([...toasts.get(), t].slice(-4));
  setTimeout(() => toasts.set(toasts.get().filter((x) => x.id !== t.id)), ttl);
}

export function Toasts() {
  const list = useValue(toasts);
  return (
    <div class="toasts" role="status" aria-live="polite">
      {list.map((t) => (
        <div key={t.id} class={'toast ' + t.kind}>
          {t.text}
        </div>
      ))}
    </div>
  );
}

// --- inputs ----------------------------------------------------------------------------

export interface Option {
  value: string;
  label: string;
  hint?: string;
}

/** A dropdown of checkboxes; an empty selection means "any". */
export function MultiSelect(p: {
  label: string;
  options: Option[];
  value: string[];
  onChange: (v: string[]) => void;
  anyLabel?: string;
  testid?: string;
}) {
  const [open, setOpen] = useState(false);
  const [filter, setFilter] = useState('');
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const close = (e: MouseEvent) => {
      if (!box.current?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('mousedown', close);
    return () => document.removeEventListener('mousedown', close);
  }, [open]);
  const shown = p.options.filter(
    (o) => !filter || o.label.toLowerCase().includes(filter.toLowerCase()) || o.value.includes(filter),
  );
  const summary =
    p.value.length === 0
      ? (p.anyLabel ?? 'Any')
      : p.value.length <= 2
        ? p.value.map((v) => p.options.find((o) => o.value === v)?.label ?? v).join(', ')
        : `${p.value.length} selected`;
  const toggle = (v: string) =>
    p.onChange(p.value.includes(v) ? p.value.filter((x) => x !== v) : [...p.value, v]);
  return (
    <div class="field multi" ref={box} data-testid={p.testid}>
      <span class="field-label">{p.label}</span>
      <button
        type="button"
        class={'select-btn' + (p.value.length ? ' has-value' : '')}
        aria-haspopup="listbox"
        aria-expanded={open}
        onClick={() => setOpen(!open)}
        onKeyDown={(e) => e.key === 'Escape' && setOpen(false)}
      >
        <span class="select-summary">{summary}</span>
        <span class="caret">▾</span>
      </button>
      {open && (
        <div class="popover" role="listbox" aria-multiselectable="true" aria-label={p.label}>
          {p.options.length > 8 && (
            <input
              class="popover-filter"
              placeholder="Filter…"
              value={filter}
              onInput={(e) => setFilter(e.currentTarget.value)}
              onKeyDown={(e) => e.key === 'Escape' && setOpen(false)}
            />
          )}
          <div class="popover-list">
            {shown.map((o) => (
              <label class="check-row" key={o.value}>
                <input type="checkbox" checked={p.value.includes(o.value)} onChange={() => toggle(o.value)} />
                <span>{o.label}</span>
                {o.hint && <span class="muted small">{o.hint}</span>}
              </label>
            ))}
            {!shown.length && <div class="muted small pad">No match</div>}
          </div>
          <div class="popover-foot">
            <button type="button" class="link" onClick={() => p.onChange([])}>
              Clear
            </button>
            <button type="button" class="link" onClick={() => setOpen(false)}>
              Done
            </button>
          </div>
        </div>
      )}
    </div>
  );
}

export function Field(p: { label: string; children: ComponentChildren; hint?: string; error?: string | null }) {
  return (
    <label class={'field' + (p.error ? ' invalid' : '')}>
      <span class="field-label">{p.label}</span>
      {p.children}
      {p.error ? <span class="field-error">{p.error}</span> : p.hint && <span class="field-hint">{p.hint}</span>}
    </label>
  );
}

// --- display ---------------------------------------------------------------------------

const STATE_LABEL: Record<string, string> = { new: 'New', acknowledged: 'Acknowledged', dismissed: 'Dismissed' };

export function StateChip({ state }: { state: string }) {
  return <span class={'chip state-' + state}>{STATE_LABEL[state] ?? state}</span>;
}

export function LabelChip({ label }: { label: string }) {
  return <span class={'chip label label-' + label}>{label}</span>;
}

export function Empty(p: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <div class="empty-title">{p.title}</div>
      {p.children && <div class="empty-body">{p.children}</div>}
    </div>
  );
}

export function Spinner() {
  return <span class="spinner" aria-label="Loading" />;
}

/** A button that runs an async action and shows it is busy. */
export function AsyncButton(
  p: Omit<JSX.ButtonHTMLAttributes<HTMLButtonElement>, 'onClick'> & { onClick: () => Promise<unknown> },
) {
  const [busy, setBusy] = useState(false);
  const { onClick, children, disabled, ...rest } = p;
  return (
    <button
      {...rest}
      disabled={!!disabled || busy}
      onClick={async () => {
        setBusy(true);
        try {
          await onClick();
        } finally {
          setBusy(false);
        }
      }}
    >
      {busy && <Spinner />}
      {children}
    </button>
  );
}

export function Confirm(p: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  return (
    <Modal
      title={p.title}
      onClose={p.onClose}
      footer={
        <>
          <button class="btn" type="button" onClick={p.onClose}>
            Cancel
          </button>
          <AsyncButton
            class={'btn ' + (p.danger ? 'danger' : 'primary')}
            type="button"
            onClick={async () => {
              await p.onConfirm();
              p.onClose();
            }}
          >
            {p.confirmLabel}
          </AsyncButton>
        </>
      }
    >
      {p.children}
    </Modal>
  );
}

/** For thumbnails whose snapshot is missing: no broken-image icon, the dark box stays. */
export function hideBroken(e: Event): void {
  (e.currentTarget as HTMLImageElement).style.visibility = 'hidden';
}
