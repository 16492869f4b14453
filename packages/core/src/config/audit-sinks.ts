import { readFile } from 'node:fs/promises';
import type { AuditSink, ExportSinkConfig } from '@gatehouse/audit';
import { GatehouseError } from '../errors.js';
import type { AuditSinkConfigEntry } from './load.js';
import { splitHostPort } from './load.js';

/** An entry of `createGateway({ auditSinks })`: a sink object, or an export sink described as data. */
export type AuditSinkOption = AuditSink | ExportSinkConfig;

export function isExportSinkConfig(s: AuditSinkOption): s is ExportSinkConfig {
  return (
    typeof (s as Partial<AuditSink>).write !== 'function' &&
    typeof (s as { type?: unknown }).type === 'string'
  );
}

/** Reads a `*_file` the config names; the error names the key so the user knows which line to fix. */
async function readSecret(file: string, key: string, trim: boolean): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${key}: cannot read ${file}`, {
      cause,
      hint: `check the path in ${key} (the file must be readable by the gateway)`,
    });
  }
  // Secrets are usually written with a trailing newline; certificates keep theirs.
  const value = trim ? text.trim() : text;
  if (value === '') {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${key}: ${file} is empty`, {
      hint: `put the value in ${file}`,
    });
  }
  return value;
}

/**
 * Turns the config file's `audit.sinks` entries into what
 * `createExportSink` takes: snake_case to camelCase, and every `*_file`
 * read (CA, client certificate, password, API key, webhook secret), so
 * secrets never have to be written into the config itself.
 */
export async function resolveAuditSinks(
  entries: readonly AuditSinkConfigEntry[],
): Promise<ExportSinkConfig[]> {
  const out: ExportSinkConfig[] = [];
  const names = new Map<string, number>();
  for (const [i, e] of entries.entries()) {
    const key = (k: string) => `audit.sinks.${i}.${k}`;
    // The name keys the sink's spool file and its alarms: two sinks cannot share one.
    const name = e.name ?? e.type;
    const other = names.get(name);
    if (other !== undefined) {
      throw new GatehouseError(
        'GH_ERR_CONFIG_INVALID',
        `${key('name')}: audit.sinks.${other} is already named "${name}"`,
        { hint: 'give each sink of the same type its own name (letters, digits, dots, dashes, underscores)' },
      );
    }
    names.set(name, i);
    const common = {
      ...(e.name ? { name: e.name } : {}),
      ...(e.max_spool_bytes !== undefined ? { maxSpoolBytes: e.max_spool_bytes } : {}),
      ...(e.on_full ? { onFull: e.on_full } : {}),
      ...(e.batch_max !== undefined ? { batchMax: e.batch_max } : {}),
      ...(e.ca_file ? { ca: await readSecret(e.ca_file, key('ca_file'), false) } : {}),
    };
    switch (e.type) {
      case 'syslog': {
        const { host, port } = splitHostPort(e.addr);
        if ((e.cert_file === undefined) !== (e.key_file === undefined)) {
          throw new GatehouseError(
            'GH_ERR_CONFIG_INVALID',
            `${key('cert_file')}: give both cert_file and key_file, or neither`,
            {
              hint: 'a client certificate needs its key',
            },
          );
        }
        if (e.protocol === 'tls' && !e.ca_file) {
          throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${key('ca_file')}: protocol tls needs ca_file`, {
            hint: "name the CA (PEM file) that signed the receiver's certificate; it is verified",
          });
        }
        out.push({
          type: 'syslog',
          ...common,
          protocol: e.protocol,
          host,
          port,
          ...(e.server_name ? { serverName: e.server_name } : {}),
          ...(e.cert_file ? { cert: await readSecret(e.cert_file, key('cert_file'), false) } : {}),
          ...(e.key_file ? { key: await readSecret(e.key_file, key('key_file'), false) } : {}),
          ...(e.facility !== undefined ? { facility: e.facility } : {}),
          ...(e.app_name ? { appName: e.app_name } : {}),
          ...(e.hostname ? { hostname: e.hostname } : {}),
          ...(e.sd_id ? { sdId: e.sd_id } : {}),
          ...(e.max_udp_bytes !== undefined ? { maxUdpBytes: e.max_udp_bytes } : {}),
        });
        break;
      }
      case 'loki':
        out.push({
          type: 'loki',
          ...common,
          url: e.url,
          ...(e.encoding ? { encoding: e.encoding } : {}),
          ...(e.labels ? { labels: e.labels } : {}),
          ...(e.tenant ? { tenant: e.tenant } : {}),
        });
        break;
      case 'elasticsearch':
        if (e.password_file && e.username === undefined) {
          throw new GatehouseError(
            'GH_ERR_CONFIG_INVALID',
            `${key('username')}: password_file needs a username`,
            {
              hint: 'add username, or use api_key_file instead',
            },
          );
        }
        out.push({
          type: 'elasticsearch',
          ...common,
          url: e.url,
          ...(e.index ? { index: e.index } : {}),
          ...(e.username !== undefined ? { username: e.username } : {}),
          ...(e.password_file
            ? { password: await readSecret(e.password_file, key('password_file'), true) }
            : {}),
          ...(e.api_key_file ? { apiKey: await readSecret(e.api_key_file, key('api_key_file'), true) } : {}),
        });
        break;
      case 'webhook':
        out.push({
          type: 'webhook',
          ...common,
          url: e.url,
          secret: await readSecret(e.secret_file, key('secret_file'), true),
        });
        break;
    }
  }
  return out;
}
