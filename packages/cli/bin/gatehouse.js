#!/usr/bin/env -S node --initial-old-space-size=64
// The V8 flag: see docs/decisions/0014-bulk-throughput.md (without it the
// daemon runs a full garbage collection every few MB of relayed traffic).
// ssh, scp and proxy ssh take a fast path that loads only what they need
// (src/fast.ts); every other command loads the whole CLI.
// The exit waits until stdout has taken all the output (src/stdio.ts):
// process.exit() right after a write would cut off what a pipe has not read yet.
try {
  const { watchOutput, exitWhenWritten } = await import('../dist/stdio.js');
  watchOutput();
  let code;
  try {
    const { runFast } = await import('../dist/fast.js');
    code = await runFast(process.argv);
    if (code === undefined) {
      const { main } = await import('../dist/main.js');
      code = await main(process.argv);
    }
  } catch (e) {
    process.stderr.write(`error: ${e?.stack ?? e}\n`);
    code = 1;
  }
  await exitWhenWritten(code);
} catch (e) {
  process.stderr.write(`error: ${e?.stack ?? e}\n`);
  process.exitCode = 1;
}
