import { invalidArgument } from '../core/errors.js';
import type { StateServiceImplementation } from '../gen/shardgate/v1/state.js';
import { state } from '../shards/state.js';
import { stateToProto } from './convert.js';
import { withClient, type GatewayContext } from './gateway-context.js';
import * as v from './validate.js';

/** StateService: one versioned JSON document per client, optimistic concurrency. */
export function createStateService(ctx: GatewayContext): StateServiceImplementation {
  return {
    async getState(req, { signal }) {
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        return { state: stateToProto(await state.get(scope.db, scope.schema, signal)) };
      });
    },

    async putState(req, { signal }) {
      // A missing document is an error, not `{}`: a caller that forgot it must not wipe the state.
      if (!req.document) throw invalidArgument('document is required; send {} to clear the state');
      const json = v.jsonObject(req.document, 'document');
      const expected = expectedVersion(req.expectedVersion);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        return {
          state: stateToProto(await state.put(scope.db, scope.schema, json, expected, signal)),
        };
      });
    },

    async patchState(req, { signal }) {
      const patch = req.patch;
      if (!patch) throw invalidArgument('patch is required');
      v.jsonObject(patch, 'patch');
      const expected = expectedVersion(req.expectedVersion);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const result = await state.patch(
          scope.db,
          scope.schema,
          patch,
          expected,
          (merged) => v.jsonObject(merged, 'the patched document'),
          signal,
        );
        return { state: stateToProto(result) };
      });
    },
  };
}

function expectedVersion(raw: number | undefined): number | undefined {
  if (raw !== undefined && raw < 0) throw invalidArgument('expected_version must not be negative');
  return raw;
}
