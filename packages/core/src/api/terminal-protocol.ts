import type { JoinMode } from '../rbac/types.js';

/**
 * The terminal WebSocket protocol (docs/web-terminal-protocol.md), shared by
 * the gateway (api/ws.ts), GatehouseClient and the web UI. Binary frames are
 * terminal bytes; text frames are one JSON object each, typed here.
 */

export const TERMINAL_WS_PATHS = {
  /** ?node=NAME&login=LOGIN&cols=N&rows=N */
  terminal: '/v1/ws/terminal',
  /** ?mode=observer|peer */
  join: '/v1/ws/sessions/:id/join',
} as const;

/** Largest frame either side accepts; a bigger one closes the socket with 1009. */
export const TERMINAL_WS_MAX_PAYLOAD = 1024 * 1024;

/** Window sizes accepted in the URL and in resize frames (each of cols, rows). */
export const TERMINAL_MAX_SIZE = 1000;

/** Close codes the server uses (RFC 6455). */
export const TERMINAL_WS_CLOSE = {
  normal: 1000,
  policy: 1008,
  tooBig: 1009,
  error: 1011,
} as const;

/** Client to server. */
export type TerminalClientFrame = { type: 'resize'; cols: number; rows: number };

/** Server to client. */
export type TerminalServerFrame =
  | {
      type: 'session';
      session_id: string;
      mode: 'owner' | JoinMode;
      cols: number;
      rows: number;
    }
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'end'; reason?: string; exit_code?: number }
  | { type: 'error'; code: string; message: string; hint?: string };

/** True for a whole number within 1..TERMINAL_MAX_SIZE. */
export function validTerminalSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= TERMINAL_MAX_SIZE;
}

/** Parses a client text frame; undefined when it is not one of the client messages. */
export function parseTerminalClientFrame(text: string): TerminalClientFrame | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined; // not JSON: the caller closes with 1008
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (o.type === 'resize' && validTerminalSize(o.cols) && validTerminalSize(o.rows)) {
    return { type: 'resize', cols: o.cols, rows: o.rows };
  }
  return undefined;
}

/**
 * Parses a server text frame (for clients); undefined when it is not JSON
 * with a known `type` (a newer server may add types: ignore those).
 */
export function parseTerminalServerFrame(text: string): TerminalServerFrame | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined; // not JSON: not a frame this client understands
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const t = (v as { type?: unknown }).type;
  return t === 'session' || t === 'resize' || t === 'end' || t === 'error'
    ? (v as TerminalServerFrame)
    : undefined;
}
