import { describe, expect, it } from 'vitest';
import { expandValue, expandValues, parseTemplate } from './templates.js';

const traits = {
  logins: ['alice', 'ubuntu'],
  email: ['alice@example.com', 'not-an-email'],
  groups: ['env-dev', 'env-staging', 'admins'],
  'first-name': ['Alice'],
};

describe('expandValue', () => {
  it('leaves literal values alone', () => {
    expect(expandValue('root', traits)).toEqual(['root']);
    expect(expandValue('*', traits)).toEqual(['*']);
  });

  it('expands internal and external traits to each value', () => {
    expect(expandValue('{{internal.logins}}', traits)).toEqual(['alice', 'ubuntu']);
    expect(expandValue('{{external.logins}}', traits)).toEqual(['alice', 'ubuntu']);
    expect(expandValue('{{ internal.logins }}', traits)).toEqual(['alice', 'ubuntu']);
    expect(expandValue('{{internal["first-name"]}}', traits)).toEqual(['Alice']);
    expect(expandValue('{{internal.first-name}}', traits)).toEqual(['Alice']);
  });

  it('applies literal text around a template to each value', () => {
    expect(expandValue('prefix-{{internal.logins}}-x', traits)).toEqual([
      'prefix-alice-x',
      'prefix-ubuntu-x',
    ]);
  });

  it('drops the entry when the trait is missing, never keeping the template text', () => {
    expect(expandValue('{{internal.db_users}}', traits)).toEqual([]);
    expect(expandValue('pre-{{external.nope}}', traits)).toEqual([]);
    expect(expandValue('{{internal.constructor}}', traits)).toEqual([]);
    expect(expandValue('{{internal.toString}}', {})).toEqual([]);
    expect(expandValues(['{{internal.missing}}', 'ubuntu'], traits)).toEqual(['ubuntu']);
  });

  it('drops invalid templates instead of matching them literally', () => {
    expect(expandValue('{{internal.logins}', traits)).toEqual([]);
    expect(expandValue('{{foo.bar}}', traits)).toEqual([]);
  });

  it('email.local keeps the local part and drops values without one', () => {
    expect(expandValue('{{email.local(external.email)}}', traits)).toEqual(['alice']);
  });

  it('regexp.replace rewrites matching values and drops the rest', () => {
    expect(expandValue('{{regexp.replace(internal.groups, "^env-(.*)$", "$1")}}', traits)).toEqual([
      'dev',
      'staging',
    ]);
    expect(expandValue('team-{{regexp.replace(internal.groups, "^(adm)ins$", "$1")}}', traits)).toEqual([
      'team-adm',
    ]);
    expect(expandValue('{{regexp.replace(email.local(external.email), "^a", "A")}}', traits)).toEqual([
      'Alice',
    ]);
  });

  it('expandValues deduplicates', () => {
    expect(expandValues(['{{internal.logins}}', 'alice', 'root'], traits)).toEqual([
      'alice',
      'ubuntu',
      'root',
    ]);
  });
});

describe('parseTemplate errors', () => {
  const error = (v: string) => {
    const r = parseTemplate(v);
    if (r.ok) throw new Error(`expected ${v} to be invalid`);
    return r.error;
  };

  it('reports each kind of mistake', () => {
    expect(error('{{internal.logins}')).toMatch(/unclosed template/);
    expect(error('internal.logins}}')).toMatch(/without a matching/);
    expect(error('{{foo.bar}}')).toMatch(/unknown namespace "foo"/);
    expect(error('{{email.lower(external.email)}}')).toMatch(/unknown function "email.lower"/);
    expect(error('{{internal}}')).toMatch(/expected "internal.<name>"/);
    expect(error('{{internal.a}}{{internal.b}}')).toMatch(/only one/);
    expect(error('{{regexp.replace(internal.groups, "^(x$", "$1")}}')).toMatch(/invalid regular expression/);
    expect(error('{{regexp.replace(internal.groups, "x")}}')).toMatch(/expected ","/);
    expect(error('{{email.local(external.email}}')).toMatch(/expected "\)"/);
    expect(error('{{internal.logins extra}}')).toMatch(/unexpected "extra"/);
    expect(error('{{internal.a + 1}}')).toMatch(/unexpected character "\+"/);
    expect(error('{{regexp.replace(internal.g, "abc, "x")}}')).toMatch(/expected ","|unterminated/);
  });

  it('accepts plain values and valid templates', () => {
    expect(parseTemplate('ubuntu')).toEqual({ ok: true });
    const r = parseTemplate('a-{{internal.logins}}-b');
    expect(r.ok && r.template?.prefix).toBe('a-');
    expect(r.ok && r.template?.suffix).toBe('-b');
  });
});
