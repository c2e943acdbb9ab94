import { createServer, Metadata, type Server } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardgateClient } from '../../../src/client/index.js';
import {
  StateServiceDefinition,
  type StateServiceImplementation,
} from '../../../src/gen/shardgate/v1/state.js';

/** Each call's `authorization` metadata values, as the server received them. */
const seen: string[][] = [];

const state: StateServiceImplementation = {
  async getState(_req, context) {
    seen.push(context.metadata.getAll('authorization'));
    return { state: { document: {}, version: 0 } };
  },
  putState: () => Promise.reject(new Error('unused')),
  patchState: () => Promise.reject(new Error('unused')),
};

describe('client token and TLS options', () => {
  let server: Server;
  let address: string;

  beforeAll(async () => {
    server = createServer();
    server.add(StateServiceDefinition, state);
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });
  afterAll(async () => server?.shutdown());

  it('sends `authorization: Bearer <token>` on every call; a call’s own value wins', async () => {
    const client = createShardgateClient({
      address,
      token: 'sgt_0123456789abcdef_secret',
      metadata: { 'x-trace': 't' },
    });
    try {
      seen.length = 0;
      await client.state.getState({ clientId: 'a' });
      await client.state.getState({ clientId: 'a' });
      await client.state.getState(
        { clientId: 'a' },
        { metadata: Metadata({ authorization: 'Bearer other' }) },
      );
      expect(seen).toEqual([
        ['Bearer sgt_0123456789abcdef_secret'],
        ['Bearer sgt_0123456789abcdef_secret'],
        ['Bearer other'],
      ]);
    } finally {
      client.close();
    }
  });

  it('sends no authorization without a token', async () => {
    const client = createShardgateClient({ address });
    try {
      seen.length = 0;
      await client.state.getState({ clientId: 'a' });
      expect(seen).toEqual([[]]);
    } finally {
      client.close();
    }
  });

  it.each([
    [{ token: '' }, 'token must be a bearer secret without whitespace'],
    [{ token: 'two words' }, 'token must be a bearer secret without whitespace'],
    [{ tls: { ca: 'x', cert: 'y' } }, 'tls.cert and tls.key go together'],
  ])('refuses %j', (options, message) => {
    expect(() => createShardgateClient({ address, ...options })).toThrow(message);
  });
});
