/**
 * Seeds a running gateway with four demo clients and shared data, reads it back and prints where
 * each client lives. Safe to re-run: every write is an upsert, a merge patch, or skipped when the
 * record is already there. Address from SHARDGATE_ADDRESS (default 127.0.0.1:50051).
 */
import { ClientError, Status } from 'nice-grpc';
import { type ShardgateClient, createShardgateClient } from '../src/client/index.js';
import { AppointmentStatus } from '../src/gen/shardgate/v1/appointment.js';

const ADDRESS = process.env['SHARDGATE_ADDRESS'] ?? '127.0.0.1:50051';
/** Generous enough for a cold gateway that provisions a client schema on CreateTenant. */
const DEADLINE_MS = 15_000;
const FROM_AGENT = 'intake-agent';
const TO_AGENT = 'dispatch-agent';
const KNOWLEDGE_TOPIC = 'dispatch.after-hours';

const DEMO_CLIENTS = [
  { clientId: 'acme-hvac', services: ['furnace-repair', 'ac-tune-up'] },
  { clientId: 'smith-plumbing', services: ['leak-repair', 'water-heater-install'] },
  { clientId: 'cool-breeze-hvac', services: ['ac-install', 'duct-cleaning'] },
  { clientId: 'rapid-rooter', services: ['drain-cleaning', 'sewer-inspection'] },
] as const;
type DemoClient = (typeof DEMO_CLIENTS)[number];

const BENCHMARKS = [
  { industry: 'hvac', metric: 'first_time_fix_rate', value: 0.78, unit: 'ratio' },
  { industry: 'plumbing', metric: 'first_time_fix_rate', value: 0.81, unit: 'ratio' },
].map((b) => ({ ...b, source: 'shardgate demo data' }));

/** Fixed times, so a second run recognises the appointments it made the first time. */
const FIRST_SLOT = Date.UTC(2030, 0, 14, 9);
const SLOT_MS = 90 * 60_000;

interface Row {
  client: string;
  shard: string;
  schema: string;
  ring_shard: string;
  differs: string;
  appts: string;
  handoffs: string;
  latest: string;
  state_v: string;
}

async function main(): Promise<number> {
  const gateway = createShardgateClient({ address: ADDRESS, defaultDeadlineMs: DEADLINE_MS });
  try {
    const unreachable = await probe(gateway);
    if (unreachable !== undefined) {
      console.error(
        `shardgate is not reachable at ${ADDRESS} (${unreachable}); start it with npm start`,
      );
      return 1;
    }
    const rows: Row[] = [];
    for (const [index, demo] of DEMO_CLIENTS.entries()) {
      await seedClient(gateway, demo, index);
      rows.push(await readBack(gateway, demo.clientId));
    }
    await seedShared(gateway);
    printTable(rows);
    await printShared(gateway);
    return 0;
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    console.error(`demo failed: ${Status[error.code]} from ${error.path}: ${error.details}`);
    return 1;
  } finally {
    gateway.close();
  }
}

/** The reason the gateway cannot be used, or undefined when it answers. */
async function probe(gateway: ShardgateClient): Promise<string | undefined> {
  try {
    await gateway.admin.getTopology({}, { deadline: 3_000 });
    return undefined;
  } catch (error) {
    const down = [Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED];
    if (error instanceof ClientError && down.includes(error.code)) return Status[error.code];
    throw error;
  }
}

async function seedClient(gateway: ShardgateClient, demo: DemoClient, index: number) {
  const { clientId } = demo;
  await gateway.tenants.createTenant({ clientId });

  const slots = demo.services.map((serviceType, i) => ({
    serviceType,
    scheduledAt: new Date(FIRST_SLOT + (index * demo.services.length + i) * SLOT_MS),
    clientPhone: `+1 555 01${index}${i}`,
  }));
  const { appointments } = await gateway.appointments.listAppointments({
    clientId,
    pageSize: 1000,
  });
  const booked = new Set(appointments.map((a) => `${a.scheduledAt?.getTime()} ${a.serviceType}`));
  for (const slot of slots) {
    if (booked.has(`${slot.scheduledAt.getTime()} ${slot.serviceType}`)) continue;
    await gateway.appointments.createAppointment({
      clientId,
      appointment: { ...slot, status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED },
    });
  }

  const { handoffs } = await gateway.handoffs.listHandoffs({
    clientId,
    fromAgent: FROM_AGENT,
    toAgent: TO_AGENT,
    pageSize: 1000,
  });
  const handed = new Set(handoffs.map((h) => String(h.summary?.['ticket'])));
  for (const [i, slot] of slots.entries()) {
    const ticket = `${clientId}-${i + 1}`;
    if (handed.has(ticket)) continue;
    await gateway.handoffs.appendHandoff({
      clientId,
      handoff: {
        fromAgent: FROM_AGENT,
        toAgent: TO_AGENT,
        version: 1,
        summary: {
          ticket,
          service_type: slot.serviceType,
          customer_phone: slot.clientPhone,
          scheduled_at: slot.scheduledAt.toISOString(),
          urgency: i === 0 ? 'high' : 'normal',
          notes: ['caller verified address', 'prefers morning visits'],
        },
      },
    });
  }

  await gateway.state.patchState({
    clientId,
    patch: {
      onboarding: { step: 'done' },
      services: [...demo.services],
      last_demo_run: new Date().toISOString(),
    },
  });
}

async function readBack(gateway: ShardgateClient, clientId: string): Promise<Row> {
  const [where, appts, handoffs, latest, state] = await Promise.all([
    gateway.admin.locate({ clientId }),
    gateway.appointments.listAppointments({ clientId, pageSize: 1000 }),
    gateway.handoffs.listHandoffs({ clientId, pageSize: 1000 }),
    gateway.handoffs.getLatestHandoff({ clientId, toAgent: TO_AGENT }),
    gateway.state.getState({ clientId }),
  ]);
  return {
    client: clientId,
    shard: where.shard,
    schema: where.schema,
    ring_shard: where.ringShard,
    differs: where.placementDiffers ? 'yes' : 'no',
    appts: String(appts.appointments.length),
    handoffs: String(handoffs.handoffs.length),
    latest: String(latest.handoff?.summary?.['ticket'] ?? '-'),
    state_v: String(state.state?.version ?? 0),
  };
}

async function seedShared(gateway: ShardgateClient) {
  for (const benchmark of BENCHMARKS) await gateway.shared.putBenchmark({ benchmark });
  const entry = {
    topic: KNOWLEDGE_TOPIC,
    agent: TO_AGENT,
    content: 'After 8 pm, offer no-heat and active-leak callers the on-call technician first.',
  };
  const { entries } = await gateway.shared.listKnowledgeEntries({
    topic: entry.topic,
    agent: entry.agent,
    pageSize: 1000,
  });
  if (!entries.some((e) => e.content === entry.content)) {
    await gateway.shared.addKnowledgeEntry({ entry });
  }
}

async function printShared(gateway: ShardgateClient) {
  const [{ benchmarks }, { entries }] = await Promise.all([
    gateway.shared.listBenchmarks({ pageSize: 1000 }),
    gateway.shared.listKnowledgeEntries({ topic: KNOWLEDGE_TOPIC, pageSize: 1000 }),
  ]);
  console.log(`\nshared: ${benchmarks.length} benchmarks, ${entries.length} knowledge entries`);
  for (const b of benchmarks) {
    console.log(`  ${b.industry}/${b.metric} = ${b.value} ${b.unit}`);
  }
}

function printTable(rows: Row[]) {
  const columns = Object.keys(rows[0] ?? {}) as (keyof Row)[];
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  console.log(`shardgate at ${ADDRESS}\n`);
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => row[c])));
}

process.exitCode = await main();
