import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createShardgateClient, type ShardgateClient } from '../src/client/index.js';
import { startEmbeddedCluster, type EmbeddedCluster } from '../src/embedded/embedded-cluster.js';
import { AppointmentStatus } from '../src/gen/shardgate/v1/appointment.js';
import type { Cleanup } from './processes.js';
import type { BenchTenant } from './protocol.js';

/** Seeded appointments are scheduled from here on, an hour apart, all before seededBeforeMs. */
const FIRST_SLOT_MS = Date.UTC(2030, 0, 14, 9);
/** ListAppointments in the run filters to rows scheduled before this: only the seeded ones. */
export const SEEDED_BEFORE_MS = Date.UTC(2031, 0, 1);

/** The embedded cluster of a run and where its data lives. */
export interface BenchCluster {
  cluster: EmbeddedCluster;
  dataDir: string;
}

/**
 * Starts a catalog server and `shardCount` shard servers on free ports, in a fresh temp directory
 * that is deleted at cleanup. As root PostgreSQL runs as the OS user `postgres`, which must be able
 * to enter the directory: mkdtemp makes it 0700, so it is opened to 0755.
 */
export async function startBenchCluster(
  shardCount: number,
  cleanup: Cleanup,
  /** Keep each server's data across EmbeddedServer.restart (the temp directory still goes). */
  persistent = false,
): Promise<BenchCluster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'shardgate-bench-'));
  cleanup.add('remove the temp directory', () => rm(dataDir, { recursive: true, force: true }));
  await chmod(dataDir, 0o755);
  const basePort = await findFreePortRange(shardCount + 1);
  const cluster = await startEmbeddedCluster({ dataDir, basePort, shardCount, persistent });
  cleanup.add('stop embedded PostgreSQL', () => cluster.stop());
  return { cluster, dataDir };
}

/** Pids of the running postmasters (their backends are their children), from postmaster.pid. */
export async function postmasterPids(c: BenchCluster): Promise<number[]> {
  const names = c.cluster.shards.map((s) => s.name);
  const pids = await Promise.all(
    names.map(async (name) => {
      const text = await readFile(join(c.dataDir, name, 'postmaster.pid'), 'utf8').catch(() => '');
      return Number.parseInt(text.split('\n')[0] ?? '', 10);
    }),
  );
  return pids.filter((p) => p > 0);
}

/** A base port such that base … base + count − 1 are all free on 127.0.0.1 right now. */
async function findFreePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const free = await Promise.all(Array.from({ length: count }, (_, i) => isPortFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`found no ${count} consecutive free ports on 127.0.0.1`);
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: '127.0.0.1', port, exclusive: true }, () =>
      probe.close(() => resolve(true)),
    );
  });
}

/** How much data each seeded tenant gets. */
export interface SeedOptions {
  tenants: number;
  appointmentsPerTenant: number;
  handoffsPerTenant: number;
}

/**
 * Creates the tenants through the gateway (a few at a time: each one is schema DDL on its shard),
 * gives each some appointments, handoffs and a state document, and returns where each lives.
 */
export async function seedTenants(address: string, opts: SeedOptions): Promise<BenchTenant[]> {
  const sg = createShardgateClient({ address, defaultDeadlineMs: 60_000 });
  try {
    const ids = Array.from(
      { length: opts.tenants },
      (_, i) => `bench-client-${String(i + 1).padStart(3, '0')}`,
    );
    const tenants: BenchTenant[] = [];
    for (let i = 0; i < ids.length; i += 4) {
      tenants.push(
        ...(await Promise.all(ids.slice(i, i + 4).map((id) => seedTenant(sg, id, opts)))),
      );
    }
    return tenants;
  } finally {
    sg.close();
  }
}

async function seedTenant(
  sg: ShardgateClient,
  clientId: string,
  opts: SeedOptions,
): Promise<BenchTenant> {
  const { tenant } = await sg.tenants.createTenant({ clientId });
  if (!tenant) throw new Error(`CreateTenant returned no tenant for ${clientId}`);
  const created = await Promise.all(
    Array.from({ length: opts.appointmentsPerTenant }, (_, k) =>
      sg.appointments.createAppointment({
        clientId,
        appointment: {
          clientPhone: `+1 555 010 ${String(k).padStart(4, '0')}`,
          scheduledAt: new Date(FIRST_SLOT_MS + k * 3_600_000),
          serviceType: k % 2 === 0 ? 'furnace-repair' : 'duct-cleaning',
          status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
        },
      }),
    ),
  );
  await Promise.all(
    Array.from({ length: opts.handoffsPerTenant }, (_, k) =>
      sg.handoffs.appendHandoff({
        clientId,
        handoff: {
          fromAgent: 'intake-agent',
          toAgent: 'dispatch-agent',
          version: 1,
          summary: { seed: k },
        },
      }),
    ),
  );
  await sg.state.putState({ clientId, document: { season: 'winter', openTickets: 3 } });
  return {
    clientId,
    shard: tenant.shard,
    schema: tenant.schema,
    appointmentIds: created.map((r) => r.appointment!.id),
  };
}
