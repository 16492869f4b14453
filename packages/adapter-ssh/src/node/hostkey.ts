import { GatehouseError, parseSshCertificate } from '@gatehouse/core';
import type { ParsedKey } from 'ssh2';
import ssh2 from 'ssh2';

/** A fresh Ed25519 host key in OpenSSH form (what ssh2's Server parses). */
export function generateHostKey(comment = 'gatehouse node'): { privateKey: string; publicKey: string } {
  const kp = ssh2.utils.generateKeyPairSync('ed25519', { comment });
  return { privateKey: kp.private, publicKey: kp.public.trim() };
}

export function parseHostKey(privateKey: string): ParsedKey {
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      'the node host key is not a private key ssh2 can read',
      {
        hint: 'Use an OpenSSH-format Ed25519 key (ssh-keygen -t ed25519) or let the node generate one.',
        ...(key instanceof Error ? { cause: key } : {}),
      },
    );
  }
  return key;
}

/** "ssh-ed25519 AAAA..." of a parsed key. */
export function publicKeyLine(key: ParsedKey): string {
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

/**
 * Checks that `certLine` is a host certificate for `key` and returns its blob.
 * ssh2 (with the adapter's patch) offers it when a host key entry is
 * `{ key, certificate }`, preferring it over the plain key, and signs the
 * key exchange with the plain algorithm as OpenSSH expects.
 */
export function hostCertificateBlob(key: ParsedKey, certLine: string): Buffer {
  const cert = parseSshCertificate(certLine);
  if (cert.type !== 'host') {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', 'the node host certificate is not a host certificate');
  }
  if (!cert.publicKey.equals(key.getPublicSSH())) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      'the node host certificate does not certify the host key',
      {
        hint: 'Issue the host certificate for this host key (or re-join the node).',
      },
    );
  }
  return Buffer.from(cert.blob);
}
