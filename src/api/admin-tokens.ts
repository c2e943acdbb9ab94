import { identityOf } from '../auth/identity.js';
import { formatScope, parseScope } from '../auth/scope.js';
import { generateTokenSecret, parseTokenId } from '../auth/token-secret.js';
import type { TokenRecord } from '../catalog/token-store.js';
import { invalidArgument, notFound } from '../core/errors.js';
import type { AdminServiceImplementation, Token } from '../gen/shardgate/v1/admin.js';
import type { Duration } from '../gen/google/protobuf/duration.js';
import type { GatewayContext } from './gateway-context.js';
import { cursorDate, cursorString, decodePageToken, pageOf } from './page-token.js';
import * as v from './validate.js';

type TokenHandlers = Pick<AdminServiceImplementation, 'createToken' | 'listTokens' | 'revokeToken'>;

/** Longest token lifetime CreateToken accepts: ten years. */
export const MAX_TOKEN_TTL_SECONDS = 10 * 366 * 24 * 3600;

/**
 * CreateToken, ListTokens and RevokeToken. The secret exists only in CreateToken's response;
 * the catalog keeps its SHA-256, and every gateway drops a revoked token from its cache when the
 * catalog notifies it.
 */
export function createTokenHandlers(ctx: GatewayContext): TokenHandlers {
  return {
    async createToken(req, context) {
      const displayName = v.text(req.displayName, 'display_name', 1, 128);
      const scope = formatScope(parseScope(req.scope));
      const expiresAt = expiryOf(req.ttl);
      const { id, secret, secretSha256 } = generateTokenSecret();
      const token = await ctx.tokens.create(
        {
          id,
          secretSha256,
          displayName,
          scope,
          createdBy: identityOf(context).actor,
          expiresAt,
        },
        context.signal,
      );
      return { token: tokenToProto(token), secret };
    },

    async listTokens(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const filters = ['ListTokens', req.showRevoked];
      const cursor = decodePageToken(req.pageToken, filters);
      const before = cursor && {
        createdAt: cursorDate(cursor[0]),
        id: parseTokenId(cursorString(cursor[1]), 'page_token'),
      };
      const rows = await ctx.tokens.list(
        { showRevoked: req.showRevoked, before, limit: limit + 1 },
        signal,
      );
      const { items, nextPageToken } = pageOf(rows, limit, filters, (t) => [
        t.createdAt.getTime(),
        t.id,
      ]);
      return { tokens: items.map(tokenToProto), nextPageToken };
    },

    async revokeToken(req, { signal }) {
      const id = parseTokenId(req.id);
      const token = await ctx.tokens.revoke(id, signal);
      if (!token) throw notFound(`token ${id} does not exist; \`shardctl tokens list\` shows them`);
      // This gateway stops accepting it now; the others when the catalog's notification arrives.
      ctx.verifier.forget(id);
      return { token: tokenToProto(token) };
    },
  };
}

/** A TTL to an absolute expiry; unset means none. */
function expiryOf(ttl: Duration | undefined): Date | null {
  if (ttl === undefined) return null;
  const seconds = ttl.seconds + ttl.nanos / 1e9;
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw invalidArgument('ttl must be positive; leave it unset for a token that never expires');
  }
  if (seconds > MAX_TOKEN_TTL_SECONDS) {
    throw invalidArgument(`ttl must be at most ${MAX_TOKEN_TTL_SECONDS} seconds (ten years)`);
  }
  return new Date(Date.now() + Math.ceil(seconds * 1000));
}

function tokenToProto(t: TokenRecord): Token {
  return {
    id: t.id,
    displayName: t.displayName,
    scope: t.scope,
    createdAt: t.createdAt,
    expiresAt: t.expiresAt ?? undefined,
    revokedAt: t.revokedAt ?? undefined,
    createdBy: t.createdBy,
  };
}
