import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy on loopback in front of a real PostgreSQL server whose path can go silent. Frozen,
 * it keeps every connection open and passes no byte either way (it holds them, as a partitioned
 * network's retransmissions do, and delivers them at thaw); a connection accepted while frozen is
 * connected on at thaw. That is what a gateway sees of a shard behind a dead network path: no
 * reset, no error, no answer.
 */
export interface FreezableProxy {
  /** The upstream URL with the proxy's host and port. */
  url: string;
  freeze(): void;
  thaw(): void;
  /** Resets every open connection (as a restarted server or a failover does); new ones come in. */
  sever(): void;
  /** Connections open through the proxy right now. */
  readonly open: number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket | undefined;
  /** Bytes held while frozen (or before the upstream connection exists), per direction. */
  toServer: Buffer[];
  toClient: Buffer[];
}

export async function startFreezableProxy(upstreamUrl: string): Promise<FreezableProxy> {
  const upstream = new URL(upstreamUrl);
  let frozen = false;
  const pairs = new Set<Pair>();

  const link = (pair: Pair): void => {
    const s = connect(Number(upstream.port), upstream.hostname);
    pair.server = s;
    s.on('error', () => end(pair)).on('close', () => end(pair));
    s.on('data', (chunk: Buffer) => {
      if (frozen) pair.toClient.push(chunk);
      else pair.client.write(chunk);
    });
    for (const chunk of pair.toServer.splice(0)) s.write(chunk);
  };
  const end = (pair: Pair): void => {
    pairs.delete(pair);
    pair.client.destroy();
    pair.server?.destroy();
  };

  const server = createServer((client) => {
    const pair: Pair = { client, server: undefined, toServer: [], toClient: [] };
    pairs.add(pair);
    client.on('error', () => end(pair)).on('close', () => end(pair));
    client.on('data', (chunk: Buffer) => {
      if (frozen || !pair.server) pair.toServer.push(chunk);
      else pair.server.write(chunk);
    });
    if (!frozen) link(pair);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  const url = new URL(upstreamUrl);
  url.hostname = '127.0.0.1';
  url.port = String(address.port);
  return {
    url: url.toString(),
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const pair of pairs) {
        if (!pair.server) {
          link(pair);
          continue;
        }
        for (const chunk of pair.toServer.splice(0)) pair.server.write(chunk);
        for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
      }
    },
    sever: () => {
      for (const pair of pairs) end(pair);
    },
    get open() {
      return pairs.size;
    },
    close: async () => {
      for (const pair of pairs) end(pair);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A proxy in front of the catalog and of every shard of `topology`, and the topology as seen
 * through them (a gateway started on it reaches every database through a proxy).
 */
export async function behindProxies(topology: {
  catalogUrl: string;
  shards: { name: string; url: string; weight: number }[];
}): Promise<{
  proxied: typeof topology;
  /** The catalog's proxy first, then the shards' in topology order. */
  proxies: FreezableProxy[];
}> {
  const catalogProxy = await startFreezableProxy(topology.catalogUrl);
  const shardProxies = await Promise.all(topology.shards.map((s) => startFreezableProxy(s.url)));
  return {
    proxied: {
      catalogUrl: catalogProxy.url,
      shards: topology.shards.map((s, i) => ({ ...s, url: shardProxies[i]!.url })),
    },
    proxies: [catalogProxy, ...shardProxies],
  };
}
