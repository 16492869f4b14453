import { GatehouseError } from '../errors.js';

/**
 * Puts configured resources (config file, adapter options) into a registry's
 * static map: every spec is validated and checked for a taken name before
 * anything changes, so a bad entry leaves the map as it was (a SIGHUP
 * reload then keeps the running set). `remove` names the entries being
 * replaced (the previous config's).
 */
export function putStatic<T extends { name: string }>(
  map: Map<string, T>,
  specs: readonly T[],
  opts: { validate: (spec: T) => T; what: string; hint: string; remove?: readonly string[] },
): void {
  const leaving = new Set(opts.remove ?? []);
  const checked: T[] = [];
  const names = new Set<string>();
  for (const spec of specs) {
    const v = opts.validate(spec);
    if (names.has(v.name) || (map.has(v.name) && !leaving.has(v.name))) {
      throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `${opts.what} "${v.name}" is configured twice`, {
        hint: opts.hint,
      });
    }
    names.add(v.name);
    checked.push(v);
  }
  for (const name of leaving) map.delete(name);
  for (const v of checked) map.set(v.name, v);
}
