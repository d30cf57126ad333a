import { describe, expect, it } from 'vitest';
import { busSubjects } from '../../../src/live/bus/feed-bus.js';
import { busAddress, natsOptionsOf } from '../../../src/live/bus/bus-url.js';
import { decodeBatch, decodeFrontier, encodeBatch, encodeFrontier, encodeText } from '../../../src/live/bus/feed-messages.js';
import type { JobRow } from '../../../src/jobs/model.js';

describe('the feed bus', () => {
  it('reads credentials from FEED_BUS for the client, and never shows them', () => {
    expect(natsOptionsOf('nats://gateway:s%40cret@bus.internal:4333')).toEqual({ servers: 'bus.internal:4333', user: 'gateway', pass: 's@cret' });
    expect(natsOptionsOf('nats://t0ken@bus.internal')).toEqual({ servers: 'bus.internal:4222', token: 't0ken' });
    expect(natsOptionsOf('nats://127.0.0.1:4222')).toEqual({ servers: '127.0.0.1:4222' });
    expect(busAddress('nats://gateway:secret@bus.internal:4333')).toBe('nats://bus.internal:4333');
    expect(busAddress('nats://t0ken@bus.internal')).not.toContain('t0ken');
    expect(busAddress('nats://u:secret@host:99999')).not.toContain('secret');
  });

  it('keeps the subjects of each database apart, whatever its identity holds', () => {
    const workspace = '3f0e5a52-96f4-4c39-9f43-3d0d3f3f6a10';
    const installation = '0d1c5c9e-5f1a-4f57-b0b9-7f3c2c1e9a01';
    expect(busSubjects(installation).workspace(workspace)).toBe(`jobs-gateway.${installation}.workspace.${workspace}`);
    expect(busSubjects('tenant.a').frontier).not.toBe(busSubjects('tenant_a').frontier);
    for (const identity of ['a.b', 'a*', 'a>', 'a b']) expect(busSubjects(identity).wake.split('.')).toHaveLength(3);
  });

  it('carries a batch’s rows whole (dates, bigints, JSON), and ignores what is not one of its messages', () => {
    const row = {
      id: '3f0e5a52-96f4-4c39-9f43-3d0d3f3f6a10',
      workspaceId: '9d6c1f43-1d6e-4c42-8a53-0f6f3c1b2a77',
      changeXid: 4n,
      changeSeq: 12345678901234567n,
      changeXmin: 0n,
      startedAt: new Date('2026-12-07T10:00:00.123Z'),
      updatedAt: new Date('2026-12-07T10:00:01.456Z'),
      completedAt: null,
      leaseExpiresAt: new Date('2026-12-07T10:05:01.456Z'),
      metadata: { nested: { list: [1, 'two'] } },
      steps: [{ id: 'a', name: 'A', status: 'RUNNING' }],
      progress: 50,
    } as unknown as JobRow;
    const batch = { reader: 'r', prev: 10n ** 19n, to: 4n * 10n ** 19n + 12345678901234567n, rows: [row] };
    expect(decodeBatch(encodeBatch(batch))).toEqual(batch);
    expect(decodeBatch(encodeBatch({ ...batch, prev: null, rows: null }))).toEqual({ ...batch, prev: null, rows: null });
    const frontier = { reader: 'r', position: 5n * 10n ** 19n, behind: [[-12, 3n * 10n ** 19n]] as const };
    expect(decodeFrontier(encodeFrontier(frontier))).toEqual(frontier);
    for (const junk of ['', 'not json', '{}', '{"reader":1,"to":"1","prev":null,"rows":[]}', '{"reader":"r","to":"x","prev":null,"rows":[]}']) {
      expect(decodeBatch(encodeText(junk)), junk).toBeUndefined();
      expect(decodeFrontier(encodeText(junk)), junk).toBeUndefined();
    }
  });
});
