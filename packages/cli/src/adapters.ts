import { kube } from '@gatehouse/adapter-k8s';
import { mysql } from '@gatehouse/adapter-mysql';
import { postgres } from '@gatehouse/adapter-postgres';
import { rdp } from '@gatehouse/adapter-rdp';
import { ssh } from '@gatehouse/adapter-ssh';
import { builtinNode } from '@gatehouse/adapter-ssh/node';
import type { Adapter, GatehouseConfig } from '@gatehouse/core';

/**
 * The protocol adapters `gatehouse start` wires into the gateway (the CLI is
 * the one place that depends on adapters; DESIGN.md "Packages").
 */
export function defaultAdapters(_config: GatehouseConfig, opts: { embedded: boolean }): Adapter[] {
  const adapters: Adapter[] = [];
  adapters.push(postgres());
  adapters.push(mysql());
  adapters.push(kube());
  adapters.push(rdp());
  adapters.push(ssh());
  // The embedded quick start also serves this machine as an SSH node (on a
  // free loopback port, registered as <hostname> with label builtin=true).
  if (opts.embedded) adapters.push(builtinNode());
  return adapters;
}
