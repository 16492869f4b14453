import { fuzz, shellSplit } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  filterResources,
  formatLabelFilter,
  labelIndex,
  paginate,
  parseLabelFilter,
  type Resource,
  shellWord,
  sortResources,
} from './resources';

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const resource: fc.Arbitrary<Resource> = fc.record(
  {
    kind: fc.constantFrom('node' as const, 'db' as const, 'kube' as const),
    name: text,
    labels: fc.dictionary(fc.constantFrom('env', 'team', 'region', 'a b', ''), text, {
      maxKeys: 3,
      noNullPrototype: true,
    }),
    description: text,
    detail: text,
    protocol: fc.constantFrom('postgres', 'mysql'),
  },
  { requiredKeys: ['kind', 'name', 'labels'] },
);

describe('resource lists (fuzz)', () => {
  it('parseLabelFilter never throws and reads back what formatLabelFilter writes', () => {
    const key = text.map((s) => s.trim()).filter((s) => s.length > 0 && !s.includes('='));
    fuzz(
      fc.property(
        fc.string({ maxLength: 30 }),
        key,
        fc.option(
          text.map((s) => s.trim()),
          { nil: undefined },
        ),
        (any, k, v) => {
          const f = parseLabelFilter(any);
          if (f) expect(f.key.length).toBeGreaterThan(0);
          expect(parseLabelFilter(formatLabelFilter({ key: k, value: v }))).toEqual({ key: k, value: v });
        },
      ),
      { runs: 2000 },
    );
  });

  it('filterResources keeps exactly the resources that match every label filter and search term', () => {
    fuzz(
      fc.property(
        fc.array(resource, { maxLength: 20 }),
        fc.string({ maxLength: 10 }),
        fc.array(
          fc.record({ key: fc.constantFrom('env', 'team', 'x'), value: fc.option(text, { nil: undefined }) }),
          { maxLength: 2 },
        ),
        (items, search, labels) => {
          const out = filterResources(items, { search, labels });
          for (const r of out) {
            expect(items).toContain(r);
            for (const f of labels) {
              expect(Object.hasOwn(r.labels, f.key)).toBe(true);
              if (f.value !== undefined) expect(r.labels[f.key]).toBe(f.value);
            }
          }
          expect(filterResources(items, {})).toEqual(items);
        },
      ),
      { runs: 1000 },
    );
  });

  it('sortResources is a permutation, paginate covers every item once, labelIndex lists every label', () => {
    fuzz(
      fc.property(
        fc.array(resource, { maxLength: 30 }),
        fc.constantFrom('name' as const, 'kind' as const, 'detail' as const),
        fc.constantFrom('asc' as const, 'desc' as const),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: -3, max: 10 }),
        (items, key, dir, size, page) => {
          const sorted = sortResources(items, key, dir);
          expect([...sorted].sort((a, b) => items.indexOf(a) - items.indexOf(b))).toEqual(items);
          const p = paginate(sorted, page, size);
          expect(p.page >= 0 && p.page < p.pages).toBe(true);
          const all = Array.from({ length: p.pages }, (_, i) => paginate(sorted, i, size).items).flat();
          expect(all).toEqual(sorted);
          const idx = labelIndex(items);
          for (const r of items)
            for (const [k, v] of Object.entries(r.labels)) expect(idx.get(k)).toContain(v);
        },
      ),
      { runs: 1000 },
    );
  });

  it('shellWord quotes so a shell reads back the word', () => {
    fuzz(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), (w) => {
        expect(shellSplit(shellWord(w))).toEqual([w]);
      }),
      { runs: 2000 },
    );
  });
});
