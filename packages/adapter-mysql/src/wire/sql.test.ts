import { describe, expect, it } from 'vitest';
import {
  inspectQuery,
  isLoadDataLocal,
  parseKill,
  QueryInspector,
  splitStatements,
  useTarget,
} from './sql.js';

describe('statement checks', () => {
  it('splits on semicolons outside quotes and comments', () => {
    expect(splitStatements('SELECT \'a;b\'; SELECT `x;y` -- c;d\n; /* e;f */ SELECT "g;h"')).toEqual([
      "SELECT 'a;b'",
      'SELECT `x;y`',
      'SELECT "g;h"',
    ]);
    expect(splitStatements("SELECT 'it''s; ok', 'back\\'slash;'")).toEqual([
      "SELECT 'it''s; ok', 'back\\'slash;'",
    ]);
  });

  it('finds USE in every statement form the server accepts', () => {
    expect(useTarget('USE shop')).toBe('shop');
    expect(useTarget('use `my db`')).toBe('my db');
    expect(useTarget('USE`x``y`')).toBe('x`y');
    expect(useTarget('  Use\n\tsecret  ')).toBe('secret');
    expect(useTarget('SELECT 1')).toBeUndefined();
    expect(useTarget('user_table')).toBeUndefined();
    expect(inspectQuery('SELECT 1; USE secret').useDatabases).toEqual(['secret']);
    expect(inspectQuery('/* hi */ USE secret').useDatabases).toEqual(['secret']);
    expect(inspectQuery('/*!40101 USE secret */').useDatabases).toEqual(['secret']);
    expect(inspectQuery('/*M!100000 USE secret*/').useDatabases).toEqual(['secret']);
    expect(inspectQuery("SELECT 'USE secret'").useDatabases).toEqual([]);
    expect(inspectQuery('SELECT 1 -- ; USE secret').useDatabases).toEqual([]);
  });

  it('finds LOAD DATA|XML LOCAL', () => {
    expect(isLoadDataLocal("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t")).toBe(true);
    expect(isLoadDataLocal('load  data low_priority local infile "x" into table t')).toBe(true);
    expect(isLoadDataLocal("LOAD XML CONCURRENT LOCAL INFILE 'x' INTO TABLE t")).toBe(true);
    expect(isLoadDataLocal("LOAD DATA INFILE '/tmp/x' INTO TABLE t")).toBe(false);
    expect(inspectQuery("SELECT 1; /*!LOAD DATA LOCAL INFILE 'x' INTO TABLE t*/").loadDataLocal).toBe(true);
    expect(inspectQuery("SELECT 'LOAD DATA LOCAL'").loadDataLocal).toBe(false);
  });

  it('checks a text fed in pieces exactly as whole, wherever the pieces split it', () => {
    const text = Buffer.from(
      'SELECT \'a;b\\\'c\', "it""s" -- x; USE no\n; /*!40101 USE `se``cret` */; USE other /* c */ ;' +
        " /*M!100000 LOAD DATA LOCAL INFILE 'é' INTO TABLE t*/; SELECT `x`#;USE no\nFROM t; use\tlast",
    );
    const whole = inspectQuery(text.toString());
    expect(whole).toEqual({
      useDatabases: ['se`cret', 'other', 'last'],
      loadDataLocal: true,
      unchecked: undefined,
    });
    for (let a = 0; a <= text.length; a++) {
      for (let b = a; b <= text.length; b += 5) {
        const q = new QueryInspector();
        // Bytes, so a piece may also end inside the two bytes of 'é'.
        q.pushBytes(text.subarray(0, a));
        q.pushBytes(text.subarray(a, b));
        q.pushBytes(text.subarray(b));
        expect(q.end()).toEqual(whole);
      }
    }
  });

  it('refuses to guess at a USE or LOAD statement too long to check, or too many USE targets', () => {
    expect(inspectQuery(`USE ${' '.repeat(5000)}secret`)).toMatchObject({ useDatabases: ['secret'] });
    expect(inspectQuery(`USE \`${'x'.repeat(5000)}\``).unchecked).toMatch(/cannot be checked/);
    expect(
      inspectQuery(`LOAD /* ${'y'.repeat(5000)} */ DATA LOCAL INFILE 'x' INTO TABLE t`).loadDataLocal,
    ).toBe(true);
    // LOCAL comes before the file name: a long LOAD is decided by its start.
    expect(inspectQuery(`load data infile '/local/${'z'.repeat(5000)}' into table t`)).toEqual({
      useDatabases: [],
      loadDataLocal: false,
      unchecked: undefined,
    });
    expect(inspectQuery(`USE ${'x'.repeat(5000)}`).unchecked).toMatch(/cannot be checked/);
    expect(inspectQuery(`SELECT '${'z'.repeat(5000)}'; USE shop`)).toMatchObject({
      useDatabases: ['shop'],
      unchecked: undefined,
    });
    const many = Array.from({ length: 65 }, (_, i) => `USE db${i}`).join(';');
    expect(inspectQuery(many).unchecked).toMatch(/more than 64 databases/);
  });

  it('finds a USE or LOAD DATA LOCAL that a quote hides only in the default sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)', () => {
    // Under NO_BACKSLASH_ESCAPES a backslash ends nothing: the server sees the string close at \",
    // then a USE. The default lexing took all of it for one string.
    expect(inspectQuery('SELECT "\\";USE secret;"').useDatabases).toContain('secret');
    expect(
      inspectQuery("SELECT '\\';LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t;'").loadDataLocal,
    ).toBe(true);
    // Under ANSI_QUOTES "..." is an identifier, where a backslash is an ordinary character.
    expect(inspectQuery('SELECT "a\\";USE secret;"').useDatabases).toContain('secret');
    expect(inspectQuery('USE"secret"').useDatabases).toEqual(['secret']);
    expect(inspectQuery('USE "se""cret"').useDatabases).toEqual(['se"cret']);
    // What lexes the same in every mode finds exactly what it says.
    expect(inspectQuery('SELECT "x"";USE no"; USE `a``b`')).toEqual({
      useDatabases: ['a`b'],
      loadDataLocal: false,
      unchecked: undefined,
    });
  });

  it('reads the KILL statements clients send to cancel, and nothing else', () => {
    expect(parseKill('KILL QUERY 1073741825')).toEqual({ prefix: 'KILL QUERY ', id: 1073741825 });
    expect(parseKill('kill 7;')).toEqual({ prefix: 'KILL ', id: 7 });
    expect(parseKill('  Kill  Hard\tConnection 12 ')).toEqual({ prefix: 'KILL HARD CONNECTION ', id: 12 });
    expect(parseKill('KILL SOFT QUERY 3')).toEqual({ prefix: 'KILL SOFT QUERY ', id: 3 });
    // A query id, a user, an expression, a second statement, an id over 32 bits: not a connection KILL.
    expect(parseKill('KILL QUERY ID 5')).toBeUndefined();
    expect(parseKill("KILL USER 'bob'")).toBeUndefined();
    expect(parseKill('KILL QUERY 5+1')).toBeUndefined();
    expect(parseKill('KILL QUERY 5; SELECT 1')).toBeUndefined();
    expect(parseKill('KILL 4294967296')).toBeUndefined();
    expect(parseKill('SELECT 1')).toBeUndefined();
  });
});
