import { describe, expect, it } from 'vitest';
import { inspectQuery, isLoadDataLocal, splitStatements, useTarget } from './sql.js';

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
});
