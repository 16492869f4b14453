import { describe, expect, it } from 'vitest';
import { type AuditEventInput, codeFor, EVENT_CODES } from './events.js';

// The codes are a public contract (SIEM rules match on them): this table is
// written out by hand on purpose, so changing or reusing a code fails here.
const EXPECTED = {
  'user.login': { ok: 'GH1000I', fail: 'GH1001W' },
  'user.logout': 'GH1002I',
  'mfa.session': { ok: 'GH1003I', fail: 'GH1003W' },
  'sso.connector.create': 'GH1090I',
  'sso.connector.delete': 'GH1091I',
  'user.create': 'GH1010I',
  'user.update': 'GH1011I',
  'user.delete': 'GH1012I',
  'user.token.create': 'GH1013I',
  'mfa.add': { ok: 'GH1015I', fail: 'GH1015W' },
  'mfa.remove': { ok: 'GH1016I', fail: 'GH1016W' },
  'role.create': 'GH1020I',
  'role.update': 'GH1021I',
  'role.delete': 'GH1022I',
  'lock.create': 'GH1030I',
  'lock.delete': 'GH1031I',
  'access_request.create': 'GH1032I',
  'access_request.review': 'GH1033I',
  'access_request.expire': 'GH1034I',
  'access_request.drop': 'GH1035I',
  'access_request.assume': 'GH1036I',
  'cert.create': 'GH1040I',
  'ca.create': 'GH1041I',
  'ca.rotate': 'GH1042I',
  'listener.reject': 'GH1100W',
  'http.reject': 'GH1101W',
  'access.denied': 'GH1102W',
  'listener.reject.summary': 'GH1103W',
  'db.create': 'GH1050I',
  'db.delete': 'GH1051I',
  'db.session.start': { ok: 'GH2000I', fail: 'GH2000W' },
  'db.session.end': 'GH2001I',
  'db.session.query': 'GH2002I',
  'db.session.change_user': { ok: 'GH2003I', fail: 'GH2003W' },
  'db.reject': 'GH2010W',
  'db.cancel': { ok: 'GH2011I', fail: 'GH2011W' },
  'kube.cluster.create': 'GH1060I',
  'kube.cluster.delete': 'GH1061I',
  'kube.request': { ok: 'GH2200I', fail: 'GH2200W' },
  'kube.exec.start': { ok: 'GH2201I', fail: 'GH2201W' },
  'kube.exec.end': 'GH2202I',
  'kube.portforward.end': 'GH2203I',
  'desktop.create': 'GH1080I',
  'desktop.delete': 'GH1081I',
  'desktop.session.start': { ok: 'GH2300I', fail: 'GH2300W' },
  'desktop.session.end': 'GH2301I',
  'desktop.reject': 'GH2310W',
  'node.create': 'GH1070I',
  'node.delete': 'GH1071I',
  'session.start': { ok: 'GH2100I', fail: 'GH2100W' },
  'session.end': 'GH2101I',
  exec: 'GH2102I',
  port_forward: { ok: 'GH2103I', fail: 'GH2103W' },
  sftp: 'GH2104I',
  'ssh.reject': 'GH2105W',
  'session.join': { ok: 'GH2106I', fail: 'GH2106W' },
  'session.leave': 'GH2107I',
  'session.guard': 'GH2108W',
  agent_forward: { ok: 'GH2109I', fail: 'GH2109W' },
  'session.command': 'GH2110I',
  'session.command.exit': 'GH2111I',
  'session.open': 'GH2112I',
  'session.network': { ok: 'GH2113I', fail: 'GH2113W' },
  'session.events_lost': 'GH2114W',
  'session.enforcement_failed': 'GH2115E',
  'node.join': { ok: 'GH1072I', fail: 'GH1072W' },
  'node.join_token.create': 'GH1073I',
  'node.audit_refused': 'GH1074W',
  'node.renew_refused': 'GH1075W',
  'gateway.start': 'GH1200I',
  'gateway.stop': 'GH1201I',
  'gateway.reload': { ok: 'GH1202I', fail: 'GH1202W' },
  'audit.backlog': 'GH1210E',
  'audit.dropped': 'GH1211E',
  'audit.sink.backlog': 'GH1220W',
  'audit.sink.full': 'GH1221E',
  'audit.sink.dropped': 'GH1222E',
  'audit.sink.rejected': 'GH1223E',
  'audit.sink.recovered': 'GH1224I',
  'audit.retention.delete': 'GH1212I',
  'recording.delete': 'GH1213I',
};

function allCodes(): string[] {
  return Object.values(EVENT_CODES).flatMap((c) => (typeof c === 'string' ? [c] : [c.ok, c.fail]));
}

describe('event codes', () => {
  it('match the published table exactly', () => {
    expect(EVENT_CODES).toStrictEqual(EXPECTED);
  });

  it('are unique across all types and variants', () => {
    const codes = allCodes();
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('are GH<number><severity>', () => {
    for (const c of allCodes()) expect(c).toMatch(/^GH\d{4}[IWE]$/);
  });

  it('give login success and failure different codes', () => {
    const ok: AuditEventInput = { type: 'user.login', success: true, method: 'password', mfa: true };
    const bad: AuditEventInput = {
      type: 'user.login',
      success: false,
      method: 'password',
      reason: 'bad_password',
      error: 'wrong password',
    };
    expect(codeFor(ok)).toBe('GH1000I');
    expect(codeFor(bad)).toBe('GH1001W');
    expect(codeFor({ type: 'audit.backlog', sink: 's', backlog: 1, error: 'x' })).toBe('GH1210E');
  });
});
