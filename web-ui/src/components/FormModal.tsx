// The edit dialog of the admin screens (cameras, users): the form in a modal with Cancel
// and a save button in the footer. A failed save's error is shown under its field when the
// form shows that field (`atField`), otherwise in the footer.
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError } from '../api';
import { AsyncButton, Modal } from './ui';

export interface FormError {
  field?: string;
  message: string;
}

/** A form's error, and `run`: clears it, runs a save, and keeps what the save threw (an
 * ApiError's field and message). */
export function useFormError() {
  const [error, setError] = useState<FormError | null>(null);
  const run = async (save: () => Promise<void>) => {
    setError(null);
    try {
      await save();
    } catch (e) {
      setError(e instanceof ApiError ? { field: e.field, message: e.message } : { message: String(e) });
    }
  };
  return { error, setError, run };
}

export function FormModal(p: {
  title: string;
  testid: string;
  wide?: boolean;
  saveLabel: string;
  error: FormError | null;
  /** Whether the form shows errors of `field` itself, under the field. */
  atField: (field: string) => boolean;
  onSave: () => Promise<void>;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const e = p.error;
  return (
    <Modal
      title={p.title}
      onClose={p.onClose}
      wide={p.wide}
      testid={p.testid}
      footer={
        <>
          {e && !(e.field !== undefined && p.atField(e.field)) && (
            <div class="form-error foot-error" role="alert">
              {e.field ? `${e.field}: ` : ''}
              {e.message}
            </div>
          )}
          <button class="btn" onClick={p.onClose}>
            Cancel
          </button>
          <AsyncButton class="btn primary" onClick={p.onSave}>
            {p.saveLabel}
          </AsyncButton>
        </>
      }
    >
      {p.children}
    </Modal>
  );
}
