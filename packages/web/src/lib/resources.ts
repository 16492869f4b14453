/**
 * Resource lists (nodes, databases, Kubernetes clusters) as the Resources
 * page shows them. Filtering, sorting and paging run in the browser over the
 * whole list: the list APIs return every resource the user may reach, and a
 * linear pass over 10,000 entries is a few milliseconds, so no server paging
 * is needed at that size (see the README).
 */
export type ResourceKind = 'node' | 'db' | 'kube' | 'desktop';

export interface Resource {
  kind: ResourceKind;
  name: string;
  labels: Record<string, string>;
  description?: string | undefined;
  /** Protocol or address shown next to the name. */
  detail?: string | undefined;
  /** Database protocol, for the connect commands. */
  protocol?: string | undefined;
  /** Database users the caller's roles allow (user listings only; admins see every database without it). */
  dbUsers?: string[] | undefined;
  /** Node or desktop logins the caller's roles allow there (user listings only; a desktop lists the stored ones). */
  logins?: string[] | undefined;
}

export interface LabelFilter {
  key: string;
  /** Undefined: the key must be present with any value. */
  value?: string | undefined;
}

/** "env=prod" or "env" (any value); undefined for an empty or malformed filter. */
export function parseLabelFilter(text: string): LabelFilter | undefined {
  const t = text.trim();
  if (!t) return undefined;
  const i = t.indexOf('=');
  if (i === -1) return { key: t };
  const key = t.slice(0, i).trim();
  if (!key) return undefined;
  return { key, value: t.slice(i + 1).trim() };
}

export function formatLabelFilter(f: LabelFilter): string {
  return f.value === undefined ? f.key : `${f.key}=${f.value}`;
}

/** Lower-cased text a search term may match: name, kind, detail, description, labels. */
function haystack(r: Resource): string {
  const labels = Object.entries(r.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${r.name} ${r.kind} ${r.detail ?? ''} ${r.description ?? ''} ${labels}`.toLowerCase();
}

/**
 * Every whitespace-separated search term must occur somewhere (AND), and every
 * label filter must match exactly.
 */
export function filterResources(
  items: readonly Resource[],
  opts: { search?: string; labels?: readonly LabelFilter[] },
): Resource[] {
  const terms = (opts.search ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const labels = opts.labels ?? [];
  return items.filter((r) => {
    for (const f of labels) {
      const v = r.labels[f.key];
      if (v === undefined) return false;
      if (f.value !== undefined && v !== f.value) return false;
    }
    if (terms.length === 0) return true;
    const h = haystack(r);
    return terms.every((t) => h.includes(t));
  });
}

export type SortKey = 'name' | 'kind' | 'detail';
export type SortDir = 'asc' | 'desc';

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

export function sortResources(items: readonly Resource[], key: SortKey, dir: SortDir): Resource[] {
  const sign = dir === 'asc' ? 1 : -1;
  return [...items].sort(
    (a, b) => sign * (collator.compare(a[key] ?? '', b[key] ?? '') || collator.compare(a.name, b.name)),
  );
}

export interface Page<T> {
  items: T[];
  /** 0-based, clamped into range. */
  page: number;
  pages: number;
  total: number;
}

export function paginate<T>(items: readonly T[], page: number, size: number): Page<T> {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(0, Math.floor(page)), pages - 1);
  return { items: items.slice(p * size, p * size + size), page: p, pages, total: items.length };
}

/** key -> sorted values seen, for the label filter picker. */
export function labelIndex(items: readonly Resource[]): Map<string, string[]> {
  const m = new Map<string, Set<string>>();
  for (const r of items) {
    for (const [k, v] of Object.entries(r.labels)) {
      let s = m.get(k);
      if (!s) {
        s = new Set();
        m.set(k, s);
      }
      s.add(v);
    }
  }
  return new Map(
    [...m.entries()]
      .sort(([a], [b]) => collator.compare(a, b))
      .map(([k, s]) => [k, [...s].sort(collator.compare)]),
  );
}

export interface ConnectStep {
  /** What the step does. */
  label: string;
  command: string;
}

/** Quotes a shell word only when it needs it. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** libpq's service name as the CLI writes it: `"service=NAME"`. */
function serviceArg(name: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(name) ? `"service=${name}"` : shellWord(`service=${name}`);
}

/** The exact CLI commands that connect to a resource. */
export function connectCommands(r: Resource, opts: { login?: string | undefined } = {}): ConnectStep[] {
  const name = shellWord(r.name);
  switch (r.kind) {
    case 'db': {
      const choose =
        r.dbUsers && r.dbUsers.length > 1 ? ` (add --db-user: your roles allow ${r.dbUsers.join(', ')})` : '';
      const login = {
        label: `Get a certificate for the database${choose}`,
        command: `gatehouse db login ${name}`,
      };
      if (r.protocol === 'postgres') {
        return [login, { label: 'Connect with psql', command: `psql ${serviceArg(r.name)}` }];
      }
      return [
        login,
        { label: 'Connect with the mariadb/mysql client', command: `gatehouse db connect ${name}` },
      ];
    }
    case 'kube':
      return [
        { label: 'Get a certificate and a kubeconfig context', command: `gatehouse kube login ${name}` },
        { label: 'Use kubectl as usual', command: 'kubectl get pods' },
      ];
    case 'desktop':
      // Opened in the browser (the Resources page links it); native clients come with gatehouse desktops connect.
      return [];
    case 'node':
      return [
        {
          label: 'Open a shell',
          command: `gatehouse ssh ${shellWord(`${opts.login ?? 'LOGIN'}@${r.name}`)}`,
        },
      ];
    default: {
      const never: never = r.kind;
      throw new Error(`unknown resource kind ${String(never)}`);
    }
  }
}
