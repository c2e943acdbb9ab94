import {
  moveReasonToJSON,
  movePhaseToJSON,
  moveStateToJSON,
  shardStateToJSON,
  type GetTopologyResponse,
  type LocateResponse,
  type Move,
  type PlanRebalanceResponse,
  type Shard,
} from '../gen/shardgate/v1/admin.js';
import { tenantStatusToJSON } from '../gen/shardgate/v1/tenant.js';

/** A column of a text table; numbers read best right-aligned. */
export interface Column {
  readonly header: string;
  readonly align?: 'left' | 'right';
}

/** A compact table: upper-case headers, columns two spaces apart, no trailing blanks. */
export function renderTable(columns: readonly Column[], rows: readonly string[][]): string {
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        return c.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...rows.map(line)].join('\n');
}

/** `key  value` lines with the keys aligned. */
export function renderFields(fields: readonly [string, string][]): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** An enum's proto name without its type prefix, for people: MOVE_PHASE_CATCHING_UP → catching-up. */
export function enumLabel(protoName: string, prefix: string): string {
  return protoName.replace(prefix, '').toLowerCase().replaceAll('_', '-');
}

export const label = {
  shardState: (s: Shard['state']) => enumLabel(shardStateToJSON(s), 'SHARD_STATE_'),
  phase: (m: Move) => enumLabel(movePhaseToJSON(m.phase), 'MOVE_PHASE_'),
  state: (m: Move) => enumLabel(moveStateToJSON(m.state), 'MOVE_STATE_'),
  reason: (r: Move['reason']) => enumLabel(moveReasonToJSON(r), 'MOVE_REASON_'),
};

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** 1536 → `1.5 KiB`. */
export function formatBytes(sizeBytes: number): string {
  let value = sizeBytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** 65 → `1m05s`; 0 or less → `-` (the gateway gives no estimate outside the copy). */
export function formatEta(seconds: number): string {
  if (!(seconds > 0)) return '-';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** `copied/total rows`, or just the count copied when no estimate was made. */
export function formatRows(m: Move): string {
  return m.rowsTotal > 0 ? `${m.rowsCopied}/${m.rowsTotal}` : `${m.rowsCopied}`;
}

export function renderTopology(r: GetTopologyResponse): string {
  const table = renderTable(
    [
      { header: 'name' },
      { header: 'state' },
      { header: 'weight', align: 'right' },
      { header: 'tenants', align: 'right' },
      { header: 'address' },
    ],
    r.shards.map((s) => [
      s.name,
      label.shardState(s.state),
      String(s.weight),
      String(s.tenantCount),
      s.address,
    ]),
  );
  return `${table}\n\nring epoch ${r.ringEpoch}, ${r.ringVnodes} virtual nodes per weight unit`;
}

export function renderLocate(r: LocateResponse): string {
  return renderFields([
    ['client', r.clientId],
    ['shard', r.shard],
    ['schema', r.schema],
    ['ring shard', r.placementDiffers ? `${r.ringShard} (placement differs)` : r.ringShard],
    ['status', enumLabel(tenantStatusToJSON(r.status), 'TENANT_STATUS_')],
  ]);
}

/** One shard after a change, as a one-row table plus the ring epoch. */
export function renderShardChange(verb: string, r: { shard?: Shard; ringEpoch: number }): string {
  const s = r.shard;
  const detail = s
    ? `${s.name}: ${label.shardState(s.state)}, weight ${s.weight}, ${s.tenantCount} tenants, ${s.address}`
    : '';
  return `${verb} ${detail} (ring epoch ${r.ringEpoch})`;
}

export function renderPlan(r: PlanRebalanceResponse): string {
  if (r.moves.length === 0) return `nothing to move (ring epoch ${r.ringEpoch})`;
  const table = renderTable(
    [
      { header: 'client' },
      { header: 'from' },
      { header: 'to' },
      { header: 'reason' },
      { header: 'size', align: 'right' },
      { header: 'rows', align: 'right' },
    ],
    r.moves.map((m) => [
      m.clientId,
      m.fromShard,
      m.toShard,
      label.reason(m.reason),
      formatBytes(m.sizeBytes),
      String(m.rowEstimate),
    ]),
  );
  const summary = `${r.moves.length} move(s), ${formatBytes(r.totalBytes)} in all, ring epoch ${r.ringEpoch}`;
  return `${table}\n\n${summary}; run them with: shardctl rebalance`;
}

export function renderMoveList(moves: readonly Move[]): string {
  if (moves.length === 0) return 'no moves';
  return renderTable(
    [
      { header: 'id' },
      { header: 'client' },
      { header: 'from' },
      { header: 'to' },
      { header: 'state' },
      { header: 'phase' },
      { header: 'rows', align: 'right' },
      { header: 'created' },
    ],
    moves.map((m) => [
      m.id,
      m.clientId,
      m.sourceShard,
      m.targetShard,
      label.state(m),
      label.phase(m),
      formatRows(m),
      m.createdAt?.toISOString() ?? '',
    ]),
  );
}

export function renderMove(m: Move): string {
  const fields: [string, string][] = [
    ['move', m.id],
    ['client', m.clientId],
    ['from → to', `${m.sourceShard} → ${m.targetShard}`],
    ['state', `${label.state(m)} (phase ${label.phase(m)})`],
    ['reason', label.reason(m.reason)],
    ['rows', formatRows(m)],
    ['size', formatBytes(m.bytesTotal)],
    ['eta', formatEta(m.etaSeconds)],
    ['write pause', `${m.writePauseMs} ms`],
    ['created', m.createdAt?.toISOString() ?? '-'],
    ['updated', m.updatedAt?.toISOString() ?? '-'],
    ['finished', m.finishedAt?.toISOString() ?? '-'],
  ];
  if (m.error !== '') fields.push(['error', m.error]);
  return renderFields(fields);
}
