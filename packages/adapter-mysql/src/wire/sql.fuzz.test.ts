import { fuzz } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inspectQuery, LEX_MODES, type LexMode, splitStatements, useTarget } from './sql.js';

/*
 * A small grammar of what clients send: fillers are statements that must
 * hide nothing; targets are USE and LOAD DATA LOCAL in the forms the server
 * accepts. Quotes, comments and executable comments carry text that looks
 * like a target but is not one. Literals come in the lexing of one sql_mode
 * (`LexMode`): a backslash escapes in '...' and "..." by default, only in
 * '...' under ANSI_QUOTES ("..." is an identifier), nowhere under
 * NO_BACKSLASH_ESCAPES; `neutral` literals have no backslash and lex the same
 * in every mode.
 */

const lookalike = fc.constantFrom(
  'USE secret',
  "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
  '; use x',
  '*/',
  '/*',
  '--',
  '#',
);
const chars = (quote: string, backslash: 'escapes' | 'plain' | 'none') =>
  fc.string({
    unit: fc.oneof(
      fc.constantFrom(
        ';',
        '/*',
        '*/',
        '--',
        '#',
        '\n',
        `${quote}${quote}`,
        ' ',
        ...(backslash === 'escapes' ? ['\\\\', `\\${quote}`] : backslash === 'plain' ? ['\\'] : []),
      ),
      fc.string({ unit: 'grapheme-ascii', maxLength: 1 }).filter((c) => c !== quote && c !== '\\'),
    ),
    maxLength: 12,
  });

const backslashIn = (mode: LexMode | 'neutral', quote: "'" | '"') => {
  if (mode === 'neutral') return 'none';
  if (mode === 'default' || (mode === 'ansi_quotes' && quote === "'")) return 'escapes';
  return 'plain';
};

const literalIn = (mode: LexMode | 'neutral') =>
  fc.oneof(
    fc.tuple(chars("'", backslashIn(mode, "'")), lookalike).map(([a, b]) => `'${a}${b.replace(/'/g, "''")}'`),
    fc.tuple(chars('"', backslashIn(mode, '"')), lookalike).map(([a, b]) => `"${a}${b.replace(/"/g, '""')}"`),
    fc
      .tuple(
        fc.string({ maxLength: 8 }).map((s) => s.replace(/`/g, '``')),
        lookalike,
      )
      .map(([a, b]) => `\`${a}${b.replace(/`/g, '``')}\``),
    fc.integer().map(String),
    fc.constantFrom('a', 'user_id', 'local_time', 'uses', 'NOW()'),
  );
const literal = literalIn('neutral');

const comment = fc.oneof(
  fc
    .tuple(fc.string({ maxLength: 8 }), lookalike)
    .map(([a, b]) => `/* ${a}${b} */`.replace(/\*\/(?=.*\*\/)/g, '* /')),
  fc.tuple(fc.string({ maxLength: 8 }), lookalike).map(([a, b]) => `-- ${a}${b}`.replace(/\n/g, ' ') + '\n'),
  fc.tuple(fc.string({ maxLength: 8 }), lookalike).map(([a, b]) => `# ${a}${b}`.replace(/\n/g, ' ') + '\n'),
);

const gap = fc
  .array(fc.oneof(fc.constantFrom(' ', '\n', '\t', '  ', '\r\n'), comment), { minLength: 1, maxLength: 3 })
  .map((g) => g.join(' '));

const fillerIn = (mode: LexMode | 'neutral') =>
  fc
    .tuple(
      fc.constantFrom('SELECT', 'select', 'INSERT INTO t VALUES (', 'UPDATE t SET a ='),
      fc.array(literalIn(mode), { minLength: 1, maxLength: 4 }),
      gap,
    )
    .map(([head, values, g]) => `${head}${g}${values.join(', ')}${head.endsWith('(') ? ')' : ''}`);
const filler = fillerIn('neutral');

/** Between two words of a target: what the server takes for whitespace. */
const sep = fc.oneof(
  fc.constantFrom(' ', '\n', '\t', '   ', '/**/', '/* x */', '-- c\n', '# c\n'),
  fc.constant(' /*!50000 */ '),
);
const randomCase = (w: string) =>
  fc
    .array(fc.boolean(), { minLength: w.length, maxLength: w.length })
    .map((up) => [...w].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join(''));

const loadDataLocal = fc
  .tuple(
    randomCase('load'),
    sep,
    randomCase('data'),
    sep,
    fc.constantFrom('', 'LOW_PRIORITY ', 'concurrent '),
    randomCase('local'),
    sep,
    fc.constantFrom('', '/*!', '/*!50000', '/*M!100000'),
  )
  .map(([l, s1, d, s2, prio, loc, s3, exec]) => {
    const stmt = `${l}${s1}${d}${s2}${prio}${loc}${s3}INFILE '/etc/passwd' INTO TABLE t`;
    return exec ? `${exec} ${stmt} */` : stmt;
  });

const dbName = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_$]{1,16}$/),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => s.trim() === s),
);
const use = fc
  .tuple(randomCase('use'), fc.constantFrom(' ', '\n', '  ', '/**/', ''), dbName)
  .map(([u, s, db]) => {
    const plain = /^[A-Za-z0-9_$]+$/.test(db);
    return { stmt: `${u}${plain && s === '' ? ' ' : s}${plain ? db : `\`${db.replace(/`/g, '``')}\``}`, db };
  });

const joined = (stmts: string[], gaps: string[]) => stmts.map((s, i) => `${gaps[i] ?? ''}${s}`).join(';');

describe('MySQL statement checks (fuzz)', () => {
  it('never throw, and split into trimmed, non-empty statements', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 80 }),
          fc
            .array(
              fc.oneof(
                filler,
                literal,
                comment,
                sep,
                fc.constantFrom(';', "'", '"', '`', '\\', 'use ', 'local '),
              ),
              { maxLength: 12 },
            )
            .map((p) => p.join('')),
        ),
        (sql) => {
          for (const s of splitStatements(sql)) {
            expect(s.length).toBeGreaterThan(0);
            expect(s.trim()).toBe(s);
          }
          inspectQuery(sql);
        },
      ),
      { runs: 3000 },
    );
  });

  it('sees no USE and no LOAD DATA LOCAL in statements that only quote or comment them', () => {
    fuzz(
      fc.property(
        fc.array(filler, { minLength: 1, maxLength: 5 }),
        fc.array(gap, { maxLength: 5 }),
        (stmts, gaps) => {
          expect(inspectQuery(joined(stmts, gaps))).toEqual({ useDatabases: [], loadDataLocal: false });
        },
      ),
      { runs: 2000 },
    );
  });

  it('finds LOAD DATA LOCAL wherever it is among other statements, however it is spelled', () => {
    fuzz(
      fc.property(
        fc.array(filler, { maxLength: 4 }),
        loadDataLocal,
        fc.nat(),
        fc.array(gap, { maxLength: 5 }),
        (stmts, target, at, gaps) => {
          const all = [...stmts];
          all.splice(at % (stmts.length + 1), 0, target);
          expect(inspectQuery(joined(all, gaps)).loadDataLocal).toBe(true);
        },
      ),
      { runs: 2000 },
    );
  });

  it('finds every USE and the database it names, wherever it is among other statements', () => {
    fuzz(
      fc.property(
        fc.array(filler, { maxLength: 4 }),
        use,
        fc.nat(),
        fc.array(gap, { maxLength: 5 }),
        (stmts, u, at, gaps) => {
          const all = [...stmts];
          all.splice(at % (stmts.length + 1), 0, u.stmt);
          expect(inspectQuery(joined(all, gaps)).useDatabases).toEqual([u.db]);
        },
      ),
      { runs: 2000 },
    );
  });

  it('in each sql_mode, sees no USE and no LOAD DATA LOCAL in statements that only quote or comment them in that mode', () => {
    fuzz(
      fc.property(
        fc
          .constantFrom(...LEX_MODES)
          .chain((mode) =>
            fc.tuple(fc.constant(mode), fc.array(fillerIn(mode), { minLength: 1, maxLength: 5 })),
          ),
        fc.array(gap, { maxLength: 5 }),
        ([mode, stmts], gaps) => {
          for (const s of splitStatements(joined(stmts, gaps), mode)) {
            expect(useTarget(s, mode)).toBeUndefined();
            expect(s).not.toMatch(/^load\b/i);
          }
        },
      ),
      { runs: 2000 },
    );
  });

  it('finds a USE or LOAD DATA LOCAL after quotes of any sql_mode (a quote that hides it in one mode does not in another)', () => {
    // Regression: the checks lexed in the default mode only, so under NO_BACKSLASH_ESCAPES or
    // ANSI_QUOTES `SELECT "\\";USE secret"` ran a USE the gateway had taken for part of a string.
    expect(inspectQuery('SELECT "\\";USE secret;"').useDatabases).toContain('secret');
    expect(
      inspectQuery("SELECT '\\';LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t;'").loadDataLocal,
    ).toBe(true);
    expect(inspectQuery('USE"secret"').useDatabases).toContain('secret');
    fuzz(
      fc.property(
        fc
          .constantFrom(...LEX_MODES)
          .chain((mode) => fc.tuple(fc.constant(mode), fc.array(fillerIn(mode), { maxLength: 4 }))),
        fc.oneof(
          use.map((u) => ({ stmt: u.stmt, db: u.db as string | undefined })),
          loadDataLocal.map((stmt) => ({ stmt, db: undefined })),
        ),
        fc.nat(),
        fc.array(gap, { maxLength: 5 }),
        ([, stmts], target, at, gaps) => {
          const all = [...stmts];
          all.splice(at % (stmts.length + 1), 0, target.stmt);
          const check = inspectQuery(joined(all, gaps));
          if (target.db === undefined) expect(check.loadDataLocal).toBe(true);
          else expect(check.useDatabases).toContain(target.db);
        },
      ),
      { runs: 3000 },
    );
  });
});
