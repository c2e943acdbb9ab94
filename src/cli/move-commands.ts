import { Option, type Command } from 'commander';
import { MoveState, type Move } from '../gen/shardgate/v1/admin.js';
import { MOVE_STATE_CHOICES, parseArg, type MoveStateChoice } from './args.js';
import { withContext, type CliContext } from './cli-context.js';
import { toJson } from './json.js';
import { runMove, runRebalance } from './move-runs.js';
import { renderMove, renderMoveList, renderPlan } from './render.js';

/** The move commands: planning, running and watching moves. */
export function addMoveCommands(program: Command): void {
  for (const add of [plan, rebalance, move, moves, moveStatus, cancelMove]) add(program);
}

function plan(program: Command): void {
  program
    .command('plan')
    .description('dry run: which clients a rebalance would move where, and why')
    .option('--limit <n>', 'at most this many moves (default: all)', parseArg.nonNegativeInt)
    .action((opts: { limit?: number }, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.planRebalance({ limit: opts.limit ?? 0 });
        ctx.print(toJson.plan(r), () => renderPlan(r));
      }),
    );
}

function rebalance(program: Command): void {
  program
    .command('rebalance')
    .description('run the current plan; exits 1 if any move fails or is cancelled')
    .option('--concurrency <n>', 'moves at a time, 1 to 16 (default: 2)', parseArg.positiveInt)
    .option('--limit <n>', 'at most this many moves (default: the plan)', parseArg.nonNegativeInt)
    .action((opts: { concurrency?: number; limit?: number }, cmd: Command) =>
      withContext(cmd, (ctx) =>
        runRebalance(ctx, { maxConcurrentMoves: opts.concurrency ?? 0, limit: opts.limit ?? 0 }),
      ),
    );
}

function move(program: Command): void {
  program
    .command('move')
    .description('move one client to another shard online; exits 1 unless the move succeeds')
    .argument('<client_id>', 'the client to move', parseArg.clientId)
    .argument('<to_shard>', 'the target shard', parseArg.shardName)
    .action((clientId: string, toShard: string, _opts, cmd: Command) =>
      withContext(cmd, (ctx) => runMove(ctx, clientId, toShard)),
    );
}

interface ListMovesOptions {
  client?: string;
  state?: MoveStateChoice;
  pageSize?: number;
  pageToken?: string;
  all: boolean;
}

function moves(program: Command): void {
  const states = Object.keys(MOVE_STATE_CHOICES);
  program
    .command('moves')
    .description('list moves, newest first')
    .option('--client <id>', "only this client's moves", parseArg.clientId)
    .addOption(new Option('--state <state>', 'only moves in this state').choices(states))
    .option('--page-size <n>', 'moves per page, at most 1000 (default: 50)', parseArg.positiveInt)
    .option('--page-token <token>', 'continue from a previous page')
    .option('--all', 'follow the pages to the last', false)
    .action((opts: ListMovesOptions, cmd: Command) =>
      withContext(cmd, (ctx) => listMoves(ctx, opts)),
    );
}

async function listMoves(ctx: CliContext, opts: ListMovesOptions): Promise<void> {
  const filters = {
    clientId: opts.client ?? '',
    state: opts.state ? MOVE_STATE_CHOICES[opts.state] : MoveState.MOVE_STATE_UNSPECIFIED,
    pageSize: opts.pageSize ?? 0,
  };
  const found: Move[] = [];
  let pageToken = opts.pageToken ?? '';
  do {
    const page = await ctx.admin.listMoves({ ...filters, pageToken });
    found.push(...page.moves);
    pageToken = page.nextPageToken;
  } while (opts.all && pageToken !== '');
  ctx.print(toJson.listMoves({ moves: found, nextPageToken: pageToken }), () => {
    const more = pageToken ? `\n\nmore: add --page-token ${pageToken} (or --all)` : '';
    return renderMoveList(found) + more;
  });
}

function moveStatus(program: Command): void {
  program
    .command('move-status')
    .description('show one move')
    .argument('<move_id>', 'the move id (from `move`, `rebalance` or `moves`)', parseArg.moveId)
    .action((id: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.getMove({ id });
        ctx.print(toJson.moveResponse(r), () => renderMove(r.move!));
      }),
    );
}

function cancelMove(program: Command): void {
  program
    .command('cancel-move')
    .description('cancel a move that has not flipped; it rolls back and the client stays put')
    .argument('<move_id>', 'the move id', parseArg.moveId)
    .action((id: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.cancelMove({ id });
        const human = () => `cancel requested; the move rolls back\n${renderMove(r.move!)}`;
        ctx.print(toJson.moveResponse(r), human);
      }),
    );
}
