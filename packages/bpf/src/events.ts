import { ruleText } from './policy.js';

/** What the kernel saw in one session, in the order the helper reported it (`ts` orders across CPUs). */
export type BpfEvent =
  | {
      type: 'exec';
      pid: number;
      ppid: number;
      uid: number;
      /** The path execve was given. */
      file: string;
      argv: string[];
      /** argv was longer than the recorded part (64 arguments, 2 KiB). */
      truncated: boolean;
      /** 0, or -errno when the exec failed (misses of a PATH search are not reported). */
      ret: number;
      /** Kernel monotonic nanoseconds. */
      ts: bigint;
    }
  | { type: 'exit'; pid: number; exitCode?: number; signal?: number; ts: bigint }
  | { type: 'open'; pid: number; path: string; flags: number; ret: number; ts: bigint }
  | {
      type: 'network';
      pid: number;
      op: 'connect' | 'sendmsg';
      family: 4 | 6;
      protocol: 'tcp' | 'udp' | number;
      addr: string;
      port: number;
      denied: boolean;
      /** The deny rule that matched, or "not in allow list". */
      rule?: string;
      ts: bigint;
    }
  /** The kernel could not queue some events (ring buffer full): `total` so far for this session. */
  | { type: 'lost'; total: number }
  /** The helper exited: enforcement of this session has stopped (the caller ends the session). */
  | { type: 'helper-exit'; reason: string };

export const NOT_IN_ALLOW_LIST = 'not in allow list';
const RULE_NOT_ALLOWED = 255;

interface Wire {
  ev: string;
  cg: number;
  pid: number;
  ts: number | string;
  [k: string]: unknown;
}

/**
 * The helper's JSON line for one event, typed. Returns undefined for a line
 * that is not a session event. `ts` arrives as a JSON number above 2^53 at
 * times; it is re-read from the raw text so no precision is lost.
 */
export function decodeEvent(w: Wire, raw: string): { cgroupId: number; event: BpfEvent } | undefined {
  const ts = (): bigint => {
    const m = /"ts":(\d+)/.exec(raw);
    return m ? BigInt(m[1] as string) : 0n;
  };
  switch (w.ev) {
    case 'exec':
      return {
        cgroupId: w.cg,
        event: {
          type: 'exec',
          pid: w.pid,
          ppid: w.ppid as number,
          uid: w.uid as number,
          file: w.file as string,
          argv: w.argv as string[],
          truncated: w.truncated === true,
          ret: w.ret as number,
          ts: ts(),
        },
      };
    case 'exit': {
      // A wait status: exit code in bits 8-15, or the terminating signal in bits 0-6.
      const status = w.status as number;
      const sig = status & 0x7f;
      return {
        cgroupId: w.cg,
        event: {
          type: 'exit',
          pid: w.pid,
          ...(sig === 0 ? { exitCode: (status >> 8) & 0xff } : { signal: sig }),
          ts: ts(),
        },
      };
    }
    case 'open':
      return {
        cgroupId: w.cg,
        event: {
          type: 'open',
          pid: w.pid,
          path: w.path as string,
          flags: w.flags as number,
          ret: w.ret as number,
          ts: ts(),
        },
      };
    case 'net': {
      const family = w.family === 6 ? 6 : 4;
      const proto = w.protocol as number;
      const prefix = w.rule_prefix as number | undefined;
      const denied = w.denied === true;
      return {
        cgroupId: w.cg,
        event: {
          type: 'network',
          pid: w.pid,
          op: w.op === 'sendmsg' ? 'sendmsg' : 'connect',
          family,
          protocol: proto === 6 ? 'tcp' : proto === 17 ? 'udp' : proto,
          addr: w.addr as string,
          port: w.port as number,
          denied,
          ...(denied && prefix !== undefined
            ? {
                rule:
                  prefix === RULE_NOT_ALLOWED
                    ? NOT_IN_ALLOW_LIST
                    : ruleText(family, w.addr as string, prefix),
              }
            : {}),
          ts: ts(),
        },
      };
    }
    case 'lost':
      return { cgroupId: w.cg, event: { type: 'lost', total: w.total as number } };
    default:
      return undefined;
  }
}
