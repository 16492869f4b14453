/**
 * Just enough SQL lexing to see the statements the gateway must check before
 * a server runs them: `USE db` (re-authorized like COM_INIT_DB) and
 * `LOAD DATA|XML LOCAL` (refused). Quotes and comments are respected; the
 * contents of executable comments (`/*! ... *\/`, `/*M! ... *\/`) count as
 * code, because the server runs them.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  /** Inside an executable comment, whose closing marker is dropped. */
  let execComment = false;
  const n = sql.length;
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === "'" || c === '"' || c === '`') {
      const end = quoteEnd(sql, i, c);
      cur += sql.slice(i, end);
      i = end;
      continue;
    }
    if (c === '/' && next === '*') {
      const m = /^\/\*M?!\d{0,6}/.exec(sql.slice(i, i + 10));
      if (m && !execComment) {
        execComment = true;
        cur += ' ';
        i += m[0].length;
        continue;
      }
      const end = sql.indexOf('*/', i + 2);
      cur += ' ';
      i = end < 0 ? n : end + 2;
      continue;
    }
    if (c === '*' && next === '/' && execComment) {
      execComment = false;
      cur += ' ';
      i += 2;
      continue;
    }
    if (c === '#' || (c === '-' && next === '-' && /[\s]/.test(sql[i + 2] ?? ' '))) {
      const end = sql.indexOf('\n', i);
      cur += ' ';
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (c === ';') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      i++;
      continue;
    }
    cur += c;
    i++;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function quoteEnd(sql: string, start: number, q: string): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (c === '\\' && q !== '`') {
      i += 2;
      continue;
    }
    if (c === q) {
      if (sql[i + 1] === q) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return sql.length;
}

/** The database a `USE` statement switches to, or undefined for any other statement. */
export function useTarget(statement: string): string | undefined {
  const m = /^use(?:\s+|(?=`))([\s\S]+)$/i.exec(statement.trim());
  if (!m) return undefined;
  const arg = (m[1] as string).trim();
  if (arg.startsWith('`')) {
    const end = quoteEnd(arg, 0, '`');
    return arg.slice(1, end - 1).replace(/``/g, '`');
  }
  if (arg.startsWith("'") || arg.startsWith('"')) {
    const q = arg[0] as string;
    const end = quoteEnd(arg, 0, q);
    return arg.slice(1, end - 1);
  }
  return arg.split(/\s/)[0];
}

export function isLoadDataLocal(statement: string): boolean {
  return /^\s*load\s+(?:data|xml)\s+(?:(?:low_priority|concurrent)\s+)?local\b/i.test(statement);
}

/** What the relay must check in one COM_QUERY (or COM_STMT_PREPARE) text. */
export function inspectQuery(sql: string): { useDatabases: string[]; loadDataLocal: boolean } {
  const useDatabases: string[] = [];
  let loadDataLocal = false;
  // Fast path: most queries mention neither keyword.
  if (!/use|local/i.test(sql)) return { useDatabases, loadDataLocal };
  for (const s of splitStatements(sql)) {
    const db = useTarget(s);
    if (db !== undefined) useDatabases.push(db);
    if (isLoadDataLocal(s)) loadDataLocal = true;
  }
  return { useDatabases, loadDataLocal };
}
