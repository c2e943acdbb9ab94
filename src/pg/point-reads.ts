import type pg from 'pg';
import { isShardgateError } from '../core/errors.js';
import { abortedBySignal } from './sql-errors.js';

/**
 * A table read one row at a time in many schemas, with the same columns in each: by primary key
 * `id`; or (`singleRow`) a table that holds one row per schema, read without a key; or
 * (`latestBy`) the first row in an order among those whose column equals a key.
 */
export interface PointReadSpec {
  /** Unquoted table name, e.g. `appointments`. */
  readonly table: string;
  /** The select list, with aliases; must not produce a column named `__branch`. */
  readonly columns: string;
  /** The table holds one row per schema (a client's state document): read it whole. */
  readonly singleRow?: boolean;
  /** The newest row for a key: `WHERE <column> = key ORDER BY <order> LIMIT 1` (SQL, trusted). */
  readonly latestBy?: { readonly column: string; readonly order: string };
}

/** How point reads on one database share statements (config `pool.readBatch*`). */
export interface PointReadLimits {
  /** Coalesced statements in flight per table at once; 0 turns coalescing off. */
  readonly statements: number;
  /** Most reads one statement answers. */
  readonly maxBatch: number;
}

/** Runs one statement (the Database's own query: pool checkout, cancellation, translation). */
export type RunStatement = <R extends pg.QueryResultRow>(
  text: string,
  values: unknown[],
  signal: AbortSignal | undefined,
) => Promise<pg.QueryResult<R>>;

/** A lower-case UUID as PostgreSQL prints it: safe inside an array literal without quoting. */
const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Waiter<R> {
  readonly schema: string;
  /** The key read (an id, or a latestBy key); undefined for a single-row table. */
  readonly id: string | undefined;
  readonly signal: AbortSignal | undefined;
  resolve(row: R | undefined): void;
  reject(err: unknown): void;
  onAbort: (() => void) | undefined;
  done: boolean;
  /** The shared statement the read is in, once it has gone out with others. */
  batch: SharedStatement | undefined;
}

/** A statement answering several reads; cancelled once every one of them has left. */
interface SharedStatement {
  readonly size: number;
  left: number;
  readonly controller: AbortController;
}

interface Lane<R> {
  queue: Waiter<R>[];
  running: number;
  scheduled: boolean;
}

/**
 * Coalesces point reads of one database: reads that arrive in the same event-loop turn, or while
 * `statements` statements of the same table are already running, are answered by one statement
 * (a UNION ALL over the schemas involved, `id = ANY(...)` per schema, or the whole single-row
 * table). Under load that replaces n round trips, parses and plans by one, on the gateway and on
 * PostgreSQL alike; a lone read still goes out in the turn it arrived, as its own statement.
 *
 * Each read keeps its own semantics: a cancelled read leaves at once (its statement is cancelled
 * only when every read in it has left), and if a shared statement fails for one schema's reason
 * (say that client's schema was just dropped by a move) each of its reads runs again alone, so
 * every caller gets the error or row of its own statement. A failure of the whole shard (it is
 * unreachable or past its statement timeout) is every read's answer at once.
 */
export class PointReads {
  readonly #lanes = new Map<PointReadSpec, Lane<pg.QueryResultRow>>();
  readonly #limits: PointReadLimits;
  readonly #run: RunStatement;
  #pending = 0;

  constructor(limits: PointReadLimits, run: RunStatement) {
    this.#limits = limits;
    this.#run = run;
  }

  /** Coalesced reads not answered yet, waiting or in a running statement (metrics, tests). */
  get pending(): number {
    return this.#pending;
  }

  /**
   * The row of `<schema>.<table>` whose id is `id` (lower-case UUID text), or of a single-row
   * table (`id` undefined); undefined when there is none.
   */
  read<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    schema: string,
    id: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<R | undefined> {
    if (signal?.aborted) return Promise.reject(abortedBySignal(signal));
    if ((id === undefined) !== (spec.singleRow === true)) {
      return Promise.reject(
        new TypeError(`${spec.table}: read with a key exactly when not singleRow`),
      );
    }
    // Only lower-case UUID text goes into a shared statement's array literal; anything else (which
    // callers should never pass) goes alone, so it fails exactly as it would alone. The key of a
    // latestBy read is a bound parameter of its own, so any text may share a statement.
    const byId = !spec.singleRow && !spec.latestBy;
    if (this.#limits.statements === 0 || (byId && !UUID_TEXT.test(id!))) {
      return this.#single<R>(spec, schema, id, signal);
    }
    let lane = this.#lanes.get(spec) as Lane<R> | undefined;
    if (!lane) {
      lane = { queue: [], running: 0, scheduled: false };
      this.#lanes.set(spec, lane as Lane<pg.QueryResultRow>);
    }
    const ready = lane;
    return new Promise<R | undefined>((resolve, reject) => {
      this.#pending++;
      const waiter: Waiter<R> = {
        schema,
        id,
        signal,
        resolve: (row) => {
          this.#pending--;
          resolve(row);
        },
        reject: (err) => {
          this.#pending--;
          reject(err);
        },
        onAbort: undefined,
        done: false,
        batch: undefined,
      };
      if (signal) {
        waiter.onAbort = () => {
          settle(waiter, undefined, abortedBySignal(signal));
          const batch = waiter.batch;
          if (batch && ++batch.left === batch.size) {
            batch.controller.abort(new DOMException('every read left', 'AbortError'));
          }
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      ready.queue.push(waiter);
      if (!ready.scheduled && ready.running < this.#limits.statements) {
        ready.scheduled = true;
        setImmediate(() => this.#flush(spec, ready));
      }
    });
  }

  /** Starts statements for queued reads while the lane has room. */
  #flush<R extends pg.QueryResultRow>(spec: PointReadSpec, lane: Lane<R>): void {
    lane.scheduled = false;
    while (lane.running < this.#limits.statements && lane.queue.length > 0) {
      const batch = takeLive(lane.queue, this.#limits.maxBatch);
      if (batch.length === 0) break;
      lane.running++;
      void this.#answer(spec, batch).finally(() => {
        lane.running--;
        if (lane.queue.length > 0 && !lane.scheduled) this.#flush(spec, lane);
      });
    }
  }

  /** Runs one batch and settles every read in it; never rejects. */
  async #answer<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    batch: Waiter<R>[],
  ): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch as [Waiter<R>];
      try {
        settle(only, await this.#single<R>(spec, only.schema, only.id, only.signal));
      } catch (err) {
        settle(only, undefined, err);
      }
      return;
    }
    const { text, values, branches } = batchStatement(spec, batch);
    const byId = !spec.singleRow && !spec.latestBy;
    const shared: SharedStatement = {
      size: batch.length,
      left: 0,
      controller: new AbortController(),
    };
    for (const w of batch) w.batch = shared;
    try {
      const { rows } = await this.#run<R & { __branch: number }>(
        text,
        values,
        shared.controller.signal,
      );
      for (const row of rows) {
        const { __branch, ...record } = row;
        // Several reads in a batch may ask for the same row (a retry, two pollers): each gets it.
        for (const w of branches[__branch]!) {
          if (!byId || w.id === record['id']) settle(w, record as unknown as R);
        }
      }
      for (const w of batch) settle(w, undefined);
    } catch (err) {
      // A failure of the whole shard (unreachable, past the statement timeout, a conflict) is
      // every read's answer: running each again alone would multiply the load on a shard that
      // is already struggling, and make each caller wait for it twice.
      if (isShardWide(err)) {
        for (const w of batch) settle(w, undefined, err);
        return;
      }
      // Anything else may be one schema's (dropped by a move, say): alone, each read meets its
      // own fate, its row or the error its own statement gets.
      await Promise.all(
        batch
          .filter((w) => !w.done)
          .map((w) =>
            this.#single<R>(spec, w.schema, w.id, w.signal).then(
              (row) => settle(w, row),
              (err: unknown) => settle(w, undefined, err),
            ),
          ),
      );
    }
  }

  async #single<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    schema: string,
    id: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<R | undefined> {
    const res = await this.#run<R>(
      singleReadSql(spec, schema),
      id === undefined ? [] : [id],
      signal,
    );
    return res.rows[0];
  }
}

/** The statement of a read that goes out alone (bound parameter: the id, if any). */
export function singleReadSql(spec: PointReadSpec, schema: string): string {
  const from = `SELECT ${spec.columns} FROM ${schema}.${spec.table}`;
  if (spec.singleRow) return from;
  if (spec.latestBy) {
    return `${from} WHERE ${spec.latestBy.column} = $1 ORDER BY ${spec.latestBy.order} LIMIT 1`;
  }
  return `${from} WHERE id = $1`;
}

/** Up to `max` reads from the front of the queue that are still waiting. */
function takeLive<R>(queue: Waiter<R>[], max: number): Waiter<R>[] {
  const batch: Waiter<R>[] = [];
  let i = 0;
  for (; i < queue.length && batch.length < max; i++) {
    const w = queue[i]!;
    if (!w.done) batch.push(w);
  }
  queue.splice(0, i);
  return batch;
}

/**
 * One statement for a batch: a branch per schema (per schema and key for latestBy), each tagged
 * with its index.
 */
function batchStatement<R>(
  spec: PointReadSpec,
  batch: readonly Waiter<R>[],
): { text: string; values: unknown[]; branches: Waiter<R>[][] } {
  const groups = new Map<string, Waiter<R>[]>();
  for (const w of batch) {
    // A NUL never appears in a quoted identifier, so it cannot join a schema and a key ambiguously.
    const group = spec.latestBy ? `${w.schema}\u0000${w.id!}` : w.schema;
    const members = groups.get(group);
    if (members) members.push(w);
    else groups.set(group, [w]);
  }
  const branches = [...groups.values()];
  const parts: string[] = [];
  const values: unknown[] = [];
  branches.forEach((group, b) => {
    const from = `SELECT ${b} AS __branch, ${spec.columns} FROM ${group[0]!.schema}.${spec.table}`;
    if (spec.singleRow) {
      parts.push(from);
      return;
    }
    if (spec.latestBy) {
      values.push(group[0]!.id);
      const { column, order } = spec.latestBy;
      parts.push(`(${from} WHERE ${column} = $${values.length} ORDER BY ${order} LIMIT 1)`);
      return;
    }
    // An array literal built here (read() lets only UUID text in: no commas, quotes or braces);
    // the driver would otherwise escape each element.
    values.push(`{${group.map((w) => w.id).join(',')}}`);
    parts.push(`${from} WHERE id = ANY($${b + 1}::uuid[])`);
  });
  return { text: parts.join(' UNION ALL '), values, branches };
}

/** Resolves or rejects a read once; later outcomes (a result after a cancel) are dropped. */
/** Errors no read of the batch would escape by running alone; see PointReads. */
function isShardWide(err: unknown): boolean {
  return (
    isShardgateError(err) &&
    err.reason !== 'placement-stale' &&
    (err.code === 'unavailable' || err.code === 'deadline-exceeded' || err.code === 'aborted')
  );
}

function settle<R>(w: Waiter<R>, row: R | undefined, err?: unknown): void {
  if (w.done) return;
  w.done = true;
  if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
  if (err === undefined) w.resolve(row);
  else w.reject(err);
}
