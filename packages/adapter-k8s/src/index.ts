import { KubeAdapter, type KubeAdapterOptions } from './adapter.js';

export { clusterFromServerName, KubeAdapter, type KubeAdapterOptions, kubeServerName } from './adapter.js';
export {
  EXEC_API_VERSION,
  execCredential,
  execCredentialVersion,
  type KubeconfigEntry,
  writeKubeconfigEntry,
} from './kubeconfig.js';
export { impersonationHeaders } from './session.js';
export { type KubeRequestInfo, parseKubeRequest } from './wire/apipath.js';
export { type KubeStatus, kubeStatus } from './wire/status.js';

/** The Kubernetes adapter: `gw.use(kube({ clusters: [...] }))`. */
export function kube(opts: KubeAdapterOptions = {}): KubeAdapter {
  return new KubeAdapter(opts);
}
