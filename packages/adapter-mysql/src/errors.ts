import { dbDenialField, GatehouseError } from '@gatehouse/core';
import { ER, type ErrSpec } from './wire/constants.js';

export interface WireError {
  err: ErrSpec;
  message: string;
}

/**
 * Core's answer in MySQL's words: a database-name refusal is 1044
 * (ER_DBACCESS_DENIED_ERROR, 42000), every other refusal 1045
 * (ER_ACCESS_DENIED_ERROR, 28000), the codes a MySQL server itself uses.
 * The message names core's reason and hint, so the user sees which rule said no.
 */
export function denialToWire(e: unknown): WireError {
  const field = dbDenialField(e);
  if (e instanceof GatehouseError) {
    const text = `Gatehouse: ${e.message}${e.hint ? ` (${e.hint})` : ''}`;
    if (field === 'db_names' || field === 'unknown_database')
      return { err: ER.DBACCESS_DENIED, message: text };
    if (field !== undefined) return { err: ER.ACCESS_DENIED, message: text };
    if (e.code === 'GH_ERR_UPSTREAM_UNAVAILABLE') return { err: ER.UPSTREAM_UNREACHABLE, message: text };
    if (e.code === 'GH_ERR_ACCESS_DENIED' || e.code === 'GH_ERR_UNAUTHENTICATED') {
      return { err: ER.ACCESS_DENIED, message: text };
    }
    return { err: ER.UNKNOWN_ERROR, message: text };
  }
  // Anything unexpected still refuses; the text says it was not a rule.
  return {
    err: ER.ACCESS_DENIED,
    message: `Gatehouse: access check failed: ${(e as Error)?.message ?? String(e)}`,
  };
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
