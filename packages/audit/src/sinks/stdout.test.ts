import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../events.js';
import { StdoutSink } from './stdout.js';

describe('StdoutSink', () => {
  it('writes one JSON line per event', () => {
    const out: string[] = [];
    const sink = new StdoutSink({ stream: { write: (c: string) => out.push(c) } });
    const e: AuditEvent = {
      id: 'a',
      time: '2026-01-01T00:00:00.000Z',
      type: 'gateway.stop',
      code: 'GH1201I',
      cluster: 'c',
    };
    sink.write(e);
    expect(sink.name).toBe('stdout');
    expect(out).toEqual([`${JSON.stringify(e)}\n`]);
  });
});
