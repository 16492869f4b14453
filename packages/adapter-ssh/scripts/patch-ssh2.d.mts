// Types for the tests of scripts/patch-ssh2.mjs (a plain script: it runs at install, before any build).
export interface Hunk {
  oldStart: number;
  old: string[];
  new: string[];
}
export interface PatchFile {
  path: string;
  hunks: Hunk[];
}
export function parsePatch(text: string): PatchFile[];
export function applyFile(text: string, file: PatchFile): string | null;
