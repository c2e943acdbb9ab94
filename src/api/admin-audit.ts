import { ShardgateError } from '../core/errors.js';
import type { AdminServiceImplementation } from '../gen/shardgate/v1/admin.js';
import type { GatewayContext } from './gateway-context.js';

type AuditHandlers = Pick<AdminServiceImplementation, 'listAuditEvents'>;

// TODO(#4): being written in this session; not wired to the catalog yet.
export function createAuditHandlers(_ctx: GatewayContext): AuditHandlers {
  return {
    listAuditEvents: () => {
      throw new ShardgateError('failed-precondition', 'the audit log is not implemented yet');
    },
  };
}
