import { type Command, InvalidArgumentError } from 'commander';
import { isClientId } from '../core/ids.js';
import type { Token } from '../gen/shardgate/v1/admin.js';
import { withContext, type CliContext } from './cli-context.js';
import { renderFields, renderTable } from './render.js';

/** The gateway's largest page; `tokens list` follows the page tokens to the end. */
const MAX_PAGE_SIZE = 1000;
const TTL_UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** The `tokens` command group: create, list and revoke bearer tokens (admin scope needed). */
export function addTokenCommands(program: Command): void {
  const tokens = program
    .command('tokens')
    .description('create, list and revoke bearer tokens (needs an admin token)');
  for (const add of [create, list, revoke]) add(tokens);
}

/** `--json` shape of a token: every field present, timestamps RFC 3339 or null. */
export const tokenJson = (t: Token) => ({
  id: t.id,
  displayName: t.displayName,
  scope: t.scope,
  createdBy: t.createdBy,
  createdAt: t.createdAt?.toISOString() ?? null,
  expiresAt: t.expiresAt?.toISOString() ?? null,
  revokedAt: t.revokedAt?.toISOString() ?? null,
});

/** Command-line parsers for the token commands; each failure is a usage error (exit 2). */
export const parseTokenArg = {
  scope(raw: string): string {
    if (raw === 'admin' || raw === 'service') return raw;
    if (raw.startsWith('client:') && isClientId(raw.slice('client:'.length))) return raw;
    throw new InvalidArgumentError("a scope is 'admin', 'service' or 'client:<client_id>'.");
  },
  /** `30d`, `12h`, `90m`, `3600s` → seconds. */
  ttl(raw: string): number {
    const match = /^(\d{1,9})([smhd])$/.exec(raw.trim());
    const seconds = match ? Number(match[1]) * TTL_UNITS[match[2] as keyof typeof TTL_UNITS] : 0;
    if (seconds <= 0)
      throw new InvalidArgumentError('a ttl is a positive number with s, m, h or d, e.g. 30d.');
    return seconds;
  },
  id(raw: string): string {
    if (!/^[0-9a-f]{16}$/.test(raw))
      throw new InvalidArgumentError('a token id is 16 hex characters (see `tokens list`).');
    return raw;
  },
};

function create(tokens: Command): void {
  tokens
    .command('create')
    .description('create a token and print its secret (shown only this once)')
    .requiredOption(
      '--scope <scope>',
      "'admin', 'service' (any client's data) or 'client:<client_id>'",
      parseTokenArg.scope,
    )
    .requiredOption('--name <display name>', 'what the token is for, e.g. "acme-hvac scheduler"')
    .option(
      '--ttl <duration>',
      'lifetime, e.g. 30d, 12h, 90m (default: no expiry)',
      parseTokenArg.ttl,
    )
    .action((opts: { scope: string; name: string; ttl?: number }, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.createToken({
          displayName: opts.name,
          scope: opts.scope,
          ttl: opts.ttl === undefined ? undefined : { seconds: opts.ttl, nanos: 0 },
        });
        const token = r.token!;
        ctx.print({ token: tokenJson(token), secret: r.secret }, () =>
          [
            `created token ${token.id} (scope ${token.scope}, ${expiry(token)})`,
            'secret (shown only this once; store it now, e.g. as SHARDGATE_TOKEN):',
            r.secret,
          ].join('\n'),
        );
      }),
    );
}

function list(tokens: Command): void {
  tokens
    .command('list')
    .description('list tokens, newest first (never their secrets)')
    .option('--all', 'include revoked tokens', false)
    .action((opts: { all: boolean }, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const found = await listAll(ctx, opts.all);
        ctx.print({ tokens: found.map(tokenJson) }, () => renderTokens(found));
      }),
    );
}

function revoke(tokens: Command): void {
  tokens
    .command('revoke')
    .description('revoke a token: every gateway refuses it from then on (idempotent)')
    .argument('<id>', 'the token id (see `tokens list`)', parseTokenArg.id)
    .action((id: string, _opts, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await ctx.admin.revokeToken({ id });
        const token = r.token!;
        ctx.print({ token: tokenJson(token) }, () =>
          renderFields([
            ['revoked', token.id],
            ['name', token.displayName],
            ['scope', token.scope],
            ['revoked at', token.revokedAt?.toISOString() ?? '-'],
          ]),
        );
      }),
    );
}

async function listAll(ctx: CliContext, showRevoked: boolean): Promise<Token[]> {
  const found: Token[] = [];
  let pageToken = '';
  do {
    const page = await ctx.admin.listTokens({ pageSize: MAX_PAGE_SIZE, pageToken, showRevoked });
    found.push(...page.tokens);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return found;
}

function renderTokens(tokens: readonly Token[]): string {
  if (tokens.length === 0) return 'no tokens';
  const now = Date.now();
  return renderTable(
    [
      { header: 'id' },
      { header: 'scope' },
      { header: 'status' },
      { header: 'expires' },
      { header: 'created' },
      { header: 'created by' },
      { header: 'name' },
    ],
    tokens.map((t) => [
      t.id,
      t.scope,
      t.revokedAt ? 'revoked' : t.expiresAt && t.expiresAt.getTime() <= now ? 'expired' : 'active',
      t.expiresAt?.toISOString() ?? 'never',
      t.createdAt?.toISOString() ?? '-',
      t.createdBy,
      t.displayName,
    ]),
  );
}

function expiry(t: Token): string {
  return t.expiresAt ? `expires ${t.expiresAt.toISOString()}` : 'never expires';
}
