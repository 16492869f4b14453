/**
 * `gatehouse recordings ls` and `gatehouse play`: list and replay session
 * recordings, on the data dir (local) or through the proxy (remote), like
 * the other admin verbs.
 */
import {
  type AuditEvent,
  decodeEvent,
  isRecordingFormat,
  play,
  type RecordingEvent,
  type RecordingFormat,
  type RecordingKind,
  type RecordingMeta,
  type RecordingQuery,
} from '@gatehouse/audit';
import { RECORDINGS_LIST_MAX } from '@gatehouse/core';
import { type Command, Option } from 'commander';
import { checkTimeRange, parsePositiveInt, timeFlag } from '../args.js';
import { type Ctx, withAdmin } from '../context.js';
import { json, table } from '../output.js';
import { auditPages } from './admin.js';
import { asUsage, flag, usage } from './usage.js';

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

export function recordingRow(m: RecordingMeta): string[] {
  const target = m.login ? `${m.login}@${m.server}` : m.server;
  const live = m.ended === undefined;
  return [
    m.session_id,
    m.kind,
    m.user,
    target,
    m.started,
    live ? 'live' : formatDuration(Date.parse(m.ended ?? m.started) - Date.parse(m.started)),
    live ? '-' : formatBytes(m.output_bytes ?? 0),
  ];
}

/** Splits a byte stream of JSON lines into recording events. */
export async function* eventsFromJsonLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<RecordingEvent> {
  const decoder = new TextDecoder();
  let rest = '';
  for await (const part of body) {
    rest += decoder.decode(part, { stream: true });
    let nl = rest.indexOf('\n');
    while (nl >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line !== '') yield decodeEvent(line);
      nl = rest.indexOf('\n');
    }
  }
  rest += decoder.decode();
  if (rest.trim() !== '') yield decodeEvent(rest);
}

/** A recording offset as [-][h:]m:ss.mmm. */
export function formatOffset(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  const t = Math.round(Math.abs(ms));
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor((t % 3_600_000) / 60_000);
  const s = Math.floor((t % 60_000) / 1000);
  const frac = String(t % 1000).padStart(3, '0');
  const sec = `${String(s).padStart(2, '0')}.${frac}`;
  return h > 0 ? `${sign}${h}:${String(m).padStart(2, '0')}:${sec}` : `${sign}${m}:${sec}`;
}

type CommandEvent = Extract<AuditEvent, { type: 'session.command' }>;

/**
 * The programs enhanced recording saw a session run (`session.command`
 * audit events with its session id), oldest first, each with its offset
 * from the recording's start (negative: before the recording began).
 */
export function commandRows(
  events: readonly AuditEvent[],
  startedIso: string,
): (CommandEvent & { offset_ms: number })[] {
  const start = Date.parse(startedIso);
  return events
    .filter((e): e is CommandEvent => e.type === 'session.command')
    .map((e) => ({ ...e, offset_ms: Date.parse(e.time) - start }))
    .sort((a, b) => a.offset_ms - b.offset_ms);
}

function parseSpeed(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 1000) {
    throw usage(
      `--speed "${text}" is not a positive number`,
      'e.g. --speed 2 (twice as fast) or --speed 0.5',
    );
  }
  return n;
}

function parseMaxIdle(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) {
    throw usage(
      `--max-idle "${text}" is not a number of seconds`,
      'e.g. --max-idle 2 (idle gaps last at most 2 s)',
    );
  }
  return n;
}

export function registerRecordings(program: Command, ctx: Ctx): void {
  const recordings = program.command('recordings').description('recorded interactive sessions');
  recordings
    .command('ls')
    .description('list recordings, newest first (without recording:list, your own)')
    .option('--user <name>', 'recordings of this user')
    .addOption(new Option('--kind <kind>', 'session kind').choices(['ssh', 'kube', 'desktop']))
    .option(
      '--since <when>',
      'started at most this long ago (30s, 15m, 8h, 1h30m, 2d) or after an ISO time',
      flag(timeFlag('--since', () => ctx.now())),
    )
    .option(
      '--until <when>',
      'started at least this long ago or before an ISO time',
      flag(timeFlag('--until', () => ctx.now())),
    )
    .option(
      '--limit <n>',
      `at most this many, up to ${RECORDINGS_LIST_MAX} (default 100)`,
      flag(
        parsePositiveInt('--limit', {
          max: RECORDINGS_LIST_MAX,
          why: `the gateway lists at most ${RECORDINGS_LIST_MAX} recordings at once; narrow the list with --user, --kind, --since or --until`,
        }),
      ),
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ gatehouse recordings ls
  $ gatehouse recordings ls --user alice --since 1d --json`,
    )
    .action(
      async (
        o: {
          user?: string;
          kind?: RecordingKind;
          since?: string;
          until?: string;
          limit?: number;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        asUsage(() => checkTimeRange(o.since, o.until));
        const q: RecordingQuery = {};
        if (o.user) q.user = o.user;
        if (o.kind) q.kind = o.kind;
        if (o.since !== undefined) q.from = o.since;
        if (o.until !== undefined) q.to = o.until;
        if (o.limit !== undefined) q.limit = o.limit;
        await withAdmin(cmd, ctx, async (t) => {
          const list = await t.api.listRecordings(q);
          if (o.json) return ctx.out(json(list));
          if (list.length === 0) {
            ctx.err('no recordings (interactive sessions are recorded when they end or as they run)\n');
            return;
          }
          ctx.out(
            table(
              ['SESSION', 'KIND', 'USER', 'TARGET', 'STARTED', 'DURATION', 'SIZE'],
              list.map(recordingRow),
            ),
          );
        });
      },
    );

  recordings
    .command('rm')
    .description('delete a finished recording for good (needs recording:delete; audited with your reason)')
    .argument('<session-id>', 'from gatehouse recordings ls')
    .option('--reason <text>', 'why (required): written to the audit log with the deletion')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
The deletion is recorded (recording.delete, GH1213I) before anything is removed;
a session that is still running keeps its recording (end it first).

Examples:
  $ gatehouse recordings rm 0190c3a2-... --reason "GDPR erasure request #4411"`,
    )
    .action(async (id: string, o: { reason?: string; json?: boolean }, cmd: Command) => {
      const reason = o.reason?.trim() ?? '';
      if (reason === '') {
        throw usage(
          'gatehouse recordings rm needs --reason',
          'say why the recording is deleted, e.g. --reason "GDPR erasure request #4411"; it goes into the audit log',
        );
      }
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.deleteRecording(id, { reason });
        if (o.json) return ctx.out(json({ deleted: id, reason }));
        ctx.out(`deleted recording ${id}\n`);
      });
    });

  program
    .command('play')
    .description('replay a recorded session in this terminal, or print it in a format')
    .argument('<session-id>', 'from gatehouse recordings ls')
    .option('--speed <n>', 'playback speed multiplier', parseSpeed)
    .option('--max-idle <seconds>', 'shorten idle gaps to at most this long', parseMaxIdle)
    .addOption(
      new Option(
        '--format <format>',
        'print instead of playing: text (the output), json (events), asciicast (v2)',
      ).choices(['text', 'json', 'asciicast']),
    )
    .option('--follow', 'for a live session: keep going until it ends')
    .addOption(
      new Option(
        '--commands',
        'list the programs the session ran (enhanced recording) with their offset, instead of playing',
      ).conflicts(['format', 'follow', 'speed', 'maxIdle']),
    )
    .option('--json', 'with --commands: print JSON (the session.command events, with offset_ms)')
    .addHelpText(
      'after',
      `
Examples:
  $ gatehouse play 0195f3c2-...                      # replay with the original timing
  $ gatehouse play 0195f3c2-... --speed 4 --max-idle 1
  $ gatehouse play 0195f3c2-... --format asciicast > session.cast && asciinema play session.cast
  $ gatehouse play 0195f3c2-... --format text | grep -a password
  $ gatehouse play 0195f3c2-... --commands          # what ran, from enhanced recording`,
    )
    .action(
      async (
        id: string,
        o: {
          speed?: number;
          maxIdle?: number;
          format?: string;
          follow?: boolean;
          commands?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (o.json && !o.commands) {
          throw usage('--json goes with --commands', 'use --format json for the recording as JSON events');
        }
        if (o.commands) {
          await withAdmin(cmd, ctx, async (t) => {
            const meta = await t.api.getRecording(id);
            const events: AuditEvent[] = [];
            for await (const page of auditPages(t.api, { session_id: id, types: ['session.command'] }))
              events.push(...page);
            // Pages come newest first: reversed, commands of the same millisecond keep their order.
            const rows = commandRows(events.reverse(), meta.started);
            if (o.json) return ctx.out(json(rows));
            if (rows.length === 0) {
              ctx.err(
                'no commands recorded for this session (enhanced_recording with command in a role of the user, on a gatehouse node service, records them)\n',
              );
              return;
            }
            ctx.out(
              table(
                ['OFFSET', 'PID', 'COMMAND'],
                rows.map((r) => [
                  formatOffset(r.offset_ms),
                  String(r.pid),
                  (r.argv.join(' ') || r.program) +
                    (r.argv_truncated ? ' ...' : '') +
                    (r.error_code !== undefined ? ` (exec failed: ${r.error_code})` : ''),
                ]),
              ),
            );
          });
          return;
        }
        if (o.format !== undefined && !isRecordingFormat(o.format)) {
          throw usage(`unknown format "${o.format}"`, 'use --format text, json or asciicast');
        }
        const format = o.format as RecordingFormat | undefined;
        await withAdmin(cmd, ctx, async (t) => {
          const follow = o.follow ?? false;
          // Recorded bytes go to stdout as bytes (not text), waiting when the pipe is full.
          if (format) {
            for await (const part of await t.api.readRecording(id, { format, follow })) await ctx.write(part);
            return;
          }
          const body = await t.api.readRecording(id, { format: 'json', follow });
          await play(eventsFromJsonLines(body), {
            speed: o.speed ?? 1,
            ...(o.maxIdle !== undefined ? { maxIdleMs: o.maxIdle * 1000 } : {}),
            write: (d) => ctx.write(d),
          });
        });
      },
    );
}
