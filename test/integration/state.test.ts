import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { State } from '../../src/gen/shardgate/v1/state.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  type TestGateway,
} from '../support/harness.js';

type Json = Record<string, unknown>;

describe('StateService', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology());
  });
  afterAll(async () => gw?.close());

  async function newClient(): Promise<string> {
    const clientId = freshClientId('state');
    await gw.client.tenants.createTenant({ clientId });
    return clientId;
  }

  const getState = async (clientId: string): Promise<State> =>
    (await gw.client.state.getState({ clientId })).state!;
  const put = async (clientId: string, document: Json, expectedVersion?: number): Promise<State> =>
    (await gw.client.state.putState({ clientId, document, expectedVersion })).state!;
  const patch = async (clientId: string, p: Json, expectedVersion?: number): Promise<State> =>
    (await gw.client.state.patchState({ clientId, patch: p, expectedVersion })).state!;

  describe('GetState and PutState', () => {
    it('starts as {} at version 0 without updated_at', async () => {
      const clientId = await newClient();
      expect(await getState(clientId)).toEqual({ document: {}, version: 0, updatedAt: undefined });
    });

    it('replaces the document, increments the version and sets updated_at', async () => {
      const clientId = await newClient();
      const document = {
        step: 'intake',
        nested: { list: [1, 'two', true, null, { x: 1.5 }] },
        empty: {},
      };
      const first = await put(clientId, document);
      expect(first).toEqual({ document, version: 1, updatedAt: first.updatedAt });
      expect(first.updatedAt).toBeInstanceOf(Date);
      expect(Math.abs(first.updatedAt!.getTime() - Date.now())).toBeLessThan(60_000);
      expect(await getState(clientId)).toEqual(first);

      // A put replaces; it does not merge.
      const second = await put(clientId, { step: 'quote' });
      expect(second.document).toEqual({ step: 'quote' });
      expect(second.version).toBe(2);
      expect(second.updatedAt!.getTime()).toBeGreaterThanOrEqual(first.updatedAt!.getTime());
      expect(await getState(clientId)).toEqual(second);
    });

    it('clears the document with an explicit {}, but refuses a missing document', async () => {
      const clientId = await newClient();
      const before = await put(clientId, { keep: 'me' });
      const err = await errorOf(gw.client.state.putState({ clientId }));
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain('document is required');
      expect(await getState(clientId)).toEqual(before);
      const cleared = await put(clientId, {});
      expect(cleared).toMatchObject({ document: {}, version: 2 });
    });

    it('writes with a current expected_version, including 0 for a fresh client', async () => {
      const clientId = await newClient();
      expect((await put(clientId, { a: 1 }, 0)).version).toBe(1);
      expect((await put(clientId, { a: 2 }, 1)).version).toBe(2);
      expect(await getState(clientId)).toMatchObject({ document: { a: 2 }, version: 2 });
    });

    it.each([
      ['stale', 1],
      ['ahead', 7],
    ])(
      'refuses a %s expected_version with ABORTED and changes nothing',
      async (_name, expectedVersion) => {
        const clientId = await newClient();
        await put(clientId, { a: 1 });
        const before = await put(clientId, { a: 2 });
        expect(before.version).toBe(2);
        const err = await errorOf(
          gw.client.state.putState({ clientId, document: { a: 3 }, expectedVersion }),
        );
        expect(err.code).toBe(Status.ABORTED);
        expect(err.details).toContain(`expected_version ${expectedVersion}`);
        expect(err.details).toContain('current version is 2');
        expect(await getState(clientId)).toEqual(before);
      },
    );
  });

  describe('PatchState', () => {
    it('follows RFC 7386: nested merge, null deletes, arrays are replaced', async () => {
      const clientId = await newClient();
      await put(clientId, {
        a: { b: 1, c: { d: 2, e: 3 } },
        keep: 'x',
        arr: [1, 2, 3],
        objs: [{ id: 1, v: 'a' }],
        gone: true,
        scalar: 5,
        obj: { y: 1 },
      });
      const patched = await patch(clientId, {
        a: { c: { d: 20, e: null }, f: [{ g: 1 }] },
        arr: [9],
        objs: [{ id: 1 }],
        gone: null,
        absent: null,
        scalar: { now: 'an object', dropped: null },
        obj: 'now a string',
        fresh: { h: null, i: 1 },
      });
      const expected = {
        a: { b: 1, c: { d: 20 }, f: [{ g: 1 }] },
        keep: 'x',
        arr: [9],
        objs: [{ id: 1 }],
        scalar: { now: 'an object' },
        obj: 'now a string',
        fresh: { i: 1 },
      };
      expect(patched).toEqual({ document: expected, version: 2, updatedAt: patched.updatedAt });
      expect(await getState(clientId)).toEqual(patched);
    });

    it('applies a patch with a current expected_version', async () => {
      const clientId = await newClient();
      await put(clientId, { a: 1 });
      const s = await patch(clientId, { b: 2 }, 1);
      expect(s).toMatchObject({ document: { a: 1, b: 2 }, version: 2 });
    });

    it('refuses a stale expected_version with ABORTED and changes nothing', async () => {
      const clientId = await newClient();
      await put(clientId, { a: 1 });
      const before = await patch(clientId, { b: 2 });
      const err = await errorOf(
        gw.client.state.patchState({ clientId, patch: { c: 3, a: null }, expectedVersion: 1 }),
      );
      expect(err.code).toBe(Status.ABORTED);
      expect(err.details).toContain('expected_version 1');
      expect(await getState(clientId)).toEqual(before);
    });

    it('refuses a patch whose result would exceed 256 KiB and changes nothing', async () => {
      const clientId = await newClient();
      const before = await put(clientId, { big: 'x'.repeat(200 * 1024) });
      const err = await errorOf(
        gw.client.state.patchState({ clientId, patch: { more: 'y'.repeat(100 * 1024) } }),
      );
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain('document');
      expect(await getState(clientId)).toEqual(before);
    });

    // Regression: json-merge-patch called `target.hasOwnProperty(key)`, which a document key
    // named `hasOwnProperty` shadows, so deleting any key failed with INTERNAL.
    it('deletes a key from a document that has a key named hasOwnProperty', async () => {
      const clientId = await newClient();
      await put(clientId, {
        hasOwnProperty: 'shadow',
        nested: { hasOwnProperty: 1, drop: 1 },
        drop: 1,
      });
      const s = await patch(clientId, { drop: null, nested: { drop: null } });
      expect(s.document).toEqual({ hasOwnProperty: 'shadow', nested: { hasOwnProperty: 1 } });
      expect(s.version).toBe(2);
    });
  });

  describe('concurrent writers', () => {
    it('keeps every key of 20 concurrent patches without expected_version', async () => {
      const clientId = await newClient();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => patch(clientId, { [`k${i}`]: { writer: i } })),
      );
      expect(results.map((s) => s.version).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      results.forEach((s, i) => expect(s.document![`k${i}`]).toEqual({ writer: i }));
      const final = await getState(clientId);
      expect(final.version).toBe(20);
      expect(final.document).toEqual(
        Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, { writer: i }])),
      );
    });

    it('lets exactly one of 10 concurrent puts with the same expected_version win', async () => {
      const clientId = await newClient();
      await put(clientId, { start: true });
      const current = await put(clientId, { start: false });
      expect(current.version).toBe(2);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => put(clientId, { winner: i }, current.version)),
      );
      const won = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const lost = outcomes.flatMap((o) =>
        o.status === 'rejected' ? [o.reason as { code?: number }] : [],
      );
      expect(won).toHaveLength(1);
      expect(lost.map((e) => e.code)).toEqual(Array(9).fill(Status.ABORTED));
      expect(won[0]!.version).toBe(3);
      expect(await getState(clientId)).toEqual(won[0]);
    });

    it('lets exactly one of 10 concurrent patches with the same expected_version win', async () => {
      const clientId = await newClient();
      const current = await put(clientId, { base: 1 });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => patch(clientId, { [`p${i}`]: i }, current.version)),
      );
      const won = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const codes = outcomes.flatMap((o) =>
        o.status === 'rejected' ? [(o.reason as { code?: number }).code] : [],
      );
      expect(won).toHaveLength(1);
      expect(codes).toEqual(Array(9).fill(Status.ABORTED));
      expect(won[0]!.version).toBe(2);
      expect(Object.keys(won[0]!.document!)).toHaveLength(2);
      expect(await getState(clientId)).toEqual(won[0]);
    });

    it('never shows a version going backwards while writers race', async () => {
      const clientId = await newClient();
      let writing = true;
      const seen: number[] = [];
      const reader = (async () => {
        while (writing) seen.push((await getState(clientId)).version);
      })();
      const writer = async (w: number): Promise<number[]> => {
        const versions: number[] = [];
        for (let i = 0; i < 8; i++) {
          const s =
            i % 2 === 0
              ? await patch(clientId, { [`w${w}`]: i })
              : await put(clientId, { [`w${w}`]: i, by: w });
          versions.push(s.version);
        }
        return versions;
      };
      let perWriter: number[][];
      try {
        perWriter = await Promise.all([0, 1, 2, 3].map(writer));
      } finally {
        writing = false;
        await reader;
      }
      for (const versions of perWriter) {
        expect(versions).toEqual([...versions].sort((a, b) => a - b));
        expect(new Set(versions).size).toBe(versions.length);
      }
      expect(new Set(perWriter.flat()).size).toBe(32);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      expect((await getState(clientId)).version).toBe(32);
      expect(
        await statusOf(gw.client.state.putState({ clientId, document: {}, expectedVersion: 31 })),
      ).toBe(Status.ABORTED);
    });
  });
});
