import { useEffect, useMemo, useRef, useState } from 'react';
import { stringify } from 'yaml';
import { ApiError } from '../api/client';
import type { LintMessage } from '../api/routes';
import { useApp } from '../app';
import { ErrorBox, Loading, Notice, useLoad } from '../components/ui';
import { YamlEditor, type YamlEditorHandle } from '../components/yaml-editor';

const NEW_ROLE = `kind: role
name: new-role
description: What this role is for
allow:
  logins: ['{{internal.logins}}']
  node_labels:
    env: dev
deny: {}
options:
  max_session_ttl: 8h
`;

/** Lint after the user pauses typing, not on every key. */
const LINT_DELAY_MS = 300;

type Lint =
  | { state: 'idle' }
  | { state: 'checking' }
  | { state: 'ok'; messages: LintMessage[] }
  | { state: 'error'; error: unknown };

export function RolesPage() {
  const { api } = useApp();
  const [roles, reload] = useLoad(() => api.listRoles(), []);
  const [selected, setSelected] = useState<string | undefined>();
  const [text, setText] = useState('');
  const [isNew, setIsNew] = useState(false);
  const [lint, setLint] = useState<Lint>({ state: 'idle' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState<string | undefined>();
  const editorRef = useRef<YamlEditorHandle>(null);

  const open = (name: string) => {
    setError(undefined);
    setSaved(undefined);
    setIsNew(false);
    setSelected(name);
    api.getRole(name).then(
      (r) => setText(stringify(r)),
      (err: unknown) => setError(err),
    );
  };

  useEffect(() => {
    if (!text) {
      setLint({ state: 'idle' });
      return;
    }
    let live = true;
    setLint({ state: 'checking' });
    const t = setTimeout(() => {
      api.lintRole(text).then(
        (messages) => live && setLint({ state: 'ok', messages }),
        (error: unknown) => live && setLint({ state: 'error', error }),
      );
    }, LINT_DELAY_MS);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [api, text]);

  const messages = lint.state === 'ok' ? lint.messages : [];
  const errorLines = useMemo(
    () => new Set(messages.filter((m) => m.severity === 'error').map((m) => m.line)),
    [messages],
  );

  const jumpTo = (m: LintMessage) => editorRef.current?.jumpTo(m.line, m.column);

  const save = async () => {
    setBusy(true);
    setError(undefined);
    setSaved(undefined);
    try {
      const r = await api.putRole(text, { create: isNew });
      setSaved(`Role ${r.role.name} ${r.created ? 'created' : 'saved'}.`);
      setIsNew(false);
      setSelected(r.role.name);
      reload();
    } catch (err) {
      if (err instanceof ApiError && Array.isArray(err.details.messages)) {
        setLint({ state: 'ok', messages: err.details.messages as LintMessage[] });
      }
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!selected) return;
    setBusy(true);
    setError(undefined);
    try {
      await api.deleteRole(selected);
      setSaved(`Role ${selected} deleted.`);
      setSelected(undefined);
      setText('');
      reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <h1>Roles</h1>
      <div className="split">
        <aside className="card list">
          <button
            type="button"
            className="primary"
            onClick={() => {
              setSelected(undefined);
              setIsNew(true);
              setText(NEW_ROLE);
              setSaved(undefined);
              setError(undefined);
            }}
          >
            New role
          </button>
          {roles.state === 'loading' ? <Loading what="roles" /> : null}
          {roles.state === 'error' ? <ErrorBox error={roles.error} onRetry={reload} /> : null}
          {roles.state === 'ok' ? (
            <ul data-testid="roles">
              {roles.data.map((r) => (
                <li key={r.name}>
                  <button
                    type="button"
                    className={`link ${selected === r.name ? 'active' : ''}`}
                    onClick={() => open(r.name)}
                    title={r.description}
                  >
                    {r.name}
                  </button>
                </li>
              ))}
            </ul>
          ) : null}
        </aside>
        <section className="editor-pane">
          {!isNew && !selected ? (
            <p className="muted">Pick a role to edit, or create a new one.</p>
          ) : (
            <>
              <h2>{isNew ? 'New role' : selected}</h2>
              <YamlEditor
                ref={editorRef}
                label="Role YAML"
                value={text}
                onChange={setText}
                messages={messages}
              />
              <div className="lint" data-testid="lint" aria-live="polite">
                {lint.state === 'checking' ? <span className="muted">Checking…</span> : null}
                {lint.state === 'error' ? <ErrorBox error={lint.error} /> : null}
                {lint.state === 'ok' && errorLines.size === 0 ? (
                  <span className="ok">
                    No errors
                    {messages.length > 0
                      ? `; ${messages.length} warning${messages.length === 1 ? '' : 's'}`
                      : ''}
                    .
                  </span>
                ) : null}
                {messages.length > 0 ? (
                  <ul>
                    {messages.map((m) => (
                      <li
                        key={`${m.line}:${m.column}:${m.key}:${m.message}`}
                        className={`lint-${m.severity}`}
                      >
                        <button type="button" className="link" onClick={() => jumpTo(m)}>
                          Line {m.line}, column {m.column}
                        </button>
                        : {m.severity}: <code>{m.key}</code> {m.message}
                        {m.suggestion ? <span className="suggestion"> ({m.suggestion})</span> : null}
                      </li>
                    ))}
                  </ul>
                ) : null}
              </div>
              {saved ? <Notice kind="success">{saved}</Notice> : null}
              {error ? <ErrorBox error={error} /> : null}
              <div className="buttons">
                <button type="button" className="primary" disabled={busy} onClick={save}>
                  {isNew ? 'Create role' : 'Save role'}
                </button>
                {!isNew && selected ? (
                  <button type="button" className="danger" disabled={busy} onClick={remove}>
                    Delete role
                  </button>
                ) : null}
              </div>
            </>
          )}
        </section>
      </div>
    </>
  );
}
