// The Kubernetes fixture API server (packages/adapter-k8s/test/fixture-apiserver.ts,
// transpiled by bench/kube.mjs) in a process of its own for the soak bench,
// which starts it in its own session: like an API server on another machine,
// it is not starved by the hundreds of clients the bench runs (in the bench's
// thread, then in a worker thread, it answered a GET in up to 28 s and exec
// upgrades ran into the gateway's 30 s upstream timeout).
// Usage: node soak-fixture.cjs MODULE_URL DIR, with an IPC channel: sends
// { kubeconfig } once listening, answers 'lag' with its event-loop delay
// since the last answer, and stops on 'close' or when the bench goes away.
'use strict';
const { monitorEventLoopDelay } = require('node:perf_hooks');

(async () => {
  const [url, dir] = process.argv.slice(2);
  const { startFixtureApiServer } = await import(url);
  const fixture = await startFixtureApiServer({ dir });
  const RESOLUTION_MS = 10;
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  const ms = (ns) => Math.max(0, Math.round(ns / 1e4) / 100 - RESOLUTION_MS);
  const stop = () => fixture.close().finally(() => process.exit(0));
  process.on('message', (m) => {
    if (m === 'lag') {
      process.send({ lag: { p99: ms(delay.percentile(99)), max: ms(delay.max) } });
      delay.reset();
    } else if (m === 'close') stop();
  });
  // The bench is gone (it crashed or was killed): nobody else would stop this process.
  process.on('disconnect', stop);
  process.send({ kubeconfig: fixture.kubeconfig });
})().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
