import { execFileSync } from 'node:child_process';
import { sign } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { GatehouseClient, GatehouseError, type NodeHostCertResponse, renewPayload } from '@gatehouse/core';
import type { Command } from 'commander';
import { durationFlag, relativeTime, splitList } from '../args.js';
import { type Ctx, trustProxy, withAdmin } from '../context.js';
import { writeFileAtomic } from '../db/files.js';
import { generateEd25519OpenSsh, readEd25519OpenSsh } from '../keys.js';
import { examples, flag, usage } from './usage.js';

/**
 * Agentless OpenSSH nodes (docs/decisions/0028-agentless-nodes.md): what an
 * sshd needs to serve Gatehouse sessions, written by `gatehouse nodes
 * configure NAME --apply` run as root on the node. The material comes from
 * the admin API (the admin's login on the node, or the data dir on the
 * gateway host), which signs only names the node owns.
 */

const BEGIN = '# BEGIN gatehouse';
const END = '# END gatehouse';
const KEY_NAME = 'gatehouse_host_ed25519_key';
const USER_CA_NAME = 'gatehouse_user_ca.pub';
/** The machine's own host keys sshd uses when its config names none (sshd(8) FILES). */
const DEFAULT_HOST_KEYS = ['ssh_host_ecdsa_key', 'ssh_host_ed25519_key', 'ssh_host_rsa_key'];

export interface NodeFiles {
  keyDir: string;
  hostKey: string;
  hostCert: string;
  userCa: string;
  /** Where the cluster is, for --renew (NodeState). */
  state: string;
}

/** What `--renew` needs to reach the cluster with no admin login (written by --apply). */
interface NodeState {
  node: string;
  cluster: string;
  proxy: string;
  ca_pin: string;
  /** Every host CA pin the gateway last named (both during a host CA rotation); absent in older state files. */
  ca_pins?: string[];
}

export function nodeFiles(sshdConfig: string, keyDir?: string): NodeFiles {
  const dir = resolve(keyDir ?? dirname(sshdConfig));
  return {
    keyDir: dir,
    hostKey: join(dir, KEY_NAME),
    hostCert: join(dir, `${KEY_NAME}-cert.pub`),
    userCa: join(dir, USER_CA_NAME),
    state: join(dir, 'gatehouse_node.json'),
  };
}

/** An absolute `echo` sshd may run (root-owned, like every AuthorizedPrincipalsCommand must be). */
function echoPath(): string {
  return ['/usr/bin/echo', '/bin/echo'].find((p) => existsSync(p)) ?? '/bin/echo';
}

/**
 * The managed block, first in sshd_config: sshd keeps the FIRST value of
 * most keywords and a Match block runs to the end of the file, so the top is
 * the one place these lines always take effect. Without HostKey lines of its
 * own sshd would use the machine's default keys; naming ours would drop
 * them, so they are named too (clients that know them keep working).
 */
export function managedBlock(o: {
  node: string;
  files: NodeFiles;
  prefix: string;
  existingConfig: string;
}): string {
  const outside = stripManaged(o.existingConfig);
  const namesHostKeys = /^\s*HostKey\s/im.test(outside);
  const defaults = namesHostKeys
    ? []
    : DEFAULT_HOST_KEYS.map((k) => join(dirname(o.files.hostKey), k)).filter((p) => existsSync(p));
  return [
    `${BEGIN}: written by \`gatehouse nodes configure ${o.node}\`; edits here are overwritten`,
    `HostKey ${o.files.hostKey}`,
    `HostCertificate ${o.files.hostCert}`,
    ...defaults.map((k) => `HostKey ${k}`),
    `TrustedUserCAKeys ${o.files.userCa}`,
    // Only the proxy's per-session certificates name gatehouse-proxy:LOGIN; a
    // user's own login certificate cannot skip the gateway's roles and audit.
    `AuthorizedPrincipalsCommand ${echoPath()} ${o.prefix}%u`,
    'AuthorizedPrincipalsCommandUser nobody',
    END,
    '',
  ].join('\n');
}

function stripManaged(text: string): string {
  const start = text.indexOf(BEGIN);
  if (start < 0) return text;
  const end = text.indexOf(END, start);
  if (end < 0) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `the sshd config has "${BEGIN}" but no "${END}"`, {
      hint: 'remove the broken gatehouse block by hand, then run nodes configure again',
    });
  }
  const after = text.indexOf('\n', end);
  return text.slice(0, start) + (after < 0 ? '' : text.slice(after + 1));
}

/** `text` with the managed block replaced (or put first). */
export function withManagedBlock(text: string, block: string): string {
  return block + stripManaged(text);
}

/** sshd's PidFile (the config's, else its default), for the reload. */
function sshdPidFile(configText: string): string {
  const m = /^\s*PidFile\s+(\S+)/im.exec(stripManaged(configText));
  return m?.[1] ?? '/run/sshd.pid';
}

/** Checks the config as sshd will read it: `sshd -t` exits non-zero and says why. */
function testSshdConfig(sshd: string, config: string): void {
  try {
    execFileSync(sshd, ['-t', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `sshd refuses the new config ${config}: ${why}`, {
      cause: e,
      hint: 'the previous config was put back; fix what sshd names and run nodes configure again',
    });
  }
}

/** SIGHUP to the running sshd (it re-reads its config; open sessions stay). */
function reloadSshd(pidFile: string): string {
  let pid = Number.NaN;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    // No pid file: sshd is not running (said below).
  }
  if (!(pid > 1)) return `sshd is not running (no pid in ${pidFile}): start it to serve Gatehouse sessions`;
  try {
    process.kill(pid, 'SIGHUP');
  } catch (e) {
    return `could not signal sshd (pid ${pid} from ${pidFile}): ${(e as Error).message}; reload it by hand`;
  }
  return `sshd (pid ${pid}) reloaded`;
}

interface ConfigureOpts {
  apply?: boolean;
  renew?: boolean;
  sshdConfig: string;
  keyDir?: string;
  ttl?: string;
  sshd: string;
}

/** Writes every file and the sshd_config block; a config sshd refuses is put back. */
function applyFiles(
  o: ConfigureOpts,
  files: NodeFiles,
  res: NodeHostCertResponse,
  key: { privateKey: string; publicKey: string } | undefined,
  block: string,
  configText: string,
): string {
  if (key) {
    writeFileAtomic(files.hostKey, key.privateKey, 0o600);
    writeFileAtomic(`${files.hostKey}.pub`, `${key.publicKey}\n`);
  }
  writeFileAtomic(files.hostCert, `${res.cert}\n`);
  writeFileAtomic(files.userCa, res.user_ca_keys);
  const next = withManagedBlock(configText, block);
  if (next !== configText) {
    writeFileAtomic(o.sshdConfig, next);
    try {
      testSshdConfig(o.sshd, o.sshdConfig);
    } catch (e) {
      writeFileAtomic(o.sshdConfig, configText);
      throw e;
    }
  } else {
    testSshdConfig(o.sshd, o.sshdConfig);
  }
  return reloadSshd(sshdPidFile(next));
}

function renewLine(name: string, o: ConfigureOpts, self: string): string {
  const flags = [
    `--sshd-config ${o.sshdConfig}`,
    ...(o.keyDir ? [`--key-dir ${o.keyDir}`] : []),
    ...(o.ttl ? [`--ttl ${o.ttl}`] : []),
  ].join(' ');
  return `17 3 * * * root ${self} nodes configure ${name} --renew --apply ${flags}`;
}

export function defineNodesConfigure(nodes: Command, ctx: Ctx): void {
  nodes
    .command('configure')
    .description(
      "make this machine's OpenSSH sshd a Gatehouse node: host key + certificate, user CA, login mapping, reload",
    )
    .argument('<name>', 'the node, as registered with gatehouse nodes add')
    .option(
      '--apply',
      'write the files and the sshd_config block, check them with sshd -t, reload sshd (root)',
    )
    .option('--renew', 'keep the host key written before and renew only its certificate')
    .option('--sshd-config <file>', 'the sshd config to change', '/etc/ssh/sshd_config')
    .option('--key-dir <dir>', "where the host key, certificate and user CA go (default: the config's dir)")
    .option(
      '--ttl <duration>',
      'host certificate lifetime (default 720h, at most 366d)',
      flag(durationFlag('--ttl')),
    )
    .option('--sshd <path>', 'the sshd binary that checks the config', '/usr/sbin/sshd')
    .addHelpText(
      'after',
      examples(`  $ gatehouse nodes add web1 --addr 10.0.0.7:22 --label env=prod
  $ gatehouse nodes configure web1                  # print what would be written
  $ sudo gatehouse nodes configure web1 --apply     # on web1, logged in as an admin
  $ sudo gatehouse nodes configure web1 --renew --apply

The node gets its material from the admin API: run it on the node as root with the
login of an admin whose roles allow update on node (gatehouse login), or on the
gateway host with --data-dir/--config. The certificate names only what the node owns:
its name, NAME.CLUSTER and the host of its registered address. --renew needs no login:
the node signs with its host key and the gateway renews a still-valid certificate
(so run it from cron before the certificate expires). sshd then accepts only
the proxy's per-session certificates (principal gatehouse-proxy:LOGIN), so users reach
the node through Gatehouse's roles, audit and recording, never around them.`),
    )
    .action(async function (this: Command, name: string, o: ConfigureOpts) {
      if (!isAbsolute(o.sshd)) throw usage('--sshd must be an absolute path', 'e.g. --sshd /usr/sbin/sshd');
      o.sshdConfig = resolve(o.sshdConfig);
      const files = nodeFiles(o.sshdConfig, o.keyDir);
      let configText = '';
      try {
        configText = readFileSync(o.sshdConfig, 'utf8');
      } catch (e) {
        if (o.apply) {
          throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read the sshd config ${o.sshdConfig}`, {
            cause: e,
            hint: 'is OpenSSH server installed? Point --sshd-config at its config file',
          });
        }
      }
      let key: { privateKey: string; publicKey: string } | undefined;
      let res: NodeHostCertResponse;
      let state: NodeState | undefined;
      if (o.renew) {
        ({ res, state } = await renewWithHostKey(ctx, name, files, o.ttl));
      } else {
        const k = generateEd25519OpenSsh(`gatehouse node ${name}`);
        key = k;
        ({ res, state } = await withAdmin(this, ctx, async (t) => ({
          res: await t.api.signNodeHostCert({
            node: name,
            public_key: k.publicKey,
            ...(o.ttl ? { ttl: o.ttl } : {}),
          }),
          state: { node: name, cluster: '', proxy: t.proxy, ca_pin: t.pin },
        })));
        state.cluster = res.cluster_name;
      }
      // The next --renew finds the proxy under any host CA trusted now (a rotation may switch it).
      if (res.host_ca_pins?.length) state.ca_pins = res.host_ca_pins;
      const block = managedBlock({
        node: name,
        files,
        prefix: res.proxy_principal_prefix,
        existingConfig: configText,
      });
      const expires = `${res.expires} (${relativeTime(new Date(res.expires), ctx.now())})`;
      const renew = renewLine(name, o, 'gatehouse');
      if (o.apply) {
        const reloaded = applyFiles(o, files, res, key, block, configText);
        if (state.proxy.endsWith(':0')) {
          ctx.err('warning: the gateway address is not known yet (port 0): --renew will not reach it\n');
        }
        writeFileAtomic(files.state, `${JSON.stringify(state, null, 2)}\n`);
        ctx.out(
          `Node ${name} of cluster ${res.cluster_name} configured:\n` +
            `  host certificate: ${files.hostCert}\n` +
            `    names:          ${res.principals.join(', ')}\n` +
            `    expires:        ${expires}\n` +
            `  user CA:          ${files.userCa}\n` +
            `  sshd config:      ${o.sshdConfig} (block "${BEGIN}")\n` +
            `  ${reloaded}\n\n` +
            `Renew the certificate before it expires, e.g. in /etc/cron.d/gatehouse-${name}:\n  ${renew}\n`,
        );
        return;
      }
      const file = (path: string, mode: string, content: string) =>
        `# ---- ${path} (mode ${mode}) ----\n${content.endsWith('\n') ? content : `${content}\n`}`;
      ctx.out(
        `# Node ${name} of cluster ${res.cluster_name}: what \`gatehouse nodes configure ${name} --apply\` writes.\n` +
          `# Host certificate names ${res.principals.join(', ')}; expires ${expires}.\n` +
          (key
            ? file(files.hostKey, '0600', key.privateKey) +
              file(`${files.hostKey}.pub`, '0644', key.publicKey)
            : '') +
          file(files.hostCert, '0644', res.cert) +
          file(files.userCa, '0644', res.user_ca_keys) +
          `# ---- first lines of ${o.sshdConfig} ----\n${block}` +
          `# then: sshd -t -f ${o.sshdConfig} && kill -HUP "$(cat ${sshdPidFile(configText)})"\n` +
          `# renewal (cron): ${renew}\n`,
      );
    });
}

/**
 * --renew: the node proves it holds the host key its current certificate
 * names, and the gateway issues the next one (no admin login: a cron job can
 * run it). The cluster's address and CA pin come from the state --apply wrote.
 */
async function renewWithHostKey(
  ctx: Ctx,
  name: string,
  files: NodeFiles,
  ttl: string | undefined,
): Promise<{ res: NodeHostCertResponse; state: NodeState }> {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `no ${what} to renew with at ${path}`, {
        cause: e,
        hint: `configure the node first (with an admin login): gatehouse nodes configure ${name} --apply`,
      });
    }
  };
  const state = JSON.parse(read(files.state, 'node state')) as NodeState;
  if (state.node !== name) {
    throw usage(
      `${files.state} is node "${state.node}"'s, not "${name}"'s`,
      `run: gatehouse nodes configure ${state.node} --renew --apply`,
    );
  }
  const cert = read(files.hostCert, 'host certificate').trim();
  const key = readEd25519OpenSsh(read(files.hostKey, 'host key'));
  const time = ctx.now().toISOString();
  const signature = sign(
    null,
    renewPayload({ cluster: state.cluster, node: name, time, cert }),
    key,
  ).toString('base64');
  const trust = await trustAnyPin(ctx, state.proxy, state.ca_pins?.length ? state.ca_pins : [state.ca_pin]);
  const client = new GatehouseClient({ proxy: state.proxy, caPem: trust.caPem });
  try {
    const res = await client.renewNodeHostCert({
      node: name,
      cert,
      time,
      signature,
      ...(ttl ? { ttl } : {}),
    });
    return { res, state };
  } finally {
    client.close();
  }
}

/**
 * The proxy verified under the first of `pins` its chain matches: during a
 * host CA rotation the node knows both keys' pins, and the proxy presents
 * the old one until update_servers and the new one after.
 */
async function trustAnyPin(ctx: Ctx, proxy: string, pins: string[]): Promise<{ caPem: string[] }> {
  let last: unknown;
  for (const caPin of pins) {
    try {
      return await trustProxy(ctx, proxy, { caPin });
    } catch (e) {
      // Only "no CA matching this pin" moves on to the next pin; anything else is the answer.
      if (!/presented no CA matching pin/.test((e as Error).message)) throw e;
      last = e;
    }
  }
  throw last;
}

/** `gatehouse ca sign --host NAME --format openssh`: a host certificate for scripts. */
export function defineCaSign(ca: Command, ctx: Ctx): void {
  ca.command('sign')
    .description('sign an SSH host key for a registered node (the names it owns only)')
    .requiredOption('--host <name>', 'the node, as registered with gatehouse nodes add')
    .requiredOption('--public-key <file>', "the node's host public key (.pub)")
    .option('--format <format>', 'output form (openssh: a -cert.pub line)', 'openssh')
    .option('--principals <names>', "names to certify, a subset of the node's own (default: all of them)")
    .option('--ttl <duration>', 'lifetime (default 720h, at most 366d)', flag(durationFlag('--ttl')))
    .option('--out <file>', 'write the certificate here instead of stdout')
    .addHelpText(
      'after',
      examples(`  $ gatehouse ca sign --host web1 --public-key /etc/ssh/ssh_host_ed25519_key.pub \\
      --out /etc/ssh/ssh_host_ed25519_key-cert.pub`),
    )
    .action(async function (
      this: Command,
      o: { host: string; publicKey: string; format: string; principals?: string; ttl?: string; out?: string },
    ) {
      if (o.format !== 'openssh') throw usage(`unknown format "${o.format}"`, 'use --format openssh');
      let publicKey: string;
      try {
        publicKey = readFileSync(o.publicKey, 'utf8').trim();
      } catch (e) {
        throw usage(
          `cannot read ${o.publicKey}: ${(e as Error).message}`,
          'pass the .pub file of the host key',
        );
      }
      const principals = splitList(o.principals);
      const res = await withAdmin(this, ctx, (t) =>
        t.api.signNodeHostCert({
          node: o.host,
          public_key: publicKey,
          ...(principals.length ? { principals } : {}),
          ...(o.ttl ? { ttl: o.ttl } : {}),
        }),
      );
      if (o.out) writeFileAtomic(o.out, `${res.cert}\n`);
      else ctx.out(`${res.cert}\n`);
    });
}
