import { readFile } from 'node:fs/promises';
import { GatehouseError } from '../errors.js';

/** The first line of a secret file the config names under `key` (a password, a client secret). */
export async function readSecretFile(file: string, key: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split(/\r?\n/)[0] ?? '';
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read secret file ${file}`, {
      cause,
      hint: `check the path in ${key}`,
    });
  }
}
