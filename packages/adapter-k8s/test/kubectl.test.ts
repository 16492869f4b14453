import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { type KubeEnv, startKubeEnv } from './peers.js';

let env: KubeEnv;
let dev: string;

const identity = (user: string, roles: string[]) => ({ user, roles, traits: {} });

beforeAll(async () => {
  env = await startKubeEnv();
  await env.gw.admin.createUser({ name: 'alice', roles: ['kube-dev'], password: 'correct horse battery' });
  await env.gw.admin.createUser({ name: 'vic', roles: ['kube-view'], password: 'correct horse battery' });
  await env.gw.admin.createUser({
    name: 'nora',
    roles: ['kube-nogroups'],
    password: 'correct horse battery',
  });
  await env.gw.admin.createUser({ name: 'sam', roles: ['kube-staging'], password: 'correct horse battery' });
  dev = await env.kubeconfigFor(identity('alice', ['kube-dev']));
}, 120_000);

afterAll(async () => {
  await env?.close();
});

const events = (type: string) => env.events(type);

/**
 * The kube.exec.end events of one session, once there is one: kubectl exits on the exit status, and
 * the gateway audits the end when the connection closes, which can come later.
 */
function execEnds(sid: string) {
  return waitFor(async () => {
    const e = (await events('kube.exec.end')).filter((x) => x.session_id === sid);
    return e.length > 0 ? e : undefined;
  }, 'kube.exec.end');
}

/** A recording's output and input, as text. */
async function replay(sid: string): Promise<{ out: string; input: string }> {
  let out = '';
  let input = '';
  for await (const ev of env.gw.recordings.read(sid)) {
    if (ev.type === 'output') out += Buffer.from(ev.data).toString();
    if (ev.type === 'input') input += Buffer.from(ev.data).toString();
  }
  return { out, input };
}

describe('kubectl through Gatehouse', () => {
  it('get pods prints the server-side table, served as the impersonated user and groups', async () => {
    const r = await env.kubectl(dev, ['get', 'pods']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n/);
    expect(r.stdout).toMatch(/web-1\s+1\/1\s+Running\s+0\s+5m/);
    const seen = env.fixture.requests.filter((q) => q.path === '/api/v1/namespaces/default/pods');
    expect(seen.length).toBeGreaterThan(0);
    for (const q of seen) {
      expect(q.user).toBe('alice');
      expect(q.groups).toEqual(['developers', 'system:authenticated']);
    }
  });

  it('get pods -o yaml returns the objects', async () => {
    const r = await env.kubectl(dev, ['get', 'pods', '-o', 'yaml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('kind: List');
    expect(r.stdout).toContain('name: web-2');
    expect(r.stdout).toContain('phase: Running');
  });

  it('exec runs a command and propagates its output', async () => {
    const r = await env.kubectl(dev, ['exec', 'web-1', '--', 'echo', 'hello from', 'the pod']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello from the pod\n');
  });

  it('exec -i pipes stdin (with -t too: kubectl drops the TTY when stdin is not a terminal)', async () => {
    const r = await env.kubectl(dev, ['exec', '-i', 'web-1', '--', 'cat'], { input: 'line one\nline two\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('line one\nline two\n');
    const t = await env.kubectl(dev, ['exec', '-it', 'web-1', '--', 'cat'], { input: 'typed\n' });
    expect(t.code).toBe(0);
    expect(t.stdout).toBe('typed\n');
    expect(t.stderr).toContain('Unable to use a TTY');
  });

  it('exit codes propagate', async () => {
    const r = await env.kubectl(dev, ['exec', 'web-1', '--', 'sh', '-c', 'echo oops >&2; exit 3']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('oops');
    expect(r.stderr).toContain('command terminated with exit code 3');
  });

  it('the recording of an exec session plays back what kubectl showed, and kube.exec is audited', async () => {
    const r = await env.kubectl(dev, ['exec', '-i', 'web-1', '--', 'sh', '-c', 'cat; echo done-$POD_NAME'], {
      input: 'recorded input\n',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('recorded input\ndone-web-1\n');
    const starts = (await events('kube.exec.start')).filter((e) =>
      String(e.command).includes('done-$POD_NAME'),
    );
    expect(starts).toHaveLength(1);
    const sid = String(starts[0]!.session_id);
    expect(starts[0]).toMatchObject({
      user: 'alice',
      kube_user: 'alice',
      kube_groups: ['developers'],
      recorded: true,
      namespace: 'default',
      name: 'web-1',
    });
    const meta = await env.gw.recordings.get(sid);
    expect(meta).toMatchObject({ kind: 'kube', user: 'alice', server: 'prod' });
    const { out, input } = await replay(sid);
    expect(out).toBe(r.stdout);
    expect(input).toBe('recorded input\n');
    const ends = await execEnds(sid);
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ exit_code: 0 });
  });

  describe('exec over SPDY (kubectl before 1.30, or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)', () => {
    const spdy = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' };

    it('runs, pipes stdin, propagates exit codes, and is recorded like a WebSocket session', async () => {
      const r = await env.kubectl(
        dev,
        ['exec', '-i', 'web-1', '--', 'sh', '-c', 'cat; echo spdy-$POD_NAME'],
        {
          input: 'over spdy\n',
          env: spdy,
        },
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('over spdy\nspdy-web-1\n');
      // The upgrade really was SPDY: a POST with Upgrade: SPDY/3.1 reached the fixture, served as alice.
      const served = env.fixture.requests.filter(
        (q) => q.path === '/api/v1/namespaces/default/pods/web-1/exec' && q.method === 'POST',
      );
      expect(served.length).toBeGreaterThan(0);
      expect(served.at(-1)).toMatchObject({ user: 'alice', code: 101 });

      const starts = (await events('kube.exec.start')).filter((e) =>
        String(e.command).includes('spdy-$POD_NAME'),
      );
      expect(starts).toEqual([expect.objectContaining({ recorded: true, success: true })]);
      const sid = String(starts[0]!.session_id);
      const ends = await execEnds(sid);
      expect(ends).toEqual([expect.objectContaining({ exit_code: 0 })]);
      const { out, input } = await replay(sid);
      expect(out).toBe(r.stdout);
      expect(input).toBe('over spdy\n');

      const failed = await env.kubectl(dev, ['exec', 'web-1', '--', 'sh', '-c', 'echo bad >&2; exit 4'], {
        env: spdy,
      });
      expect(failed.code).toBe(4);
      expect(failed.stderr).toContain('bad');
      expect(failed.stderr).toContain('command terminated with exit code 4');
    });
  });

  it('attach -i, over WebSocket and over SPDY: input reaches the main process, and is recorded and audited', async () => {
    for (const [protocol, extra] of [
      ['websocket', {}],
      ['spdy', { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }],
    ] as const) {
      const before = new Set((await events('kube.exec.start')).map((e) => e.id));
      const r = await env.kubectl(dev, ['attach', '-i', 'web-1'], {
        input: `attached over ${protocol}\n`,
        env: extra,
      });
      expect(r.code).toBe(0);
      // The fixture's main process is cat: the input comes back as its output.
      expect(r.stdout).toBe(`attached over ${protocol}\n`);
      const served = env.fixture.requests.filter(
        (q) => q.path === '/api/v1/namespaces/default/pods/web-1/attach',
      );
      expect(served.at(-1)).toMatchObject({
        user: 'alice',
        code: 101,
        method: protocol === 'spdy' ? 'POST' : 'GET',
      });
      const starts = (await events('kube.exec.start')).filter((e) => !before.has(e.id));
      expect(starts).toEqual([
        expect.objectContaining({ command: 'attach app', name: 'web-1', recorded: true, success: true }),
      ]);
      const sid = String(starts[0]!.session_id);
      const ends = await execEnds(sid);
      expect(ends).toEqual([expect.objectContaining({ exit_code: 0 })]);
      const { out, input } = await replay(sid);
      expect(out).toBe(r.stdout);
      expect(input).toBe(`attached over ${protocol}\n`);
    }
  });

  it('logs -f streams: the first lines arrive before the stream ends', async () => {
    const child = spawn(
      '/usr/bin/kubectl',
      ['--kubeconfig', dev, '--cache-dir', path.join(env.dir, 'kcache'), 'logs', '-f', 'web-1'],
      {
        env: { PATH: process.env.PATH, HOME: env.dir },
      },
    );
    let out = '';
    let firstAt = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!firstAt) firstAt = Date.now();
    });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    const endAt = Date.now();
    expect(code).toBe(0);
    expect(out).toBe([1, 2, 3, 4, 5, 6].map((i) => `log line ${i} of web-1\n`).join(''));
    // The fixture writes a line every 300 ms; buffered output would arrive all at once at the end.
    expect(endAt - firstAt).toBeGreaterThan(1000);
  });

  it('a forged --as is refused with a Status naming the headers', async () => {
    const r = await env.kubectl(dev, ['get', 'pods', '--as', 'admin', '--as-group', 'system:masters']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Error from server (Forbidden)');
    expect(r.stderr).toContain('impersonation headers are not accepted');
    expect(env.fixture.requests.some((q) => q.user === 'admin')).toBe(false);
    const denied = (await events('kube.request')).filter(
      (e) => e.response_code === 403 && String(e.error ?? '').includes('impersonation'),
    );
    expect(denied.length).toBeGreaterThan(0);
  });

  it('the upstream RBAC refuses what the impersonated group may not do (viewers cannot list)', async () => {
    const vic = await env.kubeconfigFor(identity('vic', ['kube-view']));
    const r = await env.kubectl(vic, ['get', 'pods']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'Error from server (Forbidden): pods is forbidden: User "vic" cannot list resource "pods"',
    );
    const g = await env.kubectl(vic, ['get', 'pod', 'web-1', '-o', 'name']);
    expect(g.code).toBe(0);
    expect(g.stdout).toBe('pod/web-1\n');
    const e = await env.kubectl(vic, ['exec', 'web-1', '--', 'true']);
    expect(e.code).toBe(1);
    expect(e.stderr).toContain('cannot create resource "pods" subresource "exec"');
  });

  it("a role that does not allow the cluster gets a 403 Status with core's reason", async () => {
    const sam = await env.kubeconfigFor(identity('sam', ['kube-staging']));
    const r = await env.kubectl(sam, ['get', 'pods']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Error from server (Forbidden)');
    expect(r.stderr).toContain('no role allows access to Kubernetes cluster "prod"');
    const denied = (await events('access.denied')).filter((e) => e.user === 'sam');
    expect(denied.length).toBeGreaterThan(0);
  });

  it('a user whose roles grant no kube groups is refused', async () => {
    const nora = await env.kubeconfigFor(identity('nora', ['kube-nogroups']));
    const r = await env.kubectl(nora, ['get', 'pods']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no Kubernetes users or groups to impersonate');
  });

  it('an unknown cluster is refused with a Status', async () => {
    const k = await env.kubeconfigFor(identity('alice', ['kube-dev']), 'nosuch');
    const r = await env.kubectl(k, ['get', 'pods']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Kubernetes cluster "nosuch"/);
  });

  it('the fixture refuses anyone but Gatehouse (a cert from its own CA for another user)', async () => {
    const { writeFile } = await import('node:fs/promises');
    const f = path.join(env.dir, 'direct.kubeconfig');
    await writeFile(
      f,
      env.fixture.kubeconfig
        .replace(
          /client-certificate-data: .*/,
          `client-certificate-data: ${Buffer.from(env.fixture.otherClient.cert).toString('base64')}`,
        )
        .replace(
          /client-key-data: .*/,
          `client-key-data: ${Buffer.from(env.fixture.otherClient.key).toString('base64')}`,
        ),
    );
    const r = await env.kubectl(f, ['get', 'pods']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Unauthorized|must be logged in/);
  });

  it('every request is in the audit log with verb, resource, namespace and code', async () => {
    const reqs = await events('kube.request');
    const list = reqs.find(
      (e) => e.user === 'alice' && e.verb === 'list' && e.resource === 'pods' && e.response_code === 200,
    );
    expect(list).toMatchObject({
      namespace: 'default',
      kube_cluster: 'prod',
      kube_user: 'alice',
      kube_groups: ['developers'],
      code: 'GH2200I',
    });
    const get = reqs.find(
      (e) => e.user === 'alice' && e.verb === 'get' && e.name === 'web-1' && e.resource === 'pods',
    );
    expect(get).toBeDefined();
    const exec = reqs.find(
      (e) => e.user === 'alice' && e.resource === 'pods/exec' && e.response_code === 101,
    );
    expect(exec).toMatchObject({ verb: 'connect' });
    const forbidden = reqs.find((e) => e.user === 'vic' && e.verb === 'list');
    expect(forbidden).toMatchObject({ code: 'GH2200W', response_code: 403, success: false });
    // Every request the fixture served through Gatehouse has its audit event with the same path and code.
    const pool = reqs
      .filter((e) => e.user === 'alice' || e.user === 'vic')
      .map((e) => `${e.path} ${e.response_code}`);
    const served = env.fixture.requests.filter((q) => q.user === 'alice' || q.user === 'vic');
    expect(served.length).toBeGreaterThan(10);
    for (const q of served) {
      const i = pool.indexOf(`${q.path} ${q.code}`);
      expect(i, `${q.method} ${q.path} ${q.code} audited`).toBeGreaterThanOrEqual(0);
      pool.splice(i, 1);
    }
  });
});
