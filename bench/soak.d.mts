// Types for bench/soak.mjs, which packages/cli/test/reliability/soak.test.ts imports.

export type Kind = 'ssh' | 'psql' | 'mysql' | 'kube';
export type SessionKind = 'ssh-exec' | 'ssh-pty' | 'psql' | 'mysql' | 'kube';

export interface SoakOptions {
  minutes: number;
  sessions: number;
  mix: Record<Kind, number>;
  /** Session lifetime range in seconds. */
  lifetime: [number, number];
  interval?: number;
  /** Percent of the run. */
  warmup: number;
  seed?: number;
  json: boolean;
}

export interface Lag {
  p50: number;
  p99: number;
  max: number;
}

export interface DaemonSample {
  rss: number;
  fds: number;
  threads: number;
  cpuMs: number;
  runqWaitMs: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  handles: number;
  resources: Record<string, number>;
  lag: Lag & { count: number };
}

export interface Row {
  t: number;
  phase: 'warm-up' | 'load' | 'drain';
  live: number;
  openedPerS: number;
  closedPerS: number;
  failedTotal: number;
  openedTotal: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  fds: number;
  handles: number;
  threads: number;
  lag: Lag & { count: number };
  cpuPct: number;
  /** Percent of the interval the daemon's event loop was ready to run but had no CPU. */
  runqWaitPct: number;
  /** The kube fixture's event-loop lag (ms) over the interval. */
  fixtureLag: { p99: number; max: number };
  /** This process's event-loop lag (ms) over the interval. */
  generatorLag: { p99: number; max: number };
}

export interface Failure {
  t: number;
  kind: SessionKind;
  n: number;
  lifetime: number;
  error: string;
}

export interface Metric {
  afterWarmup: number;
  end: number;
  growth: number;
  perHour: number;
}

export interface SoakResult {
  options: SoakOptions & { interval: number; seed: number };
  daemonPid: number;
  durationS: number;
  warmupS: number;
  drainS: number;
  aborted: boolean;
  sessions: {
    opened: number;
    closed: number;
    failed: number;
    kinds: Record<
      SessionKind,
      { opened: number; closed: number; failed: number; overheadMs: { p50: number; p99: number } }
    >;
  };
  failures: Failure[];
  series: Row[];
  checkpoints: {
    idle: DaemonSample;
    warmupSettled?: DaemonSample;
    endSettled?: DaemonSample;
    drained: DaemonSample & { settleS: number; liveSessions: number };
  };
  daemonStderr: { count: number; first: string[]; last: string[] };
  summary: {
    rss: Metric;
    heapUsed: Metric;
    external: Metric;
    fds: Metric;
    handles: Metric;
    lag: { afterWarmup: Lag; end: Lag; whole: Lag };
    fixtureLag: { max: number };
    cpuPct: number;
    runqWaitPct: number;
    generatorLag: { p99: number; max: number };
    counts: Record<'start' | 'afterWarmup' | 'end', { opened: number; failed: number } | undefined>;
    fdsLeft: number;
    handlesLeft: number;
    settledHeapGrowth: number;
    goals: {
      memory: { goal: string; met: boolean };
      failures: { goal: string; met: boolean; count: number };
    };
  };
}

export interface SoakHooks {
  log?: (text: string) => void;
  row?: (row: Row) => void;
  failure?: (f: Failure) => void;
  signal?: AbortSignal;
}

export const KINDS: Kind[];
export const FD_SLACK: number;
export const ROW_HEADER: string;
export const USAGE: string;
export const description: string;
export function defaultOptions(): SoakOptions;
export function parseArgs(argv: string[]): SoakOptions & { help?: boolean };
export function checkOptions(given: Partial<SoakOptions>): SoakOptions & { interval: number; seed: number };
export function soak(options: Partial<SoakOptions>, hooks?: SoakHooks): Promise<SoakResult>;
export function summarize(r: Omit<SoakResult, 'summary'>): SoakResult['summary'];
export function formatRow(row: Row): string;
export function formatSummary(r: SoakResult): string;
export function formatFailure(f: Failure): string;
export function run(argv: string[]): Promise<void>;
