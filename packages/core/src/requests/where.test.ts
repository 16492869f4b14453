import { describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { evalWhere, parseWhere, type WhereInput } from './where.js';

const input: WhereInput = {
  request: { roles: ['prod-db', 'prod-ro'], reason: 'INC-42: "stuck" orders', user: 'alice' },
  reviewer: { roles: ['reviewer'], traits: { team: ['payments', 'sre'] } },
  requester: { traits: { team: ['payments'], level: ['junior'] } },
};
const holds = (text: string) => evalWhere(parseWhere(text), input);
const error = (text: string) => {
  try {
    parseWhere(text);
  } catch (e) {
    if (e instanceof GatehouseError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'parsed';
};

describe('review_requests.where', () => {
  it('evaluates contains/equals on the request, the reviewer and the requester', () => {
    expect(holds('contains(reviewer.traits["team"], "payments")')).toBe(true);
    expect(holds('contains(reviewer.traits["team"], "web")')).toBe(false);
    expect(holds('contains(request.roles, "prod-db")')).toBe(true);
    expect(holds('contains(reviewer.roles, "reviewer")')).toBe(true);
    expect(holds('equals(request.user, "alice")')).toBe(true);
    expect(holds('equals(request.reason, "INC-42: \\"stuck\\" orders")')).toBe(true);
    // A trait of the requester compared with a field of the request, and one the requester lacks.
    expect(holds('contains(requester.traits["level"], "junior")')).toBe(true);
    expect(holds('contains(requester.traits["missing"], "x")')).toBe(false);
  });

  it('!, && and || with precedence (! tightest, then &&) and parentheses', () => {
    expect(holds('!equals(request.user, "alice")')).toBe(false);
    // false && false || true  ==  (false && false) || true
    expect(holds('equals("a", "b") && equals("a", "c") || equals("a", "a")')).toBe(true);
    // false && (false || true) == false
    expect(holds('equals("a", "b") && (equals("a", "c") || equals("a", "a"))')).toBe(false);
    expect(holds('!!contains(request.roles, "prod-ro")')).toBe(true);
  });

  it('a trait named like an Object property is just a missing trait, not a prototype lookup', () => {
    expect(holds('contains(requester.traits["__proto__"], "x")')).toBe(false);
    expect(holds('contains(reviewer.traits["constructor"], "x")')).toBe(false);
  });

  it('refuses what it does not know, saying where', () => {
    expect(error('contains(request.roles "x")')).toBe(
      'GH_ERR_VALIDATION: where: expected "," at character 24',
    );
    expect(error('exists(request.roles)')).toMatch(/unknown function "exists"/);
    expect(error('contains(request.owner, "x")')).toMatch(/unknown field "request.owner"/);
    expect(error('equals(request.roles, "x")')).toMatch(/equals\(\) compares strings/);
    expect(error('contains("x", "x")')).toMatch(/contains\(\) takes a list first/);
    expect(error('contains(request.roles, request.roles)')).toMatch(/takes a string second/);
    expect(error('equals("a", "a") & equals("b", "b")')).toMatch(/"&" alone/);
    expect(error('equals("a", "a") extra')).toMatch(/unexpected input after the expression/);
    expect(error('equals("a, "a")')).toMatch(/a string that does not end|expected/);
    expect(error('process.exit()')).toMatch(/unknown function "process.exit"/);
    expect(error('')).toMatch(/expected contains/);
    expect(error(`${'('.repeat(40)}equals("a","a")${')'.repeat(40)}`)).toMatch(/nesting deeper than 32/);
    expect(error(`equals("${'a'.repeat(3000)}", "a")`)).toMatch(/longer than 2048/);
  });
});
