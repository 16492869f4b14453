import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

// (@gatehouse/core/testing has the same two helpers, but core depends on
// audit, not the other way round; the bench imports this file from dist.)

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once rsyslogd accepts on the port; rejects if it exits first or does not listen in time. */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`rsyslogd exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`rsyslogd did not listen on ${port}`);
}

export const RSYSLOGD = '/usr/sbin/rsyslogd';

/** One line rsyslog wrote: which input took it, the MSGID, the structured data and the MSG (our JSON). */
export interface SyslogLine {
  input: string;
  msgid: string;
  sd: string;
  msg: string;
}

export interface Rsyslog {
  tcpPort: number;
  tlsPort: number;
  udpPort: number;
  /** Everything written to the output file so far, parsed. */
  lines(): SyslogLine[];
  /** Stops rsyslogd (SIGTERM, waits for it to exit); `start` brings it back on the same ports. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * A real rsyslogd (Debian package rsyslog + rsyslog-openssl), not daemonized,
 * with its own config in `dir`: imtcp (plain), imtcp with the ossl stream
 * driver (TLS, server certificate from the given files) and imudp, all on
 * loopback, everything written to `dir/out.log` as
 * `INPUTNAME MSGID STRUCTURED-DATA MSG`.
 */
export async function startRsyslog(opts: {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Where rsyslogd writes what it receives; default `dir/out.log` (the bench uses /dev/null). */
  out?: string;
}): Promise<Rsyslog> {
  const [tcpPort, tlsPort, udpPort] = [await freePort(), await freePort(), await freePort()];
  const out = opts.out ?? join(opts.dir, 'out.log');
  const conf = join(opts.dir, 'rsyslog.conf');
  writeFileSync(
    conf,
    [
      `global(workDirectory="${opts.dir}" maxMessageSize="64k"`,
      `  defaultNetstreamDriverCAFile="${opts.caFile}"`,
      `  defaultNetstreamDriverCertFile="${opts.certFile}"`,
      `  defaultNetstreamDriverKeyFile="${opts.keyFile}")`,
      'module(load="imtcp" maxSessions="200")',
      'module(load="imudp")',
      `input(type="imtcp" address="127.0.0.1" port="${tcpPort}" name="tcp")`,
      `input(type="imtcp" address="127.0.0.1" port="${tlsPort}" name="tls" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")`,
      `input(type="imudp" address="127.0.0.1" port="${udpPort}" name="udp")`,
      'template(name="line" type="string" string="%inputname% %msgid% %structured-data% %msg%\\n")',
      `*.* action(type="omfile" file="${out}" template="line")`,
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async () => {
    const c = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', join(opts.dir, 'rsyslogd.pid')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    c.stdout?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    c.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child = c;
    try {
      await waitForPort(tcpPort, c);
      await waitForPort(tlsPort, c);
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${stderr}`);
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return {
    tcpPort,
    tlsPort,
    udpPort,
    start,
    stop,
    lines() {
      if (!existsSync(out)) return [];
      const text = readFileSync(out, 'utf8');
      const lines: SyslogLine[] = [];
      for (const l of text.split('\n')) {
        if (l === '') continue;
        // INPUT MSGID [SD…] MSG; the SD ends at the first `] ` not escaped (our values escape ] as \]).
        const m = /^(\S+) (\S+) (\[(?:[^\]\\]|\\.)*\]) (.*)$/.exec(l);
        if (!m) throw new Error(`rsyslog wrote a line the test cannot read: ${l}`);
        lines.push({ input: m[1]!, msgid: m[2]!, sd: m[3]!, msg: m[4]! });
      }
      return lines;
    },
  };
}
