import { uuidV7 } from '../core/uuid-v7.js';
import type { Database } from '../pg/database.js';
import { insertOnce, type RequestKey } from '../pg/insert-once.js';

/** An industry benchmark row. */
export interface BenchmarkRecord {
  industry: string;
  metric: string;
  value: number;
  unit: string;
  source: string;
  updatedAt: Date;
}

/** An agent knowledge entry. */
export interface KnowledgeRecord {
  id: string;
  topic: string;
  agent: string;
  content: string;
  createdAt: Date;
}

const MIGRATION_LOCK_KEY = 7_270_451_002;

const BENCHMARK_COLUMNS = `industry, metric, value, unit, source, updated_at AS "updatedAt"`;
const KNOWLEDGE_COLUMNS = `id, topic, agent, content, created_at AS "createdAt"`;

/**
 * Cross-client data in the shared database (schema `shared`), outside every client schema:
 * the agents' context is shared, the clients' data is not.
 */
export class SharedStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** Creates the shared tables if absent (safe from several replicas at once). */
  async migrate(): Promise<void> {
    await this.#db.transaction(undefined, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await tx.query(`CREATE SCHEMA IF NOT EXISTS shared`);
      await tx.query(`CREATE TABLE IF NOT EXISTS shared.benchmarks (
        industry text NOT NULL,
        metric text NOT NULL,
        value double precision NOT NULL,
        unit text NOT NULL DEFAULT '',
        source text NOT NULL DEFAULT '',
        updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        PRIMARY KEY (industry, metric))`);
      await tx.query(
        `CREATE INDEX IF NOT EXISTS benchmarks_metric_idx ON shared.benchmarks (metric, industry)`,
      );
      await tx.query(`CREATE TABLE IF NOT EXISTS shared.knowledge_entries (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        topic text NOT NULL,
        agent text NOT NULL,
        content text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()))`);
      await tx.query(`CREATE INDEX IF NOT EXISTS knowledge_topic_idx
        ON shared.knowledge_entries (topic, created_at DESC, id DESC)`);
      await tx.query(`CREATE INDEX IF NOT EXISTS knowledge_agent_idx
        ON shared.knowledge_entries (agent, created_at DESC, id DESC)`);
      await tx.query(`CREATE INDEX IF NOT EXISTS knowledge_created_idx
        ON shared.knowledge_entries (created_at DESC, id DESC)`);
      // AIP-155 keys of AddKnowledgeEntry (src/pg/insert-once.ts). Every caller writes here, so a
      // key belongs to its caller: one caller's request_id never answers another's request.
      await tx.query(`CREATE TABLE IF NOT EXISTS shared.request_ids (
        caller text NOT NULL,
        request_id uuid NOT NULL,
        method text NOT NULL,
        request_sha256 bytea NOT NULL,
        result_ids uuid[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (caller, request_id))`);
      await tx.query(`CREATE INDEX IF NOT EXISTS request_ids_created_idx
        ON shared.request_ids (created_at)`);
    });
  }

  async putBenchmark(
    b: Omit<BenchmarkRecord, 'updatedAt'>,
    signal?: AbortSignal,
  ): Promise<BenchmarkRecord> {
    const res = await this.#db.query<BenchmarkRecord>(
      `INSERT INTO shared.benchmarks (industry, metric, value, unit, source) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (industry, metric) DO UPDATE SET value = EXCLUDED.value, unit = EXCLUDED.unit,
         source = EXCLUDED.source, updated_at = date_trunc('milliseconds', now())
       RETURNING ${BENCHMARK_COLUMNS}`,
      [b.industry, b.metric, b.value, b.unit, b.source],
      signal,
    );
    return res.rows[0]!;
  }

  async getBenchmark(
    industry: string,
    metric: string,
    signal?: AbortSignal,
  ): Promise<BenchmarkRecord | undefined> {
    const res = await this.#db.query<BenchmarkRecord>(
      `SELECT ${BENCHMARK_COLUMNS} FROM shared.benchmarks WHERE industry = $1 AND metric = $2`,
      [industry, metric],
      signal,
    );
    return res.rows[0];
  }

  /** Benchmarks in (industry, metric) order after the keyset position. */
  async listBenchmarks(
    q: { industry?: string; metric?: string; after?: [string, string]; limit: number },
    signal?: AbortSignal,
  ): Promise<BenchmarkRecord[]> {
    const res = await this.#db.query<BenchmarkRecord>(
      `SELECT ${BENCHMARK_COLUMNS} FROM shared.benchmarks
       WHERE ($1::text IS NULL OR industry = $1) AND ($2::text IS NULL OR metric = $2)
         AND ($3::text IS NULL OR (industry, metric) > ($3, $4::text))
       ORDER BY industry, metric LIMIT $5`,
      [q.industry ?? null, q.metric ?? null, q.after?.[0] ?? null, q.after?.[1] ?? null, q.limit],
      signal,
    );
    return res.rows;
  }

  /** With a request key (its `caller` set), a retry returns the first call's entry. */
  async addKnowledge(
    k: { topic: string; agent: string; content: string },
    signal?: AbortSignal,
    key?: RequestKey,
  ): Promise<KnowledgeRecord> {
    if (key) {
      const ids = [uuidV7()];
      const rows = await insertOnce<KnowledgeRecord>(
        this.#db,
        { ...key, caller: key.caller ?? '' },
        {
          keysTable: 'shared.request_ids',
          table: 'shared.knowledge_entries',
          columns: KNOWLEDGE_COLUMNS,
          ids,
          insert: (guard) =>
            `INSERT INTO shared.knowledge_entries (id, topic, agent, content)
             SELECT $1::uuid, $2::text, $3::text, $4::text WHERE ${guard}
             RETURNING ${KNOWLEDGE_COLUMNS}`,
          values: [ids[0], k.topic, k.agent, k.content],
        },
        signal,
      );
      return rows[0]!;
    }
    // Time-ordered ids, as handoffs': entries added in one millisecond list in the order added.
    const res = await this.#db.query<KnowledgeRecord>(
      `INSERT INTO shared.knowledge_entries (id, topic, agent, content) VALUES ($1, $2, $3, $4)
       RETURNING ${KNOWLEDGE_COLUMNS}`,
      [uuidV7(), k.topic, k.agent, k.content],
      signal,
    );
    return res.rows[0]!;
  }

  /** Entries newest first, in (created_at, id) descending order before the keyset position. */
  async listKnowledge(
    q: { topic?: string; agent?: string; before?: { createdAt: Date; id: string }; limit: number },
    signal?: AbortSignal,
  ): Promise<KnowledgeRecord[]> {
    const res = await this.#db.query<KnowledgeRecord>(
      `SELECT ${KNOWLEDGE_COLUMNS} FROM shared.knowledge_entries
       WHERE ($1::text IS NULL OR topic = $1) AND ($2::text IS NULL OR agent = $2)
         AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
       ORDER BY created_at DESC, id DESC LIMIT $5`,
      [
        q.topic ?? null,
        q.agent ?? null,
        q.before?.createdAt ?? null,
        q.before?.id ?? null,
        q.limit,
      ],
      signal,
    );
    return res.rows;
  }
}
