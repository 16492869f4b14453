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
export function defaultAdapters(config: GatehouseConfig): Adapter[] {
  const adapters: Adapter[] = [];
  adapters.push(postgres());
  adapters.push(mysql());
  adapters.push(kube());
  adapters.push(rdp());
  adapters.push(ssh());
  // builtin_node (on in the embedded quick start): this machine as an SSH
  // node too, on a free loopback port, registered as <hostname> with label builtin=true.
  if (config.builtinNode) adapters.push(builtinNode());
  return adapters;
}
