import { RdpAdapter, type RdpAdapterOptions } from './adapter.js';

export { RdpAdapter, type RdpAdapterOptions } from './adapter.js';
export { type LocalFront, type LocalFrontOptions, startLocalFront } from './front.js';
export { ClientInfoRewriter, DesktopSession } from './session.js';
export * from './wire/client-info.js';
export * from './wire/rdcleanpath.js';
export * from './wire/tpkt.js';
export * from './wire/x224.js';

/** The RDP adapter: `gw.use(rdp({ desktops: [...] }))`. */
export function rdp(opts: RdpAdapterOptions = {}): RdpAdapter {
  return new RdpAdapter(opts);
}
