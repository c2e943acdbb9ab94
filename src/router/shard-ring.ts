import HashRing from 'hashring';
import type { ShardName } from '../core/ids.js';

/** A shard's place on the ring. */
export interface RingMember {
  readonly name: ShardName;
  readonly weight: number;
}

/**
 * The consistent-hash ring that picks a new client's default shard. Built from the same members
 * and vnode count, it answers identically in every gateway process (hashring hashes with md5, no
 * randomness), so replicas agree without talking to each other. Adding a shard to N equal shards
 * moves about 1/(N+1) of the keys; weights scale each shard's share.
 */
export class ShardRing {
  readonly epoch: number;
  readonly members: readonly RingMember[];
  readonly #ring: HashRing | undefined;

  constructor(members: readonly RingMember[], vnodes: number, epoch: number) {
    this.epoch = epoch;
    this.members = [...members].sort((a, b) => (a.name < b.name ? -1 : 1));
    if (this.members.length === 0) return;
    const servers: Record<string, { weight: number }> = {};
    for (const m of this.members) servers[m.name] = { weight: m.weight };
    this.#ring = new HashRing(servers, 'md5', { 'vnode count': vnodes, 'max cache size': 10_000 });
  }

  /** The ring's shard for a client; undefined when the ring has no members. */
  shardFor(clientId: string): ShardName | undefined {
    return this.#ring?.get(clientId) as ShardName | undefined;
  }
}
