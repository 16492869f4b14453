import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditEmitter, RecordingEvent, RecordingMeta, RecordingStore } from '@gatehouse/audit';
import { createWebSocketStream, type WebSocket, WebSocketServer } from 'ws';
import type { Principal } from '../authz/authorizer.js';
import type { Clock } from '../clock.js';
import type { DesktopRelayRegistry } from '../desktops/relay.js';
import { DESKTOP_WS_PATH, type DesktopTokens } from '../desktops/tokens.js';
import { GatehouseError, toGatehouseError } from '../errors.js';
import type { SessionMfa } from '../mfa/session.js';
import type { ClusterSessions } from '../peers/sessions.js';
import { mintClientTicket } from '../pki/credentials.js';
import type { JoinMode } from '../rbac/types.js';
import type { TerminalHandle, TerminalRegistry, TerminalViewer } from '../sessions/terminal.js';
import { authenticateCaller, type Caller, type CallerDeps } from './caller.js';
import { auditHttpReject, header, remoteAddress, sendProblemOnSocket } from './http.js';
import {
  parseTerminalClientFrame,
  TERMINAL_WS_CLOSE,
  TERMINAL_WS_MAX_PAYLOAD,
  TERMINAL_WS_PATHS,
  type TerminalServerFrame,
  validTerminalSize,
} from './terminal-protocol.js';

/**
 * The terminal WebSockets (docs/web-terminal-protocol.md): the web
 * terminal's new shells and joins of live sessions, on the API's listener.
 * Authentication, join authorization and audit happen here before the 101
 * answer; the terminal itself belongs to the adapter (TerminalService,
 * LiveSessionControl.join).
 */
export interface TerminalSocketDeps extends CallerDeps {
  audit: AuditEmitter;
  /** Redeems the web terminal's per-session MFA token (`mfa_token=`; role option require_session_mfa). */
  sessionMfa: Pick<SessionMfa, 'redeemToken'>;
  clock: Clock;
  terminals: TerminalRegistry;
  /** Live sessions of every gateway (a join may be relayed from the one that runs the session). */
  clusterSessions: ClusterSessions;
  /** The RDCleanPath relay of the RDP adapter, when one runs. */
  desktopRelays: DesktopRelayRegistry;
  desktopTokens: DesktopTokens;
  /** Desktop recordings for playback, and the check that `p` may read one (owner or recording:read; audited). */
  recordings: RecordingStore;
  readRecording: (p: Principal, id: string, remoteAddr: string) => Promise<RecordingMeta>;
  log: (level: 'debug' | 'error', msg: string, err?: unknown) => void;
}

export interface TerminalSockets {
  /** For http.Server's 'upgrade' event. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Access may have changed (a lock appeared): joiners whose access is gone are dropped. */
  recheckAll(): void;
  /** Drops every open terminal socket (the gateway is closing). */
  close(): void;
}

/**
 * A slow viewer (a bad link, a stopped laptop) must not make the gateway
 * buffer a busy terminal's output without bound: past this many bytes
 * queued on its socket the viewer is dropped with an error frame. The
 * session itself goes on (an owner's shell ends the way a closed tab ends it).
 */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Pings find viewers whose connection vanished without a FIN (sleep, network change). */
const HEARTBEAT_MS = 30_000;
/** Node and login names as the API accepts them elsewhere; anything longer is not a name. */
const MAX_NAME = 253;

const JOIN_PATH = new RegExp(`^${TERMINAL_WS_PATHS.join.replace(':id', '([^/]+)')}$`);
/** A desktop recording replayed to IronRDP as if it were the desktop (?speed=1..16). */
/** How long a finished desktop playback keeps its last frame on screen before the socket closes. */
const PLAYBACK_HOLD_MS = 30 * 60_000;
const DESKTOP_PLAYBACK_PATH = /^\/v1\/ws\/recordings\/([^/]+)\/desktop$/;

/** What one socket is attached to, once the upgrade is accepted. */
interface Attachment {
  mode: 'owner' | JoinMode;
  /** The size for the session frame when the session has not told one yet. */
  size: { cols: number; rows: number };
  start(viewer: TerminalViewer): Promise<TerminalHandle> | TerminalHandle;
  /** Called once when the socket closes (after the handle is detached). */
  onClose?(): void;
  /**
   * Rejects once this socket may no longer stay open: a joiner who lost the
   * right to watch, or a socket whose web session was ended (logout, the user
   * deleted). An owner's shell is otherwise the adapter's to end. `expires`
   * ends the view when the certificate or web session expires.
   */
  recheck?(): Promise<void>;
  expires?: Date;
}

/** setTimeout's longest delay; a later expiry is left to the lock re-checks. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function createTerminalSockets(d: TerminalSocketDeps): TerminalSockets {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: TERMINAL_WS_MAX_PAYLOAD,
    perMessageDeflate: false,
  });
  // A handshake ws cannot complete (a malformed Sec-WebSocket-Key or
  // version) is refused like any bad API request: problem JSON and an
  // http.reject event, instead of ws's own bare answer that left no trace.
  wss.on('wsClientError', (err: Error, socket: Duplex, req: IncomingMessage) => {
    const ge = new GatehouseError('GH_ERR_BAD_REQUEST', `malformed WebSocket handshake: ${err.message}`, {
      hint: 'open the terminal from the web UI or with gatehouse join',
    });
    let path = '';
    try {
      path = new URL(req.url ?? '/', 'https://gatehouse.invalid').pathname;
    } catch {
      // The URL was checked before; a path is only a detail of the event.
    }
    void auditHttpReject(
      d.audit,
      ge,
      { method: req.method ?? '', path, remoteAddr: remoteAddress(req) },
      d.log,
    );
    sendProblemOnSocket(socket, ge);
  });
  // The desktop relay's socket: plaintext RDP from the browser after the
  // RDCleanPath exchange (input, clipboard, channel data; no message near this).
  const desktopWss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
    perMessageDeflate: false,
  });
  /** Desktop sockets opened with a session cookie, each with the check that its web session still exists. */
  const desktopSessions = new Map<WebSocket, () => Promise<void>>();
  /** Open sockets that re-check (joins, web-session sockets), each with the function that drops it. */
  const watched = new Map<Attachment, (err: unknown) => void>();

  /**
   * For a caller signed in with the session cookie: rejects once that web
   * session is gone, so logging out (in another tab too) closes what it opened.
   */
  function webSessionCheck(caller: Caller): (() => Promise<void>) | undefined {
    const id = caller.session?.id;
    if (caller.auth !== 'session' || id === undefined) return undefined;
    return async () => {
      if (await d.sessions.get(id)) return;
      // Deleting a user ends their web sessions too, and this check may run
      // before the terminal's own end (which names the deletion) arrives: when
      // access itself is gone, that is the reason to show, not a logout.
      await d.authorizer.principal(caller.principal.identity, { traitsFromUser: true });
      throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'your web session ended (logged out)', {
        hint: 'sign in again to open a terminal',
      });
    };
  }

  async function accept(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    const remoteAddr = remoteAddress(req);
    if (req.method !== 'GET' || header(req, 'upgrade')?.toLowerCase() !== 'websocket') {
      throw new GatehouseError(
        'GH_ERR_BAD_REQUEST',
        'only WebSocket upgrades (GET, Upgrade: websocket) here',
        {
          hint: 'open the terminal from the web UI or with gatehouse join',
        },
      );
    }
    if (url.pathname === DESKTOP_WS_PATH) {
      await acceptDesktop(req, socket, head, remoteAddr);
      return;
    }
    const playback = DESKTOP_PLAYBACK_PATH.exec(url.pathname);
    if (playback) {
      await acceptDesktopPlayback(req, socket, head, url, decodeSegment(playback[1]!), remoteAddr);
      return;
    }
    const join = JOIN_PATH.exec(url.pathname);
    if (url.pathname !== TERMINAL_WS_PATHS.terminal && !join) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `no WebSocket endpoint ${url.pathname}`, {
        hint: `WebSockets live at ${TERMINAL_WS_PATHS.terminal}, ${TERMINAL_WS_PATHS.join} and ${DESKTOP_WS_PATH}`,
      });
    }
    const caller = await authenticateCaller(d, req, 'origin');
    if (join) {
      const a = await authorizeJoin(caller, decodeSegment(join[1]!), url, remoteAddr);
      upgrade(req, socket, head, a);
      return;
    }
    const { mfaToken, ...q } = terminalQuery(url);
    const service = d.terminals.get();
    if (!service) {
      throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'no SSH adapter runs in this gateway', {
        hint: 'the web terminal needs the SSH adapter (gatehouse start serves it by default)',
      });
    }
    const stillSignedIn = webSessionCheck(caller);
    upgrade(req, socket, head, {
      mode: 'owner',
      size: { cols: q.cols, rows: q.rows },
      start: async (viewer) => {
        // After a per-session MFA check the session opens with the identity bound to this
        // node and login (the page got the token for it); the proxy's Authorizer checks the binding.
        const identity =
          mfaToken === undefined
            ? caller.principal.identity
            : await d.sessionMfa.redeemToken(mfaToken, caller.principal.user.name);
        return service.open(
          { identity, ticket: mintClientTicket(identity, q.login), ...q, remoteAddr },
          viewer,
        );
      },
      ...(stillSignedIn ? { recheck: stillSignedIn } : {}),
    });
  }

  /**
   * The RDCleanPath route: core authenticates the web session and the Origin
   * before the 101; the token in the RDCleanPath request is redeemed through
   * core when the adapter reads it. Everything after is the adapter's.
   */
  async function acceptDesktop(req: IncomingMessage, socket: Duplex, head: Buffer, remoteAddr: string) {
    const caller = await authenticateCaller(d, req, 'origin');
    const relay = d.desktopRelays.get();
    if (!relay) {
      throw new GatehouseError('GH_ERR_UPSTREAM_UNAVAILABLE', 'no RDP adapter runs in this gateway', {
        hint: 'desktops need the RDP adapter (gatehouse start serves it by default)',
      });
    }
    const user = caller.principal.user.name;
    const stillSignedIn = webSessionCheck(caller);
    desktopWss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (err) => d.log('debug', 'desktop WebSocket error', err));
      // Logging out (in any tab) closes the desktop too; the adapter then ends and audits the session.
      if (stillSignedIn) {
        desktopSessions.set(ws, stillSignedIn);
        ws.once('close', () => desktopSessions.delete(ws));
      }
      relay.open({
        socket: createWebSocketStream(ws),
        user,
        remoteAddr,
        // ws sends the close frame after queued data and destroys the socket if no answer comes within 30 s.
        close: (reason) => ws.close(TERMINAL_WS_CLOSE.normal, reason.slice(0, 120)),
        redeem: (token, destination) => d.desktopTokens.redeem(token, { user, destination, remoteAddr }),
      });
    });
  }

  /**
   * Plays a desktop recording to the browser's IronRDP client: the recording
   * holds every byte the gateway sent on the live socket (the RDCleanPath
   * answer first, then the desktop's PDUs), so sending them again at their
   * recorded times makes the same client draw the same screens. What the
   * client sends is read and dropped; nothing reaches any desktop.
   */
  async function acceptDesktopPlayback(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    url: URL,
    id: string,
    remoteAddr: string,
  ) {
    const caller = await authenticateCaller(d, req, 'origin');
    const meta = await d.readRecording(caller.principal, id, remoteAddr);
    await d.recordings.assertReadable?.(id);
    if (meta.kind !== 'desktop') {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', `recording "${id}" is not a desktop session`, {
        hint: 'play terminal recordings in the session player',
      });
    }
    const speedParam = url.searchParams.get('speed') ?? '1';
    const speed = /^\d{1,2}(\.\d+)?$/.test(speedParam) ? Number(speedParam) : Number.NaN;
    if (!(speed >= 0.25 && speed <= 16)) {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', `speed "${speedParam}" is out of range`, {
        hint: 'use a speed from 0.25 to 16',
      });
    }
    desktopWss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (err) => d.log('debug', 'desktop playback WebSocket error', err));
      const ac = new AbortController();
      ws.once('close', () => ac.abort());
      replayDesktop(ws, d.recordings.read(id, { signal: ac.signal }), speed, ac.signal).then(
        () => {
          // The client keeps showing the last frame while the socket stays open (a close
          // is an error to IronRDP, which then blanks its canvas): the viewer ends it by
          // closing the tab, or it ends after a while.
          const idle = setTimeout(
            () => ws.close(TERMINAL_WS_CLOSE.normal, 'end of recording'),
            PLAYBACK_HOLD_MS,
          );
          idle.unref();
          ws.once('close', () => clearTimeout(idle));
        },
        (err: unknown) => {
          if (!ac.signal.aborted) d.log('error', `desktop playback of ${id} failed`, err);
          ws.terminate();
        },
      );
    });
  }

  /** Checks a join before the 101: bad mode 400 (http.reject), unknown session 404, role denial 403 (audited by authorizeJoin). */
  async function authorizeJoin(
    caller: Caller,
    id: string,
    url: URL,
    remoteAddr: string,
  ): Promise<Attachment> {
    const modeParam = url.searchParams.get('mode') ?? 'observer';
    if (modeParam !== 'observer' && modeParam !== 'peer') {
      throw new GatehouseError('GH_ERR_BAD_REQUEST', `unknown join mode "${modeParam}"`, {
        hint: 'use mode=observer (watch) or mode=peer (type too)',
      });
    }
    const mode: JoinMode = modeParam;
    // The session may run on another gateway of the cluster: the join is decided (and audited) here, by this
    // gateway's core, then relayed from the owner over the peer channel (decision 0039-gateway-peers).
    const found = await d.clusterSessions.find(id);
    if (!found) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `no live session "${id}" on any gateway`, {
        hint: 'gatehouse sessions ls lists the live sessions',
      });
    }
    const info = found.info;
    const p = caller.principal;
    await d.authorizer.authorizeJoin(p, info, mode, { remoteAddr, protocol: 'http' });
    const joinedAt = d.clock.now().getTime();
    const stillSignedIn = webSessionCheck(caller);
    let left = false;
    return {
      mode,
      expires: p.identity.expires,
      recheck: async () => {
        await stillSignedIn?.();
        const now = await d.authorizer.principal(p.identity, { traitsFromUser: caller.auth === 'session' });
        const again = info.user === now.user.name ? undefined : now.checker.checkJoin(mode);
        if (again && !again.allowed) {
          throw new GatehouseError('GH_ERR_ACCESS_DENIED', `access denied: ${again.reason}`, {
            hint: 'ask an admin for a role that allows joining sessions',
          });
        }
      },
      // Until the session reports its size (it does on attach).
      size: { cols: 80, rows: 24 },
      start: (viewer) => d.clusterSessions.join(found, { user: p.user.name, mode, remoteAddr }, viewer),
      // Every audited join gets its leave, even one whose attach failed.
      onClose: () => {
        if (left) return;
        left = true;
        d.audit
          .emit({
            type: 'session.leave',
            user: p.user.name,
            session_id: info.id,
            session_kind: info.kind,
            owner: info.user,
            server: info.server,
            mode,
            duration_ms: d.clock.now().getTime() - joinedAt,
            addr: { remote: remoteAddr },
          })
          .catch((e: unknown) => d.log('error', 'audit of session.leave failed', e));
      },
    };
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, a: Attachment): void {
    let upgraded = false;
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      const drop = bridge(ws, a, d);
      if (a.recheck) {
        watched.set(a, drop);
        ws.once('close', () => watched.delete(a));
      }
    });
    // ws answers a malformed handshake (bad key or version) itself, at once:
    // whatever was authorized for this request is over then.
    if (!upgraded) a.onClose?.();
  }

  return {
    handleUpgrade(req, socket, head) {
      const remoteAddr = remoteAddress(req);
      // Until ws owns the socket, a reset must not become an uncaught error.
      const onError = (err: Error) => d.log('debug', `WebSocket upgrade from ${remoteAddr}`, err);
      socket.on('error', onError);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'https://gatehouse.invalid');
      } catch {
        url = new URL('https://gatehouse.invalid/');
      }
      accept(req, socket, head, url)
        .catch(async (err: unknown) => {
          const known = toGatehouseError(err);
          const ge =
            known ??
            new GatehouseError('GH_ERR_INTERNAL', 'internal error', {
              cause: err,
              hint: 'see the gateway log',
            });
          if (!known) d.log('error', `WebSocket upgrade ${url.pathname} failed`, err);
          await auditHttpReject(
            d.audit,
            ge,
            { method: req.method ?? '', path: url.pathname, remoteAddr },
            d.log,
          );
          sendProblemOnSocket(socket, ge);
        })
        .finally(() => socket.off('error', onError));
    },
    recheckAll() {
      for (const [a, drop] of watched) a.recheck?.().catch(drop);
      for (const [ws, check] of desktopSessions) {
        check().catch((err: unknown) => {
          const ge = toGatehouseError(err);
          ws.close(TERMINAL_WS_CLOSE.policy, (ge?.message ?? 'web session ended').slice(0, 120));
        });
      }
    },
    close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      for (const ws of desktopWss.clients) ws.terminate();
      desktopWss.close();
    },
  };
}

/** Sends each recorded output event at its time (divided by `speed`), one message after another. */
async function replayDesktop(
  ws: WebSocket,
  events: AsyncIterable<RecordingEvent>,
  speed: number,
  signal: AbortSignal,
): Promise<void> {
  const started = Date.now();
  for await (const e of events) {
    if (signal.aborted) return;
    if (e.type !== 'output') continue;
    const wait = started + e.t / speed - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await new Promise<void>((resolve, reject) =>
      ws.send(e.data, { binary: true }, (err) => (err ? reject(err) : resolve())),
    );
  }
}

/** The shell or join's request parameters; anything missing or out of range is a 400. */
function terminalQuery(url: URL): {
  node: string;
  login: string;
  cols: number;
  rows: number;
  mfaToken?: string | undefined;
} {
  const s = url.searchParams;
  const mfaToken = s.get('mfa_token') ?? undefined;
  const node = s.get('node') ?? '';
  const login = s.get('login') ?? '';
  const cols = /^\d{1,4}$/.test(s.get('cols') ?? '') ? Number(s.get('cols')) : Number.NaN;
  const rows = /^\d{1,4}$/.test(s.get('rows') ?? '') ? Number(s.get('rows')) : Number.NaN;
  const bad = [
    node.length < 1 || node.length > MAX_NAME ? 'node' : '',
    login.length < 1 || login.length > MAX_NAME ? 'login' : '',
    validTerminalSize(cols) ? '' : 'cols',
    validTerminalSize(rows) ? '' : 'rows',
  ].filter(Boolean);
  if (bad.length > 0) {
    throw new GatehouseError('GH_ERR_BAD_REQUEST', `missing or invalid ${bad.join(', ')}`, {
      hint: 'send node=NAME&login=LOGIN&cols=N&rows=N (cols and rows 1..1000)',
    });
  }
  return { node, login, cols, rows, ...(mfaToken !== undefined ? { mfaToken } : {}) };
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new GatehouseError('GH_ERR_NOT_FOUND', 'malformed session id in the path');
  }
}

/**
 * Maps one WebSocket onto a terminal: binary frames are keystrokes, text
 * frames resize; the session's output, size changes and end come back as
 * the frames the protocol names. Output that arrives before the session
 * frame (a shell prompt while open() resolves) waits for it; input sent
 * before it is dropped. Returns the function that drops the viewer with an
 * error (a failed re-check).
 */
function bridge(
  ws: WebSocket,
  a: Attachment,
  d: Pick<TerminalSocketDeps, 'log' | 'clock'>,
): (err: unknown) => void {
  const log = d.log;
  let handle: TerminalHandle | undefined;
  let started = false;
  let done = false;
  let size = a.size;
  let pendingResize: { cols: number; rows: number } | undefined;
  const queued: (() => void)[] = [];
  const later = (f: () => void) => {
    if (done) return;
    if (started) f();
    else queued.push(f);
  };

  const send = (frame: TerminalServerFrame) => ws.send(JSON.stringify(frame));
  /** Ends this viewer: a last frame, then the close code; the session is let go at once. */
  const finish = (last: TerminalServerFrame, code: number, reason: string) => {
    if (done) return;
    done = true;
    handle?.detach();
    if (ws.readyState !== ws.OPEN) return;
    send(last);
    // ws destroys the socket if the peer does not answer the close within 30 s.
    ws.close(code, reason);
  };
  const fail = (err: unknown, code: number = TERMINAL_WS_CLOSE.error) => {
    const ge = toGatehouseError(err);
    if (!ge) log('error', 'terminal WebSocket failed', err);
    const e = ge ?? new GatehouseError('GH_ERR_INTERNAL', 'internal error', { hint: 'see the gateway log' });
    finish(
      { type: 'error', code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
      code,
      e.code,
    );
  };

  const viewer: TerminalViewer = {
    output: (data) =>
      later(() => {
        if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
          fail(
            new GatehouseError('GH_ERR_RATE_LIMITED', 'this viewer fell too far behind the terminal output', {
              hint: 'check the network connection, then open the terminal or join again',
            }),
          );
          return;
        }
        ws.send(data, { binary: true });
      }),
    resize: (cols, rows) => {
      if (!started) size = { cols, rows };
      else later(() => send({ type: 'resize', cols, rows }));
    },
    end: (info) =>
      later(() =>
        finish(
          {
            type: 'end',
            ...(info.reason !== undefined ? { reason: info.reason } : {}),
            ...(info.exitCode !== undefined ? { exit_code: info.exitCode } : {}),
          },
          TERMINAL_WS_CLOSE.normal,
          'session ended',
        ),
      ),
  };

  ws.on('message', (data, isBinary) => {
    if (done) return;
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data);
    if (isBinary) {
      // An observer watches; its keystrokes go nowhere (the session drops them too).
      if (a.mode !== 'observer') handle?.input(bytes);
      return;
    }
    const frame = parseTerminalClientFrame(bytes.toString('utf8'));
    if (!frame) {
      fail(
        new GatehouseError('GH_ERR_BAD_REQUEST', 'unknown text frame', {
          hint: 'text frames are JSON: {"type":"resize","cols":N,"rows":N} with cols and rows 1..1000',
        }),
        TERMINAL_WS_CLOSE.policy,
      );
      return;
    }
    if (handle) handle.resize(frame.cols, frame.rows);
    else pendingResize = { cols: frame.cols, rows: frame.rows };
  });
  ws.on('error', (err) => log('debug', 'terminal WebSocket error', err));

  let alive = true;
  ws.on('pong', () => {
    alive = true;
  });
  const heartbeat = setInterval(() => {
    if (!alive) {
      ws.terminate();
      return;
    }
    alive = false;
    ws.ping();
  }, HEARTBEAT_MS);
  heartbeat.unref();

  const untilExpiry = a.expires ? a.expires.getTime() - d.clock.now().getTime() : Number.POSITIVE_INFINITY;
  const expiry =
    untilExpiry <= MAX_TIMER_MS
      ? setTimeout(
          () =>
            fail(
              new GatehouseError('GH_ERR_CERT_EXPIRED', 'your login expired', {
                hint: 'log in again, then join again',
              }),
            ),
          Math.max(0, untilExpiry),
        )
      : undefined;
  expiry?.unref();

  ws.on('close', () => {
    clearInterval(heartbeat);
    clearTimeout(expiry);
    done = true;
    handle?.detach();
    a.onClose?.();
  });

  Promise.resolve()
    .then(() => a.start(viewer))
    .then(
      (h) => {
        handle = h;
        if (done) {
          h.detach();
          return;
        }
        send({ type: 'session', session_id: h.sessionId, mode: a.mode, cols: size.cols, rows: size.rows });
        started = true;
        if (pendingResize) h.resize(pendingResize.cols, pendingResize.rows);
        for (const f of queued.splice(0)) if (!done) f();
      },
      (err: unknown) => fail(err),
    );
  return (err) => fail(err);
}
