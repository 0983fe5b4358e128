// Keyboard shortcuts: screens register a handler while mounted; key presses that belong
// to a text field or carry Ctrl/Alt/Meta never reach them (unless asked).
import { useEffect, useRef } from 'preact/hooks';

/** True when a key press belongs to a text field, not to the app's shortcuts. */
export function typing(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  if (!t || !t.tagName) return false;
  const tag = t.tagName;
  if (tag === 'INPUT') {
    const type = (t as HTMLInputElement).type;
    return !['checkbox', 'radio', 'button', 'range', 'submit'].includes(type);
  }
  return tag === 'TEXTAREA' || tag === 'SELECT' || t.isContentEditable;
}

/** Calls `f` for plain key presses outside text fields while the component is mounted. */
export function useKeys(f: (e: KeyboardEvent) => void): void {
  const ref = useRef(f);
  ref.current = f;
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      if (e.defaultPrevented || typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (document.querySelector('.modal-back')) return;
      ref.current(e);
    };
    window.addEventListener('keydown', on);
    return () => window.removeEventListener('keydown', on);
  }, []);
}
