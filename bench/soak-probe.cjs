// Loaded into the gateway daemon by the soak bench (`node --require
// bench/soak-probe.cjs packages/cli/bin/gatehouse.js start ...`), never by
// the product: it answers the bench's sample requests over the IPC channel
// the bench opens, so heap, active handles and event-loop delay are read
// inside the daemon while the load generator runs in another process.
// Without an IPC channel (any other use) it does nothing.
'use strict';
const { monitorEventLoopDelay } = require('node:perf_hooks');
const v8 = require('node:v8');
const vm = require('node:vm');

if (typeof process.send === 'function') {
  // The histogram records the time between the ticks of a 10 ms timer; the lag is what
  // exceeds the 10 ms.
  const RESOLUTION_MS = 10;
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let gc;
  const ms = (ns) => Math.max(0, Math.round(ns / 1e4) / 100 - RESOLUTION_MS);
  process.on('message', (m) => {
    if (m?.soak !== 'sample') return;
    if (m.gc) {
      // A full collection on request only (the bench asks at a few checkpoints), so the
      // settled heap can be compared; --expose-gc is not on the daemon's command line.
      if (!gc) {
        v8.setFlagsFromString('--expose-gc');
        gc = vm.runInNewContext('gc');
      }
      gc();
      gc();
    }
    const resources = {};
    for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
    const lag = {
      p50: ms(delay.percentile(50)),
      p99: ms(delay.percentile(99)),
      max: ms(delay.max),
      count: delay.count,
    };
    // Each answer covers the time since the previous one.
    delay.reset();
    process.send({ soak: 'sample', id: m.id, memory: process.memoryUsage(), resources, lag });
  });
  // The bench is gone (it crashed or was killed): stop the daemon as an admin would, so that
  // it does not run on unattended.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  // The channel must not keep a daemon that was told to stop alive.
  process.channel.unref();
}
