import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { toJson } from '../../src/cli/json.js';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import { freePort } from '../support/global-setup.js';
import {
  createDatabase,
  createTestTopology,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs shardctl as a child process, the way an operator would, against `address`. */
function shardctl(address: string, args: readonly string[]): Promise<Run> {
  const env = { ...process.env };
  // Nothing from the parent's environment may point the CLI elsewhere.
  for (const key of Object.keys(env)) if (key.startsWith('SHARDGATE_')) delete env[key];
  const argv = ['--import', 'tsx', 'src/cli/shardctl.ts', '--address', address, ...args];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { cwd: repoRoot, env, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The `--json` document a command prints, typed by the CLI's own converter. */
type JsonOf<K extends keyof typeof toJson> = ReturnType<(typeof toJson)[K]>;
type MoveJson = JsonOf<'move'>;

/** Runs a streaming command with `--json` and returns its lines, parsed. */
async function streamJson<T>(
  address: string,
  args: readonly string[],
): Promise<{ run: Run; lines: T[] }> {
  const run = await shardctl(address, ['--json', ...args]);
  const lines = run.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);
  return { run, lines };
}

/** `host:port/database` of a URL, as the gateway shows a shard address. */
function addressOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port}${u.pathname}`;
}

describe('shardctl', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  /** Runs `shardctl --json ...`, expects exit 0 and returns the parsed document. */
  const json = async <T>(...args: string[]): Promise<T> => {
    const run = await shardctl(gw.gateway.address, ['--json', ...args]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    return JSON.parse(run.stdout) as T;
  };
  const jsonLines = <T>(...args: string[]) => streamJson<T>(gw.gateway.address, args);
  /** Shard name → database URL, including the shards added by the tests. */
  const shardUrls = new Map<string, string>();
  /** A shard as `--json` shows it. */
  const shardJson = (name: string, weight: number, tenantCount: number): JsonOf<'shard'> => ({
    name,
    state: 'SHARD_STATE_ACTIVE',
    weight,
    tenantCount,
    address: addressOf(shardUrls.get(name)!),
  });

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startTestGateway(topology);
    for (const s of topology.shards) shardUrls.set(s.name, s.url);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  it('topology lists the shards', async () => {
    expect(await json<JsonOf<'topology'>>('topology')).toEqual({
      shards: [shardJson('shard-1', 100, 0), shardJson('shard-2', 100, 0)],
      ringEpoch: expect.any(Number),
      ringVnodes: expect.any(Number),
    });
  });

  it('topology without --json prints an aligned table', async () => {
    const run = await shardctl(gw.gateway.address, ['topology']);
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toBe(`NAME     STATE   WEIGHT  TENANTS  ADDRESS`);
    expect(lines[1]).toBe(
      `shard-1  active     100        0  ${shardJson('shard-1', 0, 0).address}`,
    );
    expect(lines[2]).toBe(
      `shard-2  active     100        0  ${shardJson('shard-2', 0, 0).address}`,
    );
    expect(lines[4]).toMatch(/^ring epoch \d+, \d+ virtual nodes per weight unit$/);
  });

  it('locate shows where a created tenant lives', async () => {
    const clientId = freshClientId('ctl');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    expect(tenant!.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
    expect(await json<JsonOf<'locate'>>('locate', clientId)).toEqual({
      clientId,
      shard: tenant!.shard,
      schema: tenant!.schema,
      ringShard: tenant!.shard,
      placementDiffers: false,
      status: 'TENANT_STATUS_ACTIVE',
    });
  });

  it('locate of an unknown client exits 1 with NOT_FOUND', async () => {
    const ghost = freshClientId('ghost');
    expect(await shardctl(gw.gateway.address, ['locate', ghost])).toEqual({
      code: 1,
      stdout: '',
      stderr: `shardctl: NOT_FOUND: client '${ghost}' does not exist; create it with TenantService.CreateTenant\n`,
    });
  });

  it('add-shard registers a new database, topology shows it, and set-weight changes it', async () => {
    const server = inject('pgServers')[3]!;
    shardUrls.set('shard-3', await createDatabase(server.adminUrl, `t_${uniqueSuffix()}_ctl3`));
    const before = (await json<JsonOf<'topology'>>('topology')).ringEpoch;

    const added = await json<JsonOf<'shardChange'>>(
      'add-shard',
      'shard-3',
      shardUrls.get('shard-3')!,
      '--weight',
      '50',
    );
    expect(added).toEqual({ shard: shardJson('shard-3', 50, 0), ringEpoch: before + 1 });
    const after = await json<JsonOf<'topology'>>('topology');
    expect(after.ringEpoch).toBe(before + 1);
    expect(after.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-2', 'shard-3']);
    expect(after.shards[2]).toEqual(shardJson('shard-3', 50, 0));

    const again = await shardctl(gw.gateway.address, [
      'add-shard',
      'shard-3',
      shardUrls.get('shard-3')!,
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^shardctl: ALREADY_EXISTS: .+\n$/);

    const reweighted = await json<JsonOf<'shardChange'>>('set-weight', 'shard-3', '200');
    expect(reweighted).toEqual({ shard: shardJson('shard-3', 200, 0), ringEpoch: before + 2 });
    const tooHeavy = await shardctl(gw.gateway.address, ['set-weight', 'shard-3', '20000']);
    expect(tooHeavy).toEqual({
      code: 1,
      stdout: '',
      stderr: 'shardctl: INVALID_ARGUMENT: weight must be 1 to 10000\n',
    });

    // The same database by another spelling of its URL (a rotated password looks the same).
    const url = new URL(shardUrls.get('shard-3')!);
    url.hostname = 'localhost';
    const reconnected = await json<JsonOf<'shardChange'>>('set-dsn', 'shard-3', url.toString());
    expect(reconnected.shard?.address).toBe(`localhost:${url.port}${url.pathname}`);
    expect(reconnected.ringEpoch).toBe(before + 3);
    shardUrls.set('shard-3', url.toString());
    const garbled = await shardctl(gw.gateway.address, ['set-dsn', 'shard-3', 'not a url']);
    expect(garbled.code).toBe(1);
    expect(garbled.stderr).toMatch(/^shardctl: INVALID_ARGUMENT: dsn must be a postgres:/);
  });

  it('move moves one client, locate shows the new shard and moves lists the move', async () => {
    const clientId = freshClientId('ctl-move');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const to = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';

    const { run, lines } = await jsonLines<JsonOf<'moveResponse'>>('move', clientId, to);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const last = lines.at(-1)!.move!;
    expect(last).toMatchObject({
      clientId,
      sourceShard: tenant!.shard,
      targetShard: to,
      phase: 'MOVE_PHASE_DONE',
      state: 'MOVE_STATE_SUCCEEDED',
      reason: 'MOVE_REASON_MANUAL',
      error: '',
    });
    expect(new Set(lines.map((l) => l.move!.id))).toEqual(new Set([last.id]));

    const located = await json<JsonOf<'locate'>>('locate', clientId);
    expect(located).toMatchObject({ clientId, shard: to, placementDiffers: true });
    expect(await json('moves', '--client', clientId)).toEqual({ moves: [last], nextPageToken: '' });
    expect(await json('moves', '--client', clientId, '--state', 'failed')).toEqual({
      moves: [],
      nextPageToken: '',
    });
    expect(await json('move-status', last.id)).toEqual({ move: last });
  });

  it("drain and plan move a shard's clients away; remove-shard refuses it until rebalance has run", async () => {
    const clientId = freshClientId('ctl-drain');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const drained = tenant!.shard;
    const { tenants } = await gw.client.tenants.listTenants({ shard: drained, pageSize: 1000 });

    const drain = await json<JsonOf<'shardChange'>>('drain', drained);
    expect(drain.shard).toEqual({
      ...shardJson(drained, expect.any(Number), tenants.length),
      state: 'SHARD_STATE_DRAINING',
    });
    const plan = await json<JsonOf<'plan'>>('plan');
    const away = plan.moves.filter((m) => m.fromShard === drained);
    expect(away.map((m) => m.clientId).sort()).toEqual(tenants.map((t) => t.clientId).sort());
    const located = await json<JsonOf<'locate'>>('locate', clientId);
    expect(located.ringShard).not.toBe(drained);
    expect(away.find((m) => m.clientId === clientId)).toEqual({
      clientId,
      fromShard: drained,
      toShard: located.ringShard,
      reason: 'MOVE_REASON_DRAIN',
      sizeBytes: expect.any(Number),
      rowEstimate: expect.any(Number),
    });
    expect(plan.totalBytes).toBe(plan.moves.reduce((sum, m) => sum + m.sizeBytes, 0));

    const refused = await shardctl(gw.gateway.address, ['remove-shard', drained]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^shardctl: FAILED_PRECONDITION: .+\n$/);

    const { run, lines } = await jsonLines<JsonOf<'rebalance'>>('rebalance', '--concurrency', '4');
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const total = plan.moves.length;
    expect(lines.at(-1)).toMatchObject({ finished: total, total });
    const ended: MoveJson[] = lines
      .map((l) => l.move!)
      .filter((m) => m.state !== 'MOVE_STATE_RUNNING');
    expect(ended.map((m) => `${m.clientId} ${m.state}`).sort()).toEqual(
      plan.moves.map((m) => `${m.clientId} MOVE_STATE_SUCCEEDED`).sort(),
    );
    expect(await json('plan')).toEqual({ moves: [], ringEpoch: plan.ringEpoch, totalBytes: 0 });

    expect(await json('remove-shard', drained)).toEqual({ ringEpoch: plan.ringEpoch + 1 });
    const names = (await json<JsonOf<'topology'>>('topology')).shards.map((s) => s.name);
    expect(names).not.toContain(drained);
  });

  it('bad usage exits 2 without calling the gateway', async () => {
    const [missing, badId, badOption] = await Promise.all([
      shardctl(gw.gateway.address, ['locate']),
      shardctl(gw.gateway.address, ['move-status', 'not-a-uuid']),
      shardctl(gw.gateway.address, ['moves', '--state', 'sideways']),
    ]);
    expect(missing).toEqual({
      code: 2,
      stdout: '',
      stderr:
        "shardctl: INVALID_ARGUMENT: missing required argument 'client_id' (see shardctl locate --help)\n",
    });
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/^shardctl: INVALID_ARGUMENT: .*a move id is a UUID.*\n$/);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(
      /^shardctl: INVALID_ARGUMENT: .*Allowed choices are running, succeeded, failed, cancelled.*\n$/,
    );
  });

  it('an unreachable gateway exits 3 with a hint', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const run = await shardctl(address, ['topology']);
    expect(run.code).toBe(3);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      new RegExp(
        `^shardctl: UNAVAILABLE: cannot reach the gateway at ${address} \\(.+\\); is the gateway running\\? \\(npm start\\)\\n$`,
      ),
    );
  });
});

describe('shardctl when moves fail', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    const topology = await createTestTopology(2);
    // Armed from the environment at start-up: every move of this gateway fails as it starts copying.
    const saved = process.env.SHARDGATE_FAILPOINTS;
    process.env.SHARDGATE_FAILPOINTS = 'move.copying=error';
    try {
      gw = await startTestGateway(topology);
    } finally {
      if (saved === undefined) delete process.env.SHARDGATE_FAILPOINTS;
      else process.env.SHARDGATE_FAILPOINTS = saved;
    }
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  it("a failed move exits 1 with the move's error, and the client stays put", async () => {
    const clientId = freshClientId('ctl-fail');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const to = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';

    const { run, lines } = await streamJson<JsonOf<'moveResponse'>>(gw.gateway.address, [
      'move',
      clientId,
      to,
    ]);
    const last = lines.at(-1)!.move!;
    expect(last).toMatchObject({
      clientId,
      state: 'MOVE_STATE_FAILED',
      error: 'failpoint move.copying fired',
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `shardctl: MOVE_STATE_FAILED: ${clientId}: failed: failpoint move.copying fired; stays on ${tenant!.shard} (move ${last.id})\n`,
    );
    const located = await gw.client.admin.locate({ clientId });
    expect(located.shard).toBe(tenant!.shard);
  });

  it('a rebalance with a failed move exits 1', async () => {
    const clientId = freshClientId('ctl-fail');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    await gw.client.admin.drainShard({ name: tenant!.shard });

    const { run, lines } = await streamJson<JsonOf<'rebalance'>>(gw.gateway.address, [
      'rebalance',
      '--limit',
      '1',
    ]);
    expect(lines.at(-1)).toMatchObject({
      finished: 1,
      total: 1,
      move: { state: 'MOVE_STATE_FAILED' },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^shardctl: MOVE_STATE_FAILED: 1 of 1 moves did not succeed: [a-z0-9-]+ \(failpoint move.copying fired\)\n$/,
    );
  });
});
