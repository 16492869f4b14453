import '@xterm/xterm/css/xterm.css';
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import {
  type JoinMode,
  parseTerminalServerFrame,
  type SessionMfaCertsRequest,
  type TerminalServerFrame,
  validTerminalSize,
} from '../api/routes';
import { mayOpenTerminal, type Session, useApp } from '../app';
import { offeredMethods, useSessionMfa } from '../components/session-mfa';
import { capitalize, ErrorBox, Loading, Notice, sentence, useLoad } from '../components/ui';
import { numberDuplicates } from '../lib/names';
import {
  altDigit,
  baseName,
  cleanRemotePath,
  concreteLogins,
  describeEnd,
  type Ending,
  formatBytes,
  formatProgress,
  resizeFrame,
  socketUrl,
  type TabTarget,
  targetFromSearch,
  targetTitle,
} from '../lib/terminal';
import { assert } from '../lib/webauthn';

type Role = 'owner' | JoinMode;

type TabStatus =
  | { state: 'connecting' }
  | { state: 'live'; sessionId: string; role: Role }
  | { state: 'over'; ending: Ending };

interface Tab {
  id: number;
  target: TabTarget;
  title: string;
  status: TabStatus;
  /** Bumped by "Open again": a new connection (and shell) in the same tab. */
  generation: number;
}

type PaneEvent = { type: 'live'; sessionId: string; role: Role } | { type: 'over'; ending: Ending };

let nextTabId = 1;
const newTab = (target: TabTarget): Tab => ({
  id: nextTabId++,
  target,
  title: targetTitle(target),
  status: { state: 'connecting' },
  generation: 0,
});

/**
 * The web terminal, in a browser tab of its own: tabs of shells on nodes and
 * joined live sessions, each one WebSocket (docs/web-terminal-protocol.md).
 * Alt+1..9 selects a tab, "+" opens a shell on a node, a tab whose shell
 * exits cleanly closes itself; anything else that ends a session stays on
 * screen with why.
 */
export default function TerminalPage({ session }: { session: Session }) {
  const { api } = useApp();
  const [tabs, setTabs] = useState<Tab[]>(() => {
    const t = targetFromSearch(new URLSearchParams(window.location.search));
    return t ? [newTab(t)] : [];
  });
  /** The selected tab's id, or 'new' for the picker. */
  const [active, setActive] = useState<number | 'new'>(() => tabs[0]?.id ?? 'new');
  const [notice, setNotice] = useState<string | undefined>();
  const tabsRef = useRef(tabs);
  tabsRef.current = tabs;
  /** A tab's title as its strip shows it (numbered), for callbacks made before this render. */
  const titleRef = useRef<(id: number) => string>(() => 'A tab');

  const update = useCallback((id: number, f: (t: Tab) => Tab) => {
    setTabs((ts) => ts.map((t) => (t.id === id ? f(t) : t)));
  }, []);

  /** A joined session's tab says whose it is, once the list of sessions says so. */
  const nameJoin = useCallback(
    (tab: Tab) => {
      if (tab.target.kind !== 'join') return;
      const { session: sid, mode } = tab.target;
      api.listSessions().then(
        (list) => {
          const s = list.sessions.find((x) => x.id === sid);
          if (s) {
            const what = `${s.user}: ${s.login ? `${s.login}@` : ''}${s.server}`;
            update(tab.id, (t) => ({ ...t, title: `${mode === 'peer' ? 'peer' : 'watch'} ${what}` }));
          }
        },
        // The title is a nicety; the tab itself says if the join failed.
        () => undefined,
      );
    },
    [api, update],
  );

  // biome-ignore lint/correctness/useExhaustiveDependencies: the tab from the URL, once
  useEffect(() => {
    for (const t of tabs) nameJoin(t);
  }, []);

  const open = (target: TabTarget) => {
    const tab = newTab(target);
    setTabs((ts) => [...ts, tab]);
    setActive(tab.id);
    setNotice(undefined);
    nameJoin(tab);
  };

  const close = useCallback((id: number) => {
    const ts = tabsRef.current;
    const i = ts.findIndex((t) => t.id === id);
    const rest = ts.filter((t) => t.id !== id);
    setTabs(rest);
    // The neighbour takes over, as in a browser's tab strip.
    setActive((a) => (a === id ? (rest[Math.min(i, rest.length - 1)]?.id ?? 'new') : a));
  }, []);

  const onPaneEvent = useCallback(
    (id: number, e: PaneEvent) => {
      if (e.type === 'live') {
        update(id, (t) => ({ ...t, status: { state: 'live', sessionId: e.sessionId, role: e.role } }));
        return;
      }
      if (e.ending.close) {
        setNotice(`${titleRef.current(id)}: ${e.ending.message} Its tab was closed.`);
        close(id);
        return;
      }
      update(id, (t) => ({ ...t, status: { state: 'over', ending: e.ending } }));
    },
    [update, close],
  );

  // Alt+1..9 from anywhere on the page (the terminals pass these keys up instead of to the shell).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const i = altDigit(e);
      if (i === undefined) return;
      e.preventDefault();
      const t = tabsRef.current[i];
      if (t) setActive(t.id);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  // Two shells of the same login on the same node: "alice@web" and "alice@web (2)".
  const titles = numberDuplicates(tabs.map((t) => t.title));
  const titleOf = (id: number) => titles[tabs.findIndex((t) => t.id === id)] ?? 'A tab';
  const shown = tabs.map((t, i) => ({ ...t, title: titles[i]! }));
  const current = shown.find((t) => t.id === active);
  const canOpen = mayOpenTerminal(session);
  titleRef.current = titleOf;
  const pageTitle = `${current ? current.title : 'New terminal'} · Gatehouse`;
  useEffect(() => {
    document.title = pageTitle;
  }, [pageTitle]);

  return (
    <div className="term-page">
      <div className="term-strip">
        <span className="term-brand" title={`Signed in as ${session.whoami.user}`}>
          Gatehouse
        </span>
        <div className="term-tabs" role="tablist" aria-label="Terminals">
          {shown.map((t, i) => (
            <div key={t.id} className={`term-tab ${t.id === active ? 'active' : ''} ${t.status.state}`}>
              <button
                type="button"
                role="tab"
                className="term-tab-btn"
                aria-selected={t.id === active}
                aria-controls={`term-pane-${t.id}`}
                title={i < 9 ? `Alt+${i + 1}` : undefined}
                onClick={() => setActive(t.id)}
              >
                <span className="term-dot" aria-hidden="true" />
                {t.title}
              </button>
              <button
                type="button"
                className="term-tab-btn term-close"
                aria-label={`Close ${t.title}`}
                onClick={() => close(t.id)}
              >
                ×
              </button>
            </div>
          ))}
          {canOpen ? (
            <button
              type="button"
              role="tab"
              className={`term-new ${active === 'new' ? 'active' : ''}`}
              aria-selected={active === 'new'}
              aria-label="New tab"
              onClick={() => setActive('new')}
            >
              +
            </button>
          ) : null}
        </div>
        <span className="term-who" data-testid="current-user">
          {session.whoami.user}
        </span>
      </div>
      {notice ? (
        <div className="term-notice" role="status" data-testid="term-notice">
          {notice}
          <button type="button" className="link" aria-label="Dismiss" onClick={() => setNotice(undefined)}>
            ×
          </button>
        </div>
      ) : null}
      <div className="term-panes">
        {shown.map((t) => (
          <TabPane
            key={`${t.id}/${t.generation}`}
            tab={t}
            visible={t.id === active}
            onEvent={onPaneEvent}
            onReopen={() =>
              update(t.id, (x) => ({ ...x, generation: x.generation + 1, status: { state: 'connecting' } }))
            }
          />
        ))}
        {active === 'new' && canOpen ? <NewTabPicker session={session} onOpen={open} /> : null}
        {active === 'new' && !canOpen ? (
          <section className="term-pane term-picker" aria-label="No terminal">
            <div className="card">
              <h1>No terminal to open</h1>
              <p>
                Your roles allow no login on any node, so there is no shell to open here. You can still join
                sessions from the Sessions page if your roles allow it.
              </p>
            </div>
          </section>
        ) : null}
      </div>
    </div>
  );
}

/** One tab: its status line, file transfers (shells), the end banner and the terminal. */
function TabPane({
  tab,
  visible,
  onEvent,
  onReopen,
}: {
  tab: Tab;
  visible: boolean;
  onEvent: (id: number, e: PaneEvent) => void;
  onReopen: () => void;
}) {
  const [files, setFiles] = useState(false);
  const { target, status } = tab;
  const role: Role = status.state === 'live' ? status.role : target.kind === 'shell' ? 'owner' : target.mode;
  return (
    <section
      id={`term-pane-${tab.id}`}
      className={`term-pane ${visible ? '' : 'hidden'}`}
      role="tabpanel"
      aria-label={tab.title}
      data-testid="terminal-pane"
      data-state={status.state}
      data-session={status.state === 'live' ? status.sessionId : undefined}
    >
      <div className="term-bar">
        <span className="term-status">
          {status.state === 'connecting' ? 'Connecting…' : null}
          {status.state === 'live' && role === 'owner' ? `Session ${status.sessionId}` : null}
          {status.state === 'live' && role === 'observer' ? (
            <>
              <span className="badge warn">Read-only</span> You are watching this session live; your keys are
              not sent.
            </>
          ) : null}
          {status.state === 'live' && role === 'peer' ? (
            <>
              <span className="badge warn">Peer</span> You are typing into someone else's session.
            </>
          ) : null}
          {status.state === 'over' ? 'Ended' : null}
        </span>
        {target.kind === 'shell' ? (
          <button
            type="button"
            className="term-action"
            aria-expanded={files}
            onClick={() => setFiles(!files)}
          >
            Files
          </button>
        ) : null}
        {status.state === 'over' ? (
          <button type="button" className="term-action" onClick={onReopen}>
            {target.kind === 'shell' ? 'Open again' : 'Join again'}
          </button>
        ) : null}
      </div>
      {files && target.kind === 'shell' ? <FilesPanel node={target.node} login={target.login} /> : null}
      {status.state === 'over' ? <EndBanner ending={status.ending} /> : null}
      <TerminalView tab={tab} visible={visible} onEvent={onEvent} />
    </section>
  );
}

function EndBanner({ ending }: { ending: Ending }) {
  return (
    <div className="error term-end" role="alert" data-code={ending.code} data-testid="term-end">
      <strong>{capitalize(ending.message)}</strong>
      {ending.hint ? <div className="hint">{sentence(ending.hint)}</div> : null}
    </div>
  );
}

/**
 * xterm.js and the tab's WebSocket. Mounted once per connection: the socket
 * opens with the terminal and closes when the tab goes away.
 */
function TerminalView({
  tab,
  visible,
  onEvent,
}: {
  tab: Tab;
  visible: boolean;
  onEvent: (id: number, e: PaneEvent) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | undefined>(undefined);
  const fitNow = useRef<() => void>(() => undefined);
  const onEventRef = useRef(onEvent);
  onEventRef.current = onEvent;

  // biome-ignore lint/correctness/useExhaustiveDependencies: one connection per mount (the key changes for a new one)
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const { id, target } = tab;
    let role: Role = target.kind === 'shell' ? 'owner' : target.mode;
    const tm = new Terminal({
      cursorBlink: true,
      scrollback: 5000,
      disableStdin: role === 'observer',
      fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
    });
    const fit = new FitAddon();
    tm.loadAddon(fit);
    // Alt+1..9 switch tabs: xterm must not turn them into ESC+digit for the shell.
    tm.attachCustomKeyEventHandler((e) => altDigit(e) === undefined);
    tm.open(el);
    term.current = tm;
    // Only the owner's window sizes the pty; a joiner shows the session's size.
    fitNow.current = () => {
      if (role === 'owner' && el.clientWidth > 0 && el.clientHeight > 0) fit.fit();
    };
    fitNow.current();

    const ws = new WebSocket(socketUrl(window.location, target, { cols: tm.cols, rows: tm.rows }));
    ws.binaryType = 'arraybuffer';
    let opened = false;
    let over = false;
    let last: Extract<TerminalServerFrame, { type: 'end' | 'error' }> | undefined;
    const enc = new TextEncoder();
    const send = (data: Uint8Array) => {
      if (ws.readyState === WebSocket.OPEN && role !== 'observer') ws.send(data);
    };
    const subs = [
      tm.onData((d) => send(enc.encode(d))),
      // Mouse reports in some modes come as raw bytes in a string.
      tm.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff))),
      tm.onResize(({ cols, rows }) => {
        if (role === 'owner' && ws.readyState === WebSocket.OPEN) ws.send(resizeFrame(cols, rows));
      }),
    ];
    const showSize = (cols: unknown, rows: unknown) => {
      if (role !== 'owner' && validTerminalSize(cols) && validTerminalSize(rows)) tm.resize(cols, rows);
    };

    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
      if (typeof ev.data !== 'string') {
        tm.write(new Uint8Array(ev.data));
        return;
      }
      const f = parseTerminalServerFrame(ev.data);
      if (!f) return; // a newer server's message: nothing this page knows to do
      if (f.type === 'session') {
        role = f.mode === 'owner' || f.mode === 'peer' ? f.mode : 'observer';
        tm.options.disableStdin = role === 'observer';
        showSize(f.cols, f.rows);
        // The window may have changed while the shell started.
        if (role === 'owner' && (f.cols !== tm.cols || f.rows !== tm.rows))
          ws.send(resizeFrame(tm.cols, tm.rows));
        onEventRef.current(id, { type: 'live', sessionId: String(f.session_id), role });
      } else if (f.type === 'resize') {
        showSize(f.cols, f.rows);
      } else {
        last = f;
      }
    };
    ws.onclose = (ev) => {
      if (over) return;
      over = true;
      tm.options.disableStdin = true;
      tm.options.cursorBlink = false;
      onEventRef.current(id, {
        type: 'over',
        ending: describeEnd(last, { code: ev.code, reason: ev.reason, opened }, role),
      });
    };

    // The window (or the page layout) changed size: the owner's pty follows.
    const ro = new ResizeObserver(() => fitNow.current());
    ro.observe(el);
    return () => {
      over = true;
      ro.disconnect();
      for (const s of subs) s.dispose();
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
      tm.dispose();
      term.current = undefined;
    };
  }, []);

  useEffect(() => {
    if (!visible) return;
    fitNow.current();
    term.current?.focus();
  }, [visible]);

  return <div className="term-host" ref={host} data-testid="terminal" />;
}

/** The "+" tab: a node and one of the logins the user's roles allow there. */
function NewTabPicker({ session, onOpen }: { session: Session; onOpen: (t: TabTarget) => void }) {
  const { api } = useApp();
  const [nodes, reload] = useLoad(() => api.listNodes(), []);
  const [node, setNode] = useState('');
  const [login, setLogin] = useState('');
  // A per-session MFA check in progress (roles with require_session_mfa): its challenge, target and
  // what may answer it (a code when a TOTP app is enrolled; the key's assertion options when a key is).
  const [mfa, setMfa] = useState<
    { challengeId: string; node: string; login: string; totp: boolean; keyOptions?: unknown } | undefined
  >();
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<unknown>();

  const list = nodes.state === 'ok' ? [...nodes.data].sort((a, b) => a.name.localeCompare(b.name)) : [];
  const chosen = list.find((n) => n.name === node) ?? list[0];
  // A user listing says which logins the roles allow on each node; otherwise the user's own.
  const logins = concreteLogins(chosen?.allowed?.logins ?? session.whoami.logins);
  const loginValue = login || logins[0] || '';

  /** Runs one step of the form; a failure shows, and a check in progress starts over (a challenge answers once). */
  const step = async (run: () => Promise<void>) => {
    setBusy(true);
    setFailure(undefined);
    try {
      await run();
    } catch (err) {
      setMfa(undefined);
      setCode('');
      setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  /** The answer buys a single-use token for this node and login; the WebSocket carries it. */
  const answer = async (check: NonNullable<typeof mfa>, response: SessionMfaCertsRequest['response']) => {
    const res = await api.sessionMfaCerts({ challenge_id: check.challengeId, response });
    setMfa(undefined);
    setCode('');
    onOpen({ kind: 'shell', node: check.node, login: check.login, mfaToken: res.mfa_token });
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!chosen || !loginValue.trim() || busy) return;
    await step(async () => {
      if (mfa) {
        await answer(mfa, { method: 'totp', code: code.trim() });
        return;
      }
      const target = { kind: 'shell', node: chosen.name, login: loginValue.trim() } as const;
      // The proxy says whether this session needs a fresh second-factor check first.
      const ch = await api.sessionMfaChallenge({
        target: { kind: 'node', node: target.node, login: target.login },
      });
      if (!ch.required || !ch.challenge_id) {
        onOpen(target);
        return;
      }
      setMfa({ challengeId: ch.challenge_id, node: target.node, login: target.login, ...offeredMethods(ch) });
    });
  };

  const answerWithKey = async () => {
    if (!mfa?.keyOptions || busy) return;
    const check = mfa;
    await step(async () => {
      const credential = await assert(check.keyOptions);
      await answer(check, {
        method: 'webauthn',
        credential: credential as unknown as Record<string, unknown>,
      });
    });
  };

  return (
    <section className="term-pane term-picker" role="tabpanel" aria-label="New tab">
      <form className="card" onSubmit={submit}>
        <h1>New terminal</h1>
        {nodes.state === 'loading' ? <Loading what="nodes" /> : null}
        {nodes.state === 'error' ? <ErrorBox error={nodes.error} onRetry={reload} /> : null}
        {nodes.state === 'ok' && list.length === 0 ? (
          <Notice>There is no node you can reach yet.</Notice>
        ) : null}
        {chosen ? (
          <>
            <label>
              Node
              <select
                value={chosen.name}
                onChange={(e) => {
                  setNode(e.target.value);
                  setLogin('');
                }}
              >
                {list.map((n) => (
                  <option key={n.name} value={n.name}>
                    {n.name}
                    {n.description ? ` (${n.description})` : ''}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Login
              <input
                list="term-logins"
                value={loginValue}
                onChange={(e) => setLogin(e.target.value)}
                autoComplete="off"
                spellCheck={false}
              />
              <datalist id="term-logins">
                {logins.map((l) => (
                  <option key={l} value={l} />
                ))}
              </datalist>
            </label>
            {logins.length === 0 ? (
              <p className="muted">
                Your roles name no fixed login for this node; type the one you were given.
              </p>
            ) : null}
            {mfa ? (
              <p>
                Your roles require a fresh second-factor check for {mfa.login}@{mfa.node}.
              </p>
            ) : null}
            {mfa?.totp ? (
              <label>
                Authenticator code
                <input
                  name="mfa-code"
                  value={code}
                  onChange={(e) => setCode(e.target.value)}
                  inputMode="numeric"
                  autoComplete="one-time-code"
                  // biome-ignore lint/a11y/noAutofocus: the code is the one thing to type now
                  autoFocus
                />
              </label>
            ) : null}
            {mfa && !mfa.totp && !mfa.keyOptions ? (
              <Notice>
                Your security key needs a browser with WebAuthn, and you have no authenticator app: open this
                page in a browser that supports security keys.
              </Notice>
            ) : null}
            {failure ? <ErrorBox error={failure} /> : null}
            {mfa?.keyOptions ? (
              <button
                type="button"
                className={mfa.totp ? undefined : 'primary'}
                disabled={busy}
                onClick={answerWithKey}
              >
                Use security key
              </button>
            ) : null}
            {!mfa || mfa.totp ? (
              <button
                type="submit"
                className="primary"
                disabled={!loginValue.trim() || busy || (mfa !== undefined && code.trim() === '')}
              >
                {mfa ? 'Verify and open terminal' : 'Open terminal'}
              </button>
            ) : null}
          </>
        ) : null}
        <p className="muted">Alt+1 … Alt+9 switch between tabs.</p>
      </form>
    </section>
  );
}

type Transfer =
  | { state: 'idle' }
  | { state: 'busy'; what: string; progress: string }
  | { state: 'done'; message: string }
  | { state: 'failed'; what: string; error: unknown };

/**
 * Upload and download for a shell tab's node and login (`/v1/files`, audited
 * like SFTP). Relative paths are in the login's home directory.
 */
function FilesPanel({ node, login }: { node: string; login: string }) {
  const { api } = useApp();
  const [file, setFile] = useState<File | undefined>();
  const [dest, setDest] = useState('');
  const [src, setSrc] = useState('');
  const [t, setT] = useState<Transfer>({ state: 'idle' });
  const busy = t.state === 'busy';
  // Each transfer is a new session on the node: with require_session_mfa it asks for a check first.
  const mfa = useSessionMfa();
  const checked = async () => {
    setT({ state: 'busy', what: 'Second-factor check', progress: 'waiting for your answer' });
    const token = await mfa.ask({ kind: 'node', node, login }, `a file transfer as ${login}@${node}`);
    return { node, login, ...(token ? { mfa_token: token } : {}) };
  };

  const upload = async (e: FormEvent) => {
    e.preventDefault();
    const path = cleanRemotePath(dest);
    if (!file || !path) return;
    const what = `Uploading ${file.name} to ${path}`;
    try {
      const q = await checked();
      setT({ state: 'busy', what, progress: formatProgress(0, file.size) });
      const r = await api.uploadFile({ ...q, path }, file, (done, total) =>
        setT({ state: 'busy', what, progress: formatProgress(done, total) }),
      );
      setT({
        state: 'done',
        message: `Uploaded ${file.name} to ${path} on ${node} (${formatBytes(r.bytes)}).`,
      });
    } catch (error) {
      setT({ state: 'failed', what: `Could not upload ${file.name}`, error });
    }
  };

  const download = async (e: FormEvent) => {
    e.preventDefault();
    const path = cleanRemotePath(src);
    if (!path) return;
    const what = `Downloading ${path}`;
    try {
      const q = await checked();
      setT({ state: 'busy', what, progress: formatProgress(0, undefined) });
      const blob = await api.downloadFile({ ...q, path }, (done, total) =>
        setT({ state: 'busy', what, progress: formatProgress(done, total) }),
      );
      saveBlob(blob, baseName(path));
      setT({ state: 'done', message: `Downloaded ${path} from ${node} (${formatBytes(blob.size)}).` });
    } catch (error) {
      setT({ state: 'failed', what: `Could not download ${path}`, error });
    }
  };

  return (
    <div className="term-files" data-testid="files">
      <form className="inline" onSubmit={upload}>
        <label className="inline">
          Upload
          <input
            type="file"
            aria-label="File to upload"
            disabled={busy}
            onChange={(e) => {
              const f = e.target.files?.[0];
              setFile(f);
              if (f) setDest(f.name);
            }}
          />
        </label>
        <input
          aria-label="Upload to path"
          placeholder="path on the node"
          value={dest}
          disabled={busy}
          onChange={(e) => setDest(e.target.value)}
          spellCheck={false}
        />
        <button type="submit" disabled={busy || !file || !cleanRemotePath(dest)}>
          Upload
        </button>
      </form>
      <form className="inline" onSubmit={download}>
        <input
          aria-label="Path to download"
          placeholder="path on the node, e.g. notes.txt"
          value={src}
          disabled={busy}
          onChange={(e) => setSrc(e.target.value)}
          spellCheck={false}
        />
        <button type="submit" disabled={busy || !cleanRemotePath(src)}>
          Download
        </button>
      </form>
      <p className="muted">
        As {login} on {node}; a relative path is in {login}'s home directory. An upload replaces the file.
      </p>
      {mfa.prompt}
      {t.state === 'busy' ? (
        <div className="notice" role="status" data-testid="transfer">
          {t.what}: {t.progress}
        </div>
      ) : null}
      {t.state === 'done' ? <Notice kind="success">{t.message}</Notice> : null}
      {t.state === 'failed' ? (
        <div className="partial">
          <span>{t.what}:</span>
          <ErrorBox error={t.error} />
        </div>
      ) : null}
    </div>
  );
}

/** Hands a downloaded file to the browser's downloads. */
function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // Revoked later: some browsers read the URL after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
