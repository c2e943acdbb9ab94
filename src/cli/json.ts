import {
  moveReasonToJSON,
  movePhaseToJSON,
  moveStateToJSON,
  shardStateToJSON,
  type GetTopologyResponse,
  type ListMovesResponse,
  type LocateResponse,
  type Move,
  type PlannedMove,
  type PlanRebalanceResponse,
  type RebalanceResponse,
  type Shard,
} from '../gen/shardgate/v1/admin.js';
import { tenantStatusToJSON } from '../gen/shardgate/v1/tenant.js';

/**
 * `--json` output: the RPC's response message in proto3 JSON shape (lowerCamelCase fields, enums
 * by their proto names, timestamps as RFC 3339), except that every field is present, defaults
 * included, so scripts never have to know proto3's omission rules. int64 values are numbers.
 */
export const toJson = {
  shard: (s: Shard) => ({
    name: s.name,
    state: shardStateToJSON(s.state),
    weight: s.weight,
    tenantCount: s.tenantCount,
    address: s.address,
  }),

  topology: (r: GetTopologyResponse) => ({
    shards: r.shards.map(toJson.shard),
    ringEpoch: r.ringEpoch,
    ringVnodes: r.ringVnodes,
  }),

  locate: (r: LocateResponse) => ({
    clientId: r.clientId,
    shard: r.shard,
    schema: r.schema,
    ringShard: r.ringShard,
    placementDiffers: r.placementDiffers,
    status: tenantStatusToJSON(r.status),
  }),

  /** AddShard, DrainShard and SetShardWeight responses. */
  shardChange: (r: { shard?: Shard | undefined; ringEpoch: number }) => ({
    shard: r.shard ? toJson.shard(r.shard) : null,
    ringEpoch: r.ringEpoch,
  }),

  plannedMove: (m: PlannedMove) => ({
    clientId: m.clientId,
    fromShard: m.fromShard,
    toShard: m.toShard,
    reason: moveReasonToJSON(m.reason),
    sizeBytes: m.sizeBytes,
    rowEstimate: m.rowEstimate,
  }),

  plan: (r: PlanRebalanceResponse) => ({
    moves: r.moves.map(toJson.plannedMove),
    ringEpoch: r.ringEpoch,
    totalBytes: r.totalBytes,
  }),

  move: (m: Move) => ({
    id: m.id,
    clientId: m.clientId,
    sourceShard: m.sourceShard,
    targetShard: m.targetShard,
    phase: movePhaseToJSON(m.phase),
    state: moveStateToJSON(m.state),
    reason: moveReasonToJSON(m.reason),
    rowsCopied: m.rowsCopied,
    rowsTotal: m.rowsTotal,
    bytesTotal: m.bytesTotal,
    writePauseMs: m.writePauseMs,
    etaSeconds: m.etaSeconds,
    error: m.error,
    createdAt: m.createdAt?.toISOString() ?? null,
    updatedAt: m.updatedAt?.toISOString() ?? null,
    finishedAt: m.finishedAt?.toISOString() ?? null,
  }),

  /** MoveTenant, GetMove and CancelMove responses. */
  moveResponse: (r: { move?: Move | undefined }) => ({ move: r.move ? toJson.move(r.move) : null }),

  rebalance: (r: RebalanceResponse) => ({
    move: r.move ? toJson.move(r.move) : null,
    finished: r.finished,
    total: r.total,
  }),

  listMoves: (r: ListMovesResponse) => ({
    moves: r.moves.map(toJson.move),
    nextPageToken: r.nextPageToken,
  }),
};
