/**
 * Names that tell sessions apart: two shells of the same login on the same
 * node read alike, so lists add a short session id, the start time and the
 * command, and terminal tabs of the same target are numbered.
 */

/** The first 8 characters of a session id (UUIDs differ there), whole when shorter. */
export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}

/** `login@server`, or the server alone. */
export function target(s: { login?: string | undefined; server: string }): string {
  return s.login ? `${s.login}@${s.server}` : s.server;
}

/**
 * Titles with the second and later of equal ones numbered, in order:
 * ["a", "b", "a"] -> ["a", "b", "a (2)"].
 */
export function numberDuplicates(titles: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return titles.map((t) => {
    const n = (seen.get(t) ?? 0) + 1;
    seen.set(t, n);
    return n === 1 ? t : `${t} (${n})`;
  });
}
