import { ShardgateError } from '../core/errors.js';
import type { AdminServiceImplementation } from '../gen/shardgate/v1/admin.js';
import type { GatewayContext } from './gateway-context.js';

type TokenHandlers = Pick<AdminServiceImplementation, 'createToken' | 'listTokens' | 'revokeToken'>;

// TODO(#4): being written in this session; not wired to the catalog yet.
export function createTokenHandlers(_ctx: GatewayContext): TokenHandlers {
  const notYet = (): never => {
    throw new ShardgateError('failed-precondition', 'tokens are not implemented yet');
  };
  return { createToken: notYet, listTokens: notYet, revokeToken: notYet };
}
