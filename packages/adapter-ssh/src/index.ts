import type { Adapter } from '@gatehouse/core';
import { type SshAdapterOptions, SshProxy } from './adapter.js';

export type { SshAdapterOptions } from './adapter.js';
export { type SftpAuditRecord, SftpTracker } from './sftp-audit.js';
export { assertSsh2Patched, withCertificate } from './ssh2.js';
export { connectUpstream, type UpstreamOptions } from './upstream.js';
export { WireError } from './wire/reader.js';
export { decodeSftp, SFTP, SftpFramer, type SftpMessage } from './wire/sftp.js';
export {
  encodeTargetReply,
  encodeTargetRequest,
  TARGET_MAGIC,
  type TargetReply,
  TargetReplyParser,
  type TargetRequest,
  TargetRequestParser,
} from './wire/target.js';

/**
 * The SSH adapter: `gw.use(ssh())`. Fronts SSH on the gateway's port and
 * inside TLS (ALPN gatehouse-ssh), terminates each user connection to a
 * registered node, authorizes it through core, and re-originates to the node
 * with a short-lived certificate, recording and auditing on the way.
 */
export function ssh(opts: SshAdapterOptions = {}): Adapter {
  let proxy: SshProxy | undefined;
  return {
    name: 'ssh',
    register(ctx) {
      proxy = new SshProxy(ctx, opts);
      proxy.register();
    },
    async close() {
      await proxy?.close();
    },
  };
}
