import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(`./packages/${p}`, import.meta.url));

// Tests import the workspace packages from source so a change is tested
// without a rebuild; the CLI integration tests run the built binary.
const alias = [
  { find: /^@gatehouse\/audit\/testing$/, replacement: src('audit/src/testing/index.ts') },
  { find: /^@gatehouse\/audit$/, replacement: src('audit/src/index.ts') },
  { find: /^@gatehouse\/core\/testing$/, replacement: src('core/src/testing/index.ts') },
  { find: /^@gatehouse\/core\/lite$/, replacement: src('core/src/lite.ts') },
  { find: /^@gatehouse\/core\/client$/, replacement: src('core/src/client.ts') },
  { find: /^@gatehouse\/core$/, replacement: src('core/src/index.ts') },
  { find: /^@gatehouse\/bpf$/, replacement: src('bpf/src/index.ts') },
  { find: /^@gatehouse\/adapter-ssh\/wire$/, replacement: src('adapter-ssh/src/wire/target.ts') },
];

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts'],
          exclude: ['packages/*/src/**/*.fuzz.test.ts', '**/node_modules/**'],
          testTimeout: 20_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'integration',
          include: ['packages/*/test/**/*.test.ts'],
          exclude: ['packages/*/test/reliability/**', '**/node_modules/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        resolve: { alias },
        // Bad input and bad luck, replayed: seeded property-based fuzzing of
        // every codec and parser (*.fuzz.test.ts next to the code; a failure
        // prints its seed), and attacks and accidents against a running
        // gateway (test/reliability/) while real clients keep working.
        test: {
          name: 'reliability',
          include: ['packages/*/src/**/*.fuzz.test.ts', 'packages/*/test/reliability/**/*.test.ts'],
          // A deep pass (GATEHOUSE_FUZZ_RUNS=100000) runs far longer than CI's default runs.
          testTimeout: process.env.GATEHOUSE_FUZZ_RUNS ? 3_600_000 : 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
