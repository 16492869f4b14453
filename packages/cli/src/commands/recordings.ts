/**
 * `gatehouse recordings ls` and `gatehouse play`: list and replay session
 * recordings, on the data dir (local) or through the proxy (remote), like
 * the other admin verbs.
 */
import {
  type AuditEvent,
  type DesktopActivity,
  decodeEvent,
  describeActivity,
  desktopActivity,
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

/** The web player's address for a desktop recording (at `t` ms when given). */
export function desktopPlayerUrl(proxy: string, id: string, t?: number): string {
  const q = new URLSearchParams({ recording: id });
  if (t !== undefined) q.set('t', String(Math.max(0, Math.floor(t))));
  return `https://${proxy}/web/desktop?${q}`;
}

export interface DesktopSummary {
  recording: RecordingMeta;
  /** Where the recording plays (the web UI's desktop player). */
  web_url: string;
  key_presses: number;
  clicks: number;
  activity: (DesktopActivity & { offset: string; text: string })[];
}

/** What `gatehouse play` shows of a desktop recording: it cannot play in a terminal. */
export async function desktopSummary(
  meta: RecordingMeta,
  events: AsyncIterable<RecordingEvent>,
  proxy: string,
): Promise<DesktopSummary> {
  const all: RecordingEvent[] = [];
  let keys = 0;
  let clicks = 0;
  for await (const e of events) {
    if (e.type === 'output') continue; // the desktop's PDUs: only the browser player draws them
    all.push(e);
    if (e.type !== 'desktop_input') continue;
    if (e.input.kind === 'key') keys++;
    else if (e.input.kind === 'button' && e.input.down) clicks++;
  }
  return {
    recording: meta,
    web_url: desktopPlayerUrl(proxy, meta.session_id),
    key_presses: keys,
    clicks,
    activity: desktopActivity(all).map((a) => ({
      ...a,
      offset: formatOffset(a.t),
      text: describeActivity(a),
    })),
  };
}

function printDesktopSummary(ctx: Ctx, s: DesktopSummary): void {
  const m = s.recording;
  const [, , user, target, started, duration, size] = recordingRow(m);
  ctx.out(
    `Desktop session ${m.session_id}: ${target} by ${user}, started ${started}, ${duration === 'live' ? 'still running' : duration}, ${size} from the desktop\n` +
      `Input: ${s.key_presses} key press${s.key_presses === 1 ? '' : 'es'} (which keys is not recorded), ${s.clicks} click${s.clicks === 1 ? '' : 's'}\n\n`,
  );
  if (s.activity.length > 0)
    ctx.out(
      `${table(
        ['OFFSET', 'ACTIVITY'],
        s.activity.map((a) => [a.offset, a.text]),
      )}\n`,
    );
  ctx.out(
    `A desktop recording plays in the browser (the screen is RDP graphics, not terminal text):\n  ${s.web_url}\n` +
      'Add &t=MILLISECONDS to open it at a moment (the OFFSET above, in ms).\n',
  );
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
    .option(
      '--json',
      'with --commands: print JSON (the session.command events, with offset_ms); for a desktop recording: its summary and input timeline',
    )
    .addHelpText(
      'after',
      `
Examples:
  $ gatehouse play 0195f3c2-...                      # replay with the original timing
  $ gatehouse play 0195f3c2-... --speed 4 --max-idle 1
  $ gatehouse play 0195f3c2-... --format asciicast > session.cast && asciinema play session.cast
  $ gatehouse play 0195f3c2-... --format text | grep -a password
  $ gatehouse play 0195f3c2-... --commands          # what ran, from enhanced recording
  $ gatehouse play 0195f3c2-...                      # a desktop: its input timeline and the web player's address`,
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
          const meta = await t.api.getRecording(id);
          if (meta.kind === 'desktop' && format !== 'json') {
            // RDP graphics do not play in a terminal: the summary, the input timeline and the web player's address.
            const extra = [
              format ? `--format ${format}` : '',
              o.speed !== undefined ? '--speed' : '',
              o.maxIdle !== undefined ? '--max-idle' : '',
              o.follow ? '--follow' : '',
            ].filter(Boolean);
            if (extra.length > 0) {
              throw usage(
                `${extra.join(', ')} ${extra.length === 1 ? 'does' : 'do'} not apply to a desktop recording`,
                `gatehouse play ${id} prints its timeline and the web player's address; --format json prints its events`,
              );
            }
            const s = await desktopSummary(
              meta,
              eventsFromJsonLines(await t.api.readRecording(id, { format: 'json', follow: false })),
              t.proxy,
            );
            if (o.json) return ctx.out(json(s));
            printDesktopSummary(ctx, s);
            return;
          }
          if (o.json) {
            throw usage(
              '--json goes with --commands (or a desktop recording)',
              'use --format json for the recording as JSON events',
            );
          }
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
