import { describe, expect, it } from 'vitest';
import { removeServiceSection, upsertServiceSection } from './postgres.js';

describe('pg_service.conf sections', () => {
  const mine = { host: '127.0.0.1', port: '3080', sslmode: 'verify-full' };

  it('appends a section, separated by a blank line, and removes it again byte for byte', () => {
    const before = '# comment\n[other]\nhost=x\n';
    const after = upsertServiceSection(before, 'orders', mine);
    expect(after).toBe(
      '# comment\n[other]\nhost=x\n\n[orders]\nhost=127.0.0.1\nport=3080\nsslmode=verify-full\n',
    );
    expect(removeServiceSection(after, 'orders')).toBe(before);
  });

  it('replaces an existing section in place and keeps the ones after it', () => {
    const before = '[orders]\nhost=old\nport=1\n\n[other]\nhost=x\n';
    expect(upsertServiceSection(before, 'orders', mine)).toBe(
      '[orders]\nhost=127.0.0.1\nport=3080\nsslmode=verify-full\n\n[other]\nhost=x\n',
    );
  });

  it('writes into an empty file and says when there is nothing to remove', () => {
    expect(upsertServiceSection('', 'a', { host: 'h' })).toBe('[a]\nhost=h\n');
    expect(removeServiceSection('[b]\nhost=h\n', 'a')).toBeUndefined();
  });
});
