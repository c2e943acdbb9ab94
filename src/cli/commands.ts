import type { Command } from 'commander';
import { parseArg } from './args.js';
import { withContext } from './cli-context.js';
import { toJson } from './json.js';
import { renderLocate, renderShardChange, renderTopology } from './render.js';

/** The topology commands: reading the shards and placements, and changing the shard set. */
export function addTopologyCommands(program: Command): void {
  for (const add of [topology, locate, addShard, drain, removeShard, setWeight, setDsn])
    add(program);
}

function topology(program: Command): void {
  program
    .command('topology')
    .description('list the shards with their state, weight and tenant count, and the ring epoch')
    .action((_opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.getTopology({});
        ctx.print(toJson.topology(r), () => renderTopology(r));
      }),
    );
}

function locate(program: Command): void {
  program
    .command('locate')
    .description("show a client's shard and schema, and the shard the ring would choose")
    .argument('<client_id>', 'the client', parseArg.clientId)
    .action((clientId: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.locate({ clientId });
        ctx.print(toJson.locate(r), () => renderLocate(r));
      }),
    );
}

function addShard(program: Command): void {
  program
    .command('add-shard')
    .description('register a shard database and put it on the ring (existing clients stay put)')
    .argument('<name>', 'the new shard name, e.g. shard-4', parseArg.shardName)
    .argument('<dsn>', 'postgres:// URL of the database; gateways and other shards must reach it')
    .option('--weight <n>', 'share of the ring, 1 to 10000 (default: 100)', parseArg.positiveInt)
    .action((name: string, dsn: string, opts: { weight?: number }, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        // Weight 0 asks the gateway for its default.
        const r = await ctx.admin.addShard({ name, dsn, weight: opts.weight ?? 0 });
        ctx.print(toJson.shardChange(r), () => renderShardChange('added', r));
      }),
    );
}

function drain(program: Command): void {
  program
    .command('drain')
    .description('take a shard off the ring; `shardctl rebalance` then moves its clients away')
    .argument('<shard>', 'the shard to drain', parseArg.shardName)
    .action((name: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.drainShard({ name });
        ctx.print(toJson.shardChange(r), () => renderShardChange('draining', r));
      }),
    );
}

function removeShard(program: Command): void {
  program
    .command('remove-shard')
    .description('unregister a shard; refused (FAILED_PRECONDITION) while clients live there')
    .argument('<shard>', 'the shard to remove', parseArg.shardName)
    .action((name: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.removeShard({ name });
        ctx.print({ ringEpoch: r.ringEpoch }, () => `removed ${name} (ring epoch ${r.ringEpoch})`);
      }),
    );
}

function setWeight(program: Command): void {
  program
    .command('set-weight')
    .description("change a shard's share of the ring (`shardctl plan` shows what would move)")
    .argument('<shard>', 'the shard to change', parseArg.shardName)
    .argument('<weight>', 'the new weight, 1 to 10000', parseArg.positiveInt)
    .action((name: string, weight: number, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.setShardWeight({ name, weight });
        ctx.print(toJson.shardChange(r), () => renderShardChange('reweighted', r));
      }),
    );
}

function setDsn(program: Command): void {
  program
    .command('set-dsn')
    .description(
      "change a shard's connection URL (a rotated password, a new host): every gateway reconnects",
    )
    .argument('<shard>', 'the shard to change', parseArg.shardName)
    .argument(
      '<dsn>',
      "postgres:// URL of the shard's database; gateways and other shards must reach it",
    )
    .action((name: string, dsn: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.setShardDsn({ name, dsn });
        ctx.print(toJson.shardChange(r), () => renderShardChange('reconnected', r));
      }),
    );
}
