import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, describeError } from '../api/client';

/** A failure as the page shows it: what happened and what to do next. Never blank. */
export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: (() => void) | undefined }) {
  const d = describeError(error);
  const wait =
    error instanceof ApiError && typeof error.details.retry_after_s === 'number'
      ? error.details.retry_after_s
      : undefined;
  return (
    <div className="error" role="alert" data-code={d.code}>
      <strong>{capitalize(d.message)}</strong>
      {d.hint ? <div className="hint">{sentence(d.hint)}</div> : null}
      {wait !== undefined ? <div className="hint">You can try again in {formatSeconds(wait)}.</div> : null}
      {onRetry ? (
        <button type="button" className="link" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}

export function Notice({ children, kind = 'info' }: { children: ReactNode; kind?: 'info' | 'success' }) {
  return (
    <div className={`notice ${kind}`} role="status">
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      Loading {what}…
    </div>
  );
}

export function capitalize(s: string): string {
  return s ? s[0]!.toUpperCase() + s.slice(1) : s;
}

/** Server hints are lower-case fragments; the page shows them as sentences. */
export function sentence(s: string): string {
  const c = capitalize(s.trim());
  return /[.!?]$/.test(c) ? c : `${c}.`;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${s} s`;
  const m = Math.ceil(s / 60);
  return m < 90 ? `${m} min` : `${Math.ceil(m / 60)} h`;
}

export type Loaded<T> = { state: 'loading' } | { state: 'error'; error: unknown } | { state: 'ok'; data: T };

const LOADING = { state: 'loading' } as const;

function sameDeps(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
}

/**
 * Runs a load when deps change; the API client's timeout guarantees it settles.
 * What it returns belongs to the current deps: from the render in which they
 * change it is `loading`, never the previous answer shown as if it were the
 * new one (an effect that set `loading` would run only after that render had
 * painted the old rows under the new filters).
 */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): [Loaded<T>, () => void] {
  const [n, setN] = useState(0);
  const key = [...deps, n];
  const [state, setState] = useState<{ key: unknown[]; value: Loaded<T> }>({ key, value: LOADING });
  const fnRef = useRef(fn);
  fnRef.current = fn;
  // biome-ignore lint/correctness/useExhaustiveDependencies: deps are the caller's, n forces a reload; key is made of them
  useEffect(() => {
    let live = true;
    fnRef.current().then(
      (data) => live && setState({ key, value: { state: 'ok', data } }),
      (error: unknown) => live && setState({ key, value: { state: 'error', error } }),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return [sameDeps(state.key, key) ? state.value : LOADING, reload];
}

/** A command with a copy button (clipboard needs a secure context, which https is). */
export function CopyCommand({ command, label }: { command: string; label?: string | undefined }) {
  const [copied, setCopied] = useState<'yes' | 'failed' | undefined>();
  const copy = () => {
    navigator.clipboard
      .writeText(command)
      .then(() => setCopied('yes'))
      .catch(() => setCopied('failed'));
  };
  return (
    <div className="command">
      {label ? <div className="command-label">{label}</div> : null}
      <div className="command-row">
        <code>{command}</code>
        <button type="button" onClick={copy}>
          {copied === 'yes' ? 'Copied' : 'Copy'}
        </button>
      </div>
      {copied === 'failed' ? (
        <div className="hint">Copy failed: select the command and copy it by hand.</div>
      ) : null}
    </div>
  );
}

/** A resource's labels; with `onPick`, each is a button that adds it as a filter. */
export function Labels({
  labels,
  onPick,
}: {
  labels: Record<string, string>;
  onPick?: ((key: string, value: string) => void) | undefined;
}) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return <span className="muted">none</span>;
  return (
    <span className="labels">
      {entries.map(([k, v]) =>
        onPick ? (
          <button
            key={k}
            type="button"
            className="label pick"
            title={`Show only ${k}=${v}`}
            onClick={() => onPick(k, v)}
          >
            {k}={v}
          </button>
        ) : (
          <span key={k} className="label">
            {k}={v}
          </span>
        ),
      )}
    </span>
  );
}

/**
 * A table that scrolls sideways inside the page on narrow windows. Focusable,
 * so keyboard users can scroll it with the arrow keys.
 */
export function TableScroll({ label, children }: { label: string; children: ReactNode }) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard
    <section className="table-scroll" aria-label={label} tabIndex={0}>
      {children}
    </section>
  );
}

export function formatTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
