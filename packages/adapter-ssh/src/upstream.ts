import type { Duplex } from 'node:stream';
import {
  type Clock,
  type Dialer,
  GatehouseError,
  type NodeSpec,
  nodeHostPort,
  parseSshCertificate,
  verifySshCertificate,
} from '@gatehouse/core';
import { Client, type ConnectConfig, type ForwardedAgent, type ParsedKey } from './ssh2.js';

export interface UpstreamOptions {
  dialer: Dialer;
  clock: Clock;
  node: NodeSpec;
  login: string;
  /** The proxy's key carrying a user certificate for `login`. */
  key: ParsedKey;
  /** Host CA public keys (OpenSSH lines) whose host certificates the proxy accepts for this node. */
  hostCaKeys: string[];
  timeoutMs?: number;
  /** Relays the node's agent channels to the user's client once a session asked for `ssh -A`. */
  agent?: ForwardedAgent;
}

/** Only host certificates are accepted: a plain host key cannot be tied to the node's name. */
const HOST_CERT_ALGOS = ['ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com'];

/**
 * ssh2 Client settings for every SSH connection the gateway opens itself
 * (to a node; to its own proxy for the web terminal): one publickey attempt
 * with `key` (a certificate for `login`), and only a host certificate from
 * `hostCaKeys` naming one of `hostNames` is accepted (why not goes to
 * `onHostProblem`).
 */
export function certClientConfig(o: {
  sock: Duplex;
  login: string;
  key: ParsedKey;
  timeoutMs: number;
  hostCaKeys: string[];
  hostNames: string[];
  clock: Clock;
  onHostProblem(problem: string): void;
}): ConnectConfig {
  let triedAuth = false;
  return {
    sock: o.sock as never,
    username: o.login,
    readyTimeout: o.timeoutMs,
    keepaliveInterval: 30_000,
    algorithms: { serverHostKey: HOST_CERT_ALGOS as never },
    hostVerifier: (key: Buffer) => {
      try {
        const cert = verifySshCertificate(parseSshCertificate(key), o.hostCaKeys, o.clock.now(), {
          type: 'host',
        });
        if (!cert.principals.some((p) => o.hostNames.includes(p.toLowerCase()))) {
          o.onHostProblem(
            `its host certificate names ${cert.principals.join(', ')}, not ${o.hostNames.join(' or ')}`,
          );
          return false;
        }
        return true;
      } catch (err) {
        o.onHostProblem(err instanceof Error ? err.message : String(err));
        return false;
      }
    },
    authHandler: (_methods, _partial, next) => {
      if (triedAuth) return next(false as never);
      triedAuth = true;
      next({ type: 'publickey', username: o.login, key: o.key } as never);
    },
  };
}

/**
 * Opens the proxy's own SSH connection to a node: dialed through the
 * gateway's Dialer, the node must present a host certificate from a trusted
 * host CA naming the node (or its address), and the proxy authenticates with
 * a freshly minted user certificate for the login.
 */
export async function connectUpstream(o: UpstreamOptions): Promise<InstanceType<typeof Client>> {
  const { host, port } = nodeHostPort(o.node);
  const timeoutMs = o.timeoutMs ?? 15_000;
  const sock = await o.dialer.dial({ host, port }, { timeoutMs });
  const client = new Client();
  let hostProblem: string | undefined;
  return new Promise((resolve, reject) => {
    const fail = (err: Error & { level?: string }) => {
      client.removeAllListeners('ready');
      client.end();
      sock.destroy();
      if (hostProblem) {
        reject(
          new GatehouseError(
            'GH_ERR_UPSTREAM_UNAVAILABLE',
            `node "${o.node.name}" failed host verification: ${hostProblem}`,
            {
              // A certificate from a host CA key a rotation removed looks the same: say how each kind of node gets a new one.
              hint:
                'give the node a host certificate from the Gatehouse host CA naming the node: an OpenSSH node with ' +
                `gatehouse nodes configure ${o.node.name} --renew --apply (HostCertificate in sshd_config); ` +
                'a node service (gatehouse node start) that missed a host CA rotation joins again with a new token (gatehouse tokens add --type node)',
              details: { reason: 'host_key' },
            },
          ),
        );
      } else if (err.level === 'client-authentication') {
        reject(
          new GatehouseError(
            'GH_ERR_UPSTREAM_UNAVAILABLE',
            `node "${o.node.name}" refused Gatehouse's certificate for login "${o.login}"`,
            {
              hint: 'check that the login exists on the node and its sshd trusts the user CA (TrustedUserCAKeys from gatehouse ca export --format sshd)',
              details: { reason: 'upstream_auth' },
            },
          ),
        );
      } else {
        reject(
          new GatehouseError(
            'GH_ERR_UPSTREAM_UNAVAILABLE',
            `cannot open SSH to node "${o.node.name}" (${host}:${port}): ${err.message}`,
            {
              hint: 'check that the node is running and reachable from the gateway',
              cause: err,
              details: { reason: 'unreachable' },
            },
          ),
        );
      }
    };
    client.once('error', fail);
    client.once('ready', () => {
      client.removeListener('error', fail);
      // Errors after the handshake surface as 'close' on the session; keep one listener so none is unhandled.
      client.on('error', () => {});
      resolve(client);
    });
    client.connect({
      ...certClientConfig({
        sock,
        login: o.login,
        key: o.key,
        timeoutMs,
        hostCaKeys: o.hostCaKeys,
        hostNames: [o.node.name, host.toLowerCase()],
        clock: o.clock,
        onHostProblem: (p) => {
          hostProblem = p;
        },
      }),
      // Only offered to the node per session (exec/shell `agentForward`), never used to authenticate.
      ...(o.agent ? { agent: o.agent as never } : {}),
    });
  });
}
