import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureApiServer, startFixtureApiServer } from '../../adapter-k8s/test/fixture-apiserver.js';
import { KUBECTL_1_20 } from '../../adapter-k8s/test/peers.js';
import { type Daemon, PASSWORD, run, startDaemon } from './harness.js';

function kubectl(
  kubeconfig: string,
  args: string[],
  cache: string,
  bin = '/usr/bin/kubectl',
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ['--kubeconfig', kubeconfig, '--cache-dir', cache, ...args],
      { timeout: 60_000, env: { PATH: process.env.PATH } },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('gatehouse kube add / ls / login / credentials with the real kubectl', () => {
  let d: Daemon;
  let fixture: FixtureApiServer;
  let dir: string;
  const homes = { admin: '', alice: '' };
  const as = (who: keyof typeof homes) => ({ GATEHOUSE_HOME: homes[who] });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-kube-cli-'));
    fixture = await startFixtureApiServer({ dir });
    d = await startDaemon({ cluster: 'kct' });
    homes.admin = join(d.root, 'home-admin');
    homes.alice = join(d.root, 'home-alice');
    const pw = { input: `${PASSWORD}\n` };
    const a = await run(
      ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
      { env: as('admin'), ...pw },
    );
    expect(a.code, a.stderr).toBe(0);
    const l = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'],
      { env: as('admin'), ...pw },
    );
    expect(l.code, l.stderr).toBe(0);
    const u = await run(
      [
        'users',
        'add',
        'alice',
        '--roles',
        'access',
        '--traits',
        'kube_groups=developers',
        '--password-stdin',
      ],
      { env: as('admin'), ...pw },
    );
    expect(u.code, u.stderr).toBe(0);
    const al = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin'],
      { env: as('alice'), ...pw },
    );
    expect(al.code, al.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    await fixture?.close();
  });

  it('an admin registers the cluster from a kubeconfig file; alice sees it with her groups', async () => {
    const f = join(dir, 'upstream.kubeconfig');
    writeFileSync(f, fixture.kubeconfig);
    const add = await run(['kube', 'add', 'prod', '--kubeconfig', f, '--label', 'env=prod'], {
      env: as('admin'),
    });
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('Kubernetes cluster prod registered.');
    const bad = await run(['kube', 'add', 'other', '--kubeconfig', f, '--context', 'nope'], {
      env: as('admin'),
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('has no context "nope"');
    const denied = await run(['kube', 'add', 'mine', '--kubeconfig', f], { env: as('alice') });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('access denied');
    const ls = await run(['kube', 'ls', '--json'], { env: as('alice') });
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual([
      {
        name: 'prod',
        labels: { env: 'prod' },
        source: 'dynamic',
        allowed: { kube_users: [], kube_groups: ['developers'] },
      },
    ]);
    // The upstream credentials never leave the gateway.
    expect(ls.stdout).not.toContain('client-key');
    expect(readFileSync(join(d.dataDir, 'gatehouse.db')).includes(Buffer.from('client-key-data'))).toBe(
      false,
    );
  });

  it('kube login writes a context whose exec plugin feeds kubectl; get pods and exec work', async () => {
    const kc = join(dir, 'alice.kubeconfig');
    const login = await run(['kube', 'login', 'prod', '--kubeconfig', kc], { env: as('alice') });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('Context kct-prod written');
    expect(readFileSync(kc, 'utf8')).toContain('tls-server-name: prod.kube.kct');
    const cache = mkdtempSync(join(tmpdir(), 'gh-kcache-'));
    const pods = await kubectl(kc, ['get', 'pods'], cache);
    expect(pods.stderr).toBe('');
    expect(pods.stdout).toMatch(/web-1\s+1\/1\s+Running/);
    const ex = await kubectl(kc, ['exec', 'web-1', '--', 'echo', 'via the daemon'], cache);
    expect(ex.code, ex.stderr).toBe(0);
    expect(ex.stdout).toBe('via the daemon\n');
    const served = fixture.requests.filter((q) => q.path === '/api/v1/namespaces/default/pods');
    expect(served.at(-1)).toMatchObject({ user: 'alice', groups: ['developers', 'system:authenticated'] });
    // The exec session is recorded and plays back what kubectl showed.
    const recs = await run(['recordings', 'ls', '--json'], { env: as('admin') });
    expect(recs.code, recs.stderr).toBe(0);
    const rec = (JSON.parse(recs.stdout) as { session_id: string; kind: string; user: string }[]).find(
      (r) => r.kind === 'kube' && r.user === 'alice',
    );
    expect(rec).toBeDefined();
    const play = await run(['play', rec!.session_id, '--format', 'text'], { env: as('admin') });
    expect(play.code, play.stderr).toBe(0);
    expect(play.stdout).toBe('via the daemon\n');
  });

  it('kube login writes an exec plugin kubectl 1.20 runs (v1beta1): get pods and exec (SPDY) work', async () => {
    const kc = join(dir, 'alice-old-kubectl.kubeconfig');
    const login = await run(['kube', 'login', 'prod', '--kubeconfig', kc], { env: as('alice') });
    expect(login.code, login.stderr).toBe(0);
    const version = await kubectl(kc, ['version', '--client', '--short'], join(dir, 'kc-old'), KUBECTL_1_20);
    expect(version.stdout).toContain('Client Version: v1.20.');
    const pods = await kubectl(kc, ['get', 'pods'], mkdtempSync(join(tmpdir(), 'gh-kcache-')), KUBECTL_1_20);
    // kubectl 1.20 refused a v1 exec plugin before it sent anything: "exec plugin: invalid apiVersion".
    expect(pods.stderr).toBe('');
    expect(pods.code).toBe(0);
    expect(pods.stdout).toMatch(/web-1\s+1\/1\s+Running/);
    expect(readFileSync(kc, 'utf8')).toContain('apiVersion: client.authentication.k8s.io/v1beta1');
    const ex = await kubectl(
      kc,
      ['exec', 'web-1', '--', 'echo', 'via kubectl 1.20'],
      mkdtempSync(join(tmpdir(), 'gh-kcache-')),
      KUBECTL_1_20,
    );
    expect(ex.code, ex.stderr).toBe(0);
    expect(ex.stdout).toBe('via kubectl 1.20\n');
    const logs = await kubectl(
      kc,
      ['logs', 'web-1', '--tail=2'],
      mkdtempSync(join(tmpdir(), 'gh-kcache-')),
      KUBECTL_1_20,
    );
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toBe('log line 1 of web-1\nlog line 2 of web-1\n');
    // kubectl 1.20 execs over SPDY only: a POST upgrade reached the fixture as alice.
    expect(
      fixture.requests.filter((q) => q.path.endsWith('/pods/web-1/exec') && q.method === 'POST').at(-1),
    ).toMatchObject({ user: 'alice', code: 101 });
    // The same kubeconfig works with the current kubectl.
    const now = await kubectl(
      kc,
      ['get', 'pod', 'web-2', '-o', 'name'],
      mkdtempSync(join(tmpdir(), 'gh-kcache-')),
    );
    expect(now.code, now.stderr).toBe(0);
    expect(now.stdout).toBe('pod/web-2\n');
  });

  it('the exec plugin answers in the version the kubeconfig asks for (a v1 kubeconfig from an older login)', async () => {
    const kc = join(dir, 'alice-v1.kubeconfig');
    const login = await run(['kube', 'login', 'prod', '--kubeconfig', kc], { env: as('alice') });
    expect(login.code, login.stderr).toBe(0);
    writeFileSync(
      kc,
      readFileSync(kc, 'utf8').replace(
        'client.authentication.k8s.io/v1beta1',
        'client.authentication.k8s.io/v1',
      ),
    );
    expect(readFileSync(kc, 'utf8')).toContain('apiVersion: client.authentication.k8s.io/v1\n');
    // kubectl 1.32 sets KUBERNETES_EXEC_INFO to the kubeconfig's version and refuses another one back.
    const pods = await kubectl(
      kc,
      ['get', 'pod', 'web-1', '-o', 'name'],
      mkdtempSync(join(tmpdir(), 'gh-kcache-')),
    );
    expect(pods.stderr).toBe('');
    expect(pods.stdout).toBe('pod/web-1\n');
    const info = JSON.stringify({
      kind: 'ExecCredential',
      apiVersion: 'client.authentication.k8s.io/v1',
      spec: { interactive: false },
    });
    const c = await run(['kube', 'credentials', '--cluster', 'prod'], {
      env: { ...as('alice'), KUBERNETES_EXEC_INFO: info },
    });
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout)).toMatchObject({
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
    });
    const bad = await run(['kube', 'credentials', '--cluster', 'prod'], {
      env: { ...as('alice'), KUBERNETES_EXEC_INFO: '{"apiVersion":"client.authentication.k8s.io/v1alpha1"}' },
    });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('client.authentication.k8s.io/v1alpha1');
  });

  it('@kubernetes/client-node reads the kube login kubeconfig (exec plugin, no KUBERNETES_EXEC_INFO): list, exec, a refused delete', async () => {
    const { CoreV1Api, Exec, KubeConfig } = await import('@kubernetes/client-node');
    const kc = join(dir, 'alice-client-node.kubeconfig');
    const login = await run(['kube', 'login', 'prod', '--kubeconfig', kc], { env: as('alice') });
    expect(login.code, login.stderr).toBe(0);
    const config = new KubeConfig();
    config.loadFromFile(kc);
    const api = config.makeApiClient(CoreV1Api);
    const list = await api.listNamespacedPod({ namespace: 'default' });
    expect(list.items.map((p) => p.metadata?.name)).toContain('web-1');
    // The API server's RBAC answers (developers may read, not delete), through the gateway.
    const refused = await api.deleteNamespacedPod({ namespace: 'default', name: 'web-1' }).then(
      () => undefined,
      (e: { code?: number; body?: string }) => e,
    );
    expect(refused?.code).toBe(403);
    expect(String(refused?.body)).toContain('User \\"alice\\" cannot delete resource \\"pods\\"');
    let out = '';
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        out += c.toString();
        cb();
      },
    });
    const exitStatus = await new Promise<unknown>((resolve, reject) => {
      new Exec(config)
        .exec('default', 'web-1', 'app', ['echo', 'from client-node'], sink, sink, null, false, resolve)
        .catch(reject);
    });
    expect(exitStatus).toMatchObject({ status: 'Success' });
    expect(out).toBe('from client-node\n');
    expect(fixture.requests.filter((q) => q.path.endsWith('/pods/web-1/exec')).at(-1)).toMatchObject({
      user: 'alice',
      code: 101,
    });
  });

  it('kube login --static points kubectl at the login certificate files', async () => {
    const kc = join(dir, 'alice-static.kubeconfig');
    const login = await run(['kube', 'login', 'prod', '--kubeconfig', kc, '--static'], { env: as('alice') });
    expect(login.code, login.stderr).toBe(0);
    expect(readFileSync(kc, 'utf8')).toContain('client-certificate:');
    const pods = await kubectl(
      kc,
      ['get', 'pod', 'web-2', '-o', 'name'],
      mkdtempSync(join(tmpdir(), 'gh-kcache-')),
    );
    expect(pods.code, pods.stderr).toBe(0);
    expect(pods.stdout).toBe('pod/web-2\n');
  });

  it('kube credentials prints an ExecCredential; kube login refuses a cluster the user cannot reach', async () => {
    const c = await run(['kube', 'credentials', '--cluster', 'prod'], { env: as('alice') });
    expect(c.code, c.stderr).toBe(0);
    const cred = JSON.parse(c.stdout) as {
      kind: string;
      status: { clientCertificateData: string; expirationTimestamp: string };
    };
    expect(cred.kind).toBe('ExecCredential');
    // No KUBERNETES_EXEC_INFO (run by hand, or by @kubernetes/client-node): the version login writes.
    expect(cred).toMatchObject({ apiVersion: 'client.authentication.k8s.io/v1beta1' });
    expect(cred.status.clientCertificateData).toContain('BEGIN CERTIFICATE');
    expect(Date.parse(cred.status.expirationTimestamp)).toBeGreaterThan(Date.now());
    const nope = await run(['kube', 'login', 'staging', '--kubeconfig', join(dir, 'x')], {
      env: as('alice'),
    });
    expect(nope.code).toBe(1);
    expect(nope.stderr).toContain('Kubernetes cluster "staging" is not one you can reach');
  });
});
