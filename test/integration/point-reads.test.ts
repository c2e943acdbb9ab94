import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardgateError } from '../../src/core/errors.js';
import type { Appointment } from '../../src/gen/shardgate/v1/appointment.js';
import type { Database } from '../../src/pg/database.js';
import {
  singleReadSql,
  type PointReadLimits,
  type PointReadSpec,
} from '../../src/pg/point-reads.js';
import {
  countedReads,
  holdClientTables,
  pointReadsDatabase,
  startCoalescingGateway,
  type SentStatement as Sent,
} from '../support/point-reads-rig.js';
import {
  adminUrlOf,
  createTestTopology,
  eventually,
  freshClientId,
  statusOf,
  withPg,
} from '../support/harness.js';

type Row = { id: string; label: string };
const SPEC: PointReadSpec = { table: 'appointments', columns: 'id, label' };
const A = pg.escapeIdentifier('pr_a');
const B = pg.escapeIdentifier('pr_b');
const C = pg.escapeIdentifier('pr_c');
/** Schema whose table was dropped (as a move leaves it) and one that never existed. */
const DROPPED = pg.escapeIdentifier('pr_dropped');
const GONE = pg.escapeIdentifier('pr_no_such_schema');
/** ids.a, ids.b, ids.c live only in A, B, C; ids.shared in A and B with different labels. */
const ids = { a: randomUUID(), b: randomUUID(), c: randomUUID(), shared: randomUUID() };
const missing = randomUUID();
const ROWS = new Map<string, Row[]>([
  [
    A,
    [
      { id: ids.a, label: 'a in A' },
      { id: ids.shared, label: 'shared in A' },
    ],
  ],
  [
    B,
    [
      { id: ids.b, label: 'b in B' },
      { id: ids.shared, label: 'shared in B' },
    ],
  ],
  [C, [{ id: ids.c, label: 'c in C' }]],
]);
const rowOf = (schema: string, id: string): Row | undefined =>
  ROWS.get(schema)?.find((r) => r.id === id);

/** The ids a sent statement carries: per branch an array or a `{…}` array literal, or the lone id. */
const idsOf = (s: Sent): unknown[] =>
  s.values.flatMap((v) =>
    typeof v === 'string' && v.startsWith('{') ? v.slice(1, -1).split(',') : v,
  );

/** The 'cancelled' ShardgateError a read gets when its own signal fires. */
const CANCELLED = { name: 'ShardgateError', code: 'cancelled' };

/** A promise's settlement, observable without awaiting it. */
function track<T>(p: Promise<T>): { state: 'pending' | 'fulfilled' | 'rejected'; error?: unknown } {
  const t: { state: 'pending' | 'fulfilled' | 'rejected'; error?: unknown } = { state: 'pending' };
  p.then(
    () => (t.state = 'fulfilled'),
    (error: unknown) => Object.assign(t, { state: 'rejected', error }),
  );
  return t;
}
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('PointReads on a real database', () => {
  let db: Database;
  let adminUrl: string;
  const poolErrors: Error[] = [];

  beforeAll(async () => {
    const { shards } = await createTestTopology(1);
    const url = shards[0]!.url;
    adminUrl = adminUrlOf(url);
    await withPg(url, async (c) => {
      for (const s of [A, B, C, DROPPED]) {
        await c.query(`CREATE SCHEMA ${s}`);
        await c.query(`CREATE TABLE ${s}.appointments (id uuid PRIMARY KEY, label text NOT NULL)`);
        for (const r of ROWS.get(s) ?? [])
          await c.query(`INSERT INTO ${s}.appointments VALUES ($1, $2)`, [r.id, r.label]);
      }
      await c.query(`DROP TABLE ${DROPPED}.appointments`);
    });
    db = pointReadsDatabase(url, "shard 'pr'", poolErrors);
  });
  afterAll(async () => {
    await db?.close();
    expect(poolErrors).toEqual([]);
  });

  const counted = (limits: PointReadLimits) => countedReads(db, limits);

  /** 20 reads over A, B, C: own ids, the shared id, absent ids, ids of other schemas. */
  const MIXED: [string, string][] = [A, B, C]
    .flatMap((s) =>
      [ids.a, ids.b, ids.c, ids.shared, missing, randomUUID(), ids.a].map(
        (id): [string, string] => [s, id],
      ),
    )
    .slice(0, 20);

  it('answers 20 concurrent reads over 3 schemas with one statement, each with its own schema’s row', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const got = await Promise.all(MIXED.map(([s, id]) => reads.read<Row>(SPEC, s, id, undefined)));
    expect(got).toEqual(MIXED.map(([s, id]) => rowOf(s, id)));
    expect(got.filter(Boolean)).toHaveLength(6); // 3 in A (two of them ids.a), 2 in B, 1 in C
    expect(sent).toHaveLength(1);
    expect(sent[0]!.text.split(' UNION ALL ')).toHaveLength(3);
    expect(idsOf(sent[0]!)).toHaveLength(20);
  });

  it('coalesces reads that arrive while a statement runs into the next one', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const first = reads.read<Row>(SPEC, A, ids.a, undefined);
    await nextTurn();
    expect(sent).toHaveLength(1);
    const rest = MIXED.slice(0, 10).map(([s, id]) => reads.read<Row>(SPEC, s, id, undefined));
    expect(await first).toEqual(rowOf(A, ids.a));
    expect(await Promise.all(rest)).toEqual(MIXED.slice(0, 10).map(([s, id]) => rowOf(s, id)));
    expect(sent.map((s) => idsOf(s).length)).toEqual([1, 10]);
  });

  it('two concurrent reads of the same id in one schema both get the row (a batch answered only the first)', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const got = await Promise.all(
      [A, A, B, A].map((s) => reads.read<Row>(SPEC, s, ids.shared, undefined)),
    );
    expect(got).toEqual([A, A, B, A].map((s) => rowOf(s, ids.shared)));
    expect(sent).toHaveLength(1);
  });

  it('with readBatchStatements 0 sends every read as its own single-row statement', async () => {
    const { reads, sent } = counted({ statements: 0, maxBatch: 64 });
    const got = await Promise.all(MIXED.map(([s, id]) => reads.read<Row>(SPEC, s, id, undefined)));
    expect(got).toEqual(MIXED.map(([s, id]) => rowOf(s, id)));
    expect(sent).toEqual(MIXED.map(([s, id]) => ({ text: singleReadSql(SPEC, s), values: [id] })));
  });

  it('never puts more than readBatchMax reads in one statement', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 4 });
    const ten = MIXED.slice(0, 10);
    const got = await Promise.all(ten.map(([s, id]) => reads.read<Row>(SPEC, s, id, undefined)));
    expect(got).toEqual(ten.map(([s, id]) => rowOf(s, id)));
    expect(sent.map((s) => idsOf(s).length)).toEqual([4, 4, 2]);
    expect(sent.flatMap(idsOf)).toEqual(ten.map(([, id]) => id));
  });

  it('sends a lone read in the turn after it arrived, as the single-row statement', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const read = reads.read<Row>(SPEC, B, ids.b, undefined);
    await nextTurn();
    expect(sent).toEqual([{ text: singleReadSql(SPEC, B), values: [ids.b] }]);
    expect(await read).toEqual(rowOf(B, ids.b));
  });

  it('when a shared statement fails, healthy reads get their rows and the others the error a lone read gets', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const failing = [
      [GONE, ids.a, 'unavailable', 'placement-stale'],
      [DROPPED, ids.b, 'unavailable', 'placement-stale'],
      [C, 'not-a-uuid', 'invalid-argument', undefined],
      // Two ids in one string must not split into two array elements inside a shared statement.
      [C, `${ids.a},${ids.b}`, 'invalid-argument', undefined],
    ] as const;
    const healthy = [
      [A, ids.a],
      [B, ids.shared],
      [C, missing],
    ] as const;
    const outcome = ([s, id]: readonly [string, string, ...unknown[]], via = reads) =>
      via.read<Row>(SPEC, s, id, undefined).catch((e: unknown) => e);
    const got = await Promise.all([...healthy, ...failing].map((r) => outcome(r)));
    expect(got.slice(0, 3)).toEqual(healthy.map(([s, id]) => rowOf(s, id)));
    // One shared statement for the five UUID reads, their five re-runs alone, and the two
    // malformed ids, which never join a shared statement.
    expect(sent).toHaveLength(1 + 5 + 2);
    const shape = (e: unknown) => {
      expect(e).toBeInstanceOf(ShardgateError);
      const { code, reason, message } = e as ShardgateError;
      return { code, reason, message };
    };
    for (const [i, read] of failing.entries()) {
      const alone = await outcome(read, counted({ statements: 1, maxBatch: 64 }).reads);
      expect(shape(got[3 + i])).toEqual(shape(alone));
      expect(shape(got[3 + i])).toMatchObject({ code: read[2], reason: read[3] });
    }
  });

  it('rejects a read whose signal already fired without sending anything', async () => {
    for (const statements of [0, 1]) {
      const { reads, sent } = counted({ statements, maxBatch: 64 });
      const controller = new AbortController();
      controller.abort();
      await expect(reads.read(SPEC, A, ids.a, controller.signal)).rejects.toMatchObject(CANCELLED);
      await nextTurn();
      expect(sent).toEqual([]);
    }
  });

  it('drops a read cancelled before its batch goes out; the rest of the batch is answered', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const [cancel, deadline] = [new AbortController(), new AbortController()];
    const kept = reads.read<Row>(SPEC, A, ids.a, undefined);
    const dropped = reads.read<Row>(SPEC, B, ids.b, cancel.signal);
    const timedOut = reads.read<Row>(SPEC, C, ids.c, deadline.signal);
    const other = reads.read<Row>(SPEC, B, ids.shared, undefined);
    cancel.abort();
    deadline.abort(new DOMException('deadline', 'TimeoutError'));
    await expect(dropped).rejects.toMatchObject(CANCELLED);
    await expect(timedOut).rejects.toMatchObject({ code: 'deadline-exceeded' });
    expect(await Promise.all([kept, other])).toEqual([rowOf(A, ids.a), rowOf(B, ids.shared)]);
    expect(sent.map(idsOf)).toEqual([[ids.a, ids.shared]]);
  });

  /** Holds ACCESS EXCLUSIVE on `schema`.appointments until the returned release is called. */
  async function lockTable(schema: string): Promise<() => Promise<void>> {
    const locker = new pg.Client({ connectionString: adminUrl });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${schema}.appointments IN ACCESS EXCLUSIVE MODE`);
    return async () => {
      await locker.query('COMMIT');
      await locker.end();
    };
  }

  /** Backends of this database running a coalesced statement, and how many wait on a lock. */
  const runningBatches = (): Promise<{ running: number; waiting: number }> =>
    withPg(adminUrl, async (c) => {
      const { rows } = await c.query<{ running: number; waiting: number }>(
        `SELECT count(*)::int AS running, count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiting
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state = 'active' AND position('__branch' IN query) > 0`,
      );
      return rows[0]!;
    });

  it('a read cancelled while queued or while its batch runs leaves at once; the others still resolve', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const release = await lockTable(A);
    try {
      const running = [new AbortController(), undefined].map((c) => ({
        c,
        t: track(reads.read<Row>(SPEC, A, c ? ids.shared : ids.a, c?.signal)),
      }));
      await eventually(async () =>
        expect(await runningBatches()).toEqual({ running: 1, waiting: 1 }),
      );
      const queued = [new AbortController(), undefined].map((c) => ({
        c,
        t: track(reads.read<Row>(SPEC, B, c ? ids.b : ids.shared, c?.signal)),
      }));
      running[0]!.c!.abort();
      queued[0]!.c!.abort();
      await nextTurn();
      expect([running[0]!.t, queued[0]!.t]).toMatchObject([
        { state: 'rejected', error: CANCELLED },
        { state: 'rejected', error: CANCELLED },
      ]);
      expect([running[1]!.t.state, queued[1]!.t.state]).toEqual(['pending', 'pending']);
      expect(await runningBatches()).toEqual({ running: 1, waiting: 1 });
    } finally {
      await release();
    }
    await eventually(async () => expect(sent).toHaveLength(2));
    // The batch was not cancelled (no re-run alone); the queued survivor went out by itself.
    expect(idsOf(sent[0]!)).toEqual([ids.shared, ids.a]);
    expect(sent[1]).toEqual({ text: singleReadSql(SPEC, B), values: [ids.shared] });
  });

  it('cancels the running statement once every read in it has been cancelled', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const release = await lockTable(A);
    try {
      const controllers = [0, 1, 2].map(() => new AbortController());
      const all = controllers.map((c, i) =>
        reads.read(SPEC, A, [ids.a, ids.shared, missing][i]!, c.signal),
      );
      await eventually(async () =>
        expect(await runningBatches()).toEqual({ running: 1, waiting: 1 }),
      );
      for (const c of controllers) c.abort();
      for (const read of all) await expect(read).rejects.toMatchObject(CANCELLED);
      await eventually(async () =>
        expect(await runningBatches()).toEqual({ running: 0, waiting: 0 }),
      );
    } finally {
      await release();
    }
    expect(sent).toHaveLength(1);
    // The connection went back clean: the next read is answered.
    expect(await reads.read<Row>(SPEC, A, ids.a, undefined)).toEqual(rowOf(A, ids.a));
  });
});

describe('GetAppointment with coalesced point reads (end to end)', () => {
  it('50 concurrent calls over two clients on one shard each get exactly their appointment or NOT_FOUND', async () => {
    const { gw, shardUrl, shared, pendingReads, close } = await startCoalescingGateway();
    try {
      const [own, other] = [freshClientId('pra'), freshClientId('prb')];
      const made: { owner: string; stranger: string; a: Appointment }[] = [];
      for (const [owner, stranger] of [
        [own, other],
        [other, own],
      ] as const) {
        await gw.client.tenants.createTenant({ clientId: owner });
        const { appointments } = await gw.client.appointments.batchCreateAppointments({
          clientId: owner,
          appointments: [0, 1, 2, 3, 4].map((i) => ({
            clientPhone: '+1 555 0100',
            scheduledAt: new Date(Date.UTC(2031, 0, 1 + i)),
            serviceType: `${owner}-${i}`,
          })),
        });
        made.push(...appointments.map((a) => ({ owner, stranger, a })));
      }
      // Both tables held: every call below waits in the shard's point-read lane, then they go out
      // together once the locks are released, whatever the machine's speed.
      const held = await holdClientTables(shardUrl, [own, other], 'appointments');
      // Per appointment: its owner twice more (same id, same schema, one batch), the other client
      // (its schema has no such row), and a random id.
      const calls = made.flatMap(({ owner, stranger, a }) =>
        [
          [owner, a.id, a],
          [stranger, a.id, undefined],
          [owner, a.id, a],
          [stranger, randomUUID(), undefined],
          [owner, a.id, a],
        ].map(([clientId, id, want]) => {
          const call = gw.client.appointments.getAppointment({
            clientId: clientId as string,
            id: id as string,
          });
          return want
            ? call.then((res) => expect(res.appointment).toEqual(want))
            : statusOf(call).then((code) => expect(code).toBe(Status.NOT_FOUND));
        }),
      );
      expect(calls).toHaveLength(50);
      await eventually(async () => expect(pendingReads()).toBe(50));
      await held.release();
      await Promise.all(calls);
      // All 50 waited in the lane together (above), so at most two statements answered them: the
      // first, held by the locks, and one for everything that queued behind it.
      expect(shared.length).toBeGreaterThan(0);
      expect(shared.length).toBeLessThanOrEqual(2);
    } finally {
      await close();
    }
  });
});
