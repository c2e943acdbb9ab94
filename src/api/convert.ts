import type { TenantRecord, TenantStatus as DomainTenantStatus } from '../catalog/catalog.js';
import { invalidArgument } from '../core/errors.js';
import { AppointmentStatus, type Appointment } from '../gen/shardgate/v1/appointment.js';
import type { Handoff } from '../gen/shardgate/v1/handoff.js';
import type { State } from '../gen/shardgate/v1/state.js';
import { TenantStatus, type Tenant } from '../gen/shardgate/v1/tenant.js';
import type { AppointmentRecord } from '../shards/appointments.js';
import type { AppointmentStatus as DomainAppointmentStatus } from '../shards/client-migrations.js';
import type { HandoffRecord } from '../shards/handoffs.js';
import type { StateRecord } from '../shards/state.js';

const TENANT_STATUS_TO_PROTO: Record<DomainTenantStatus, TenantStatus> = {
  provisioning: TenantStatus.TENANT_STATUS_PROVISIONING,
  active: TenantStatus.TENANT_STATUS_ACTIVE,
  churned: TenantStatus.TENANT_STATUS_CHURNED,
};

const APPOINTMENT_STATUS_TO_PROTO: Record<DomainAppointmentStatus, AppointmentStatus> = {
  scheduled: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
  confirmed: AppointmentStatus.APPOINTMENT_STATUS_CONFIRMED,
  completed: AppointmentStatus.APPOINTMENT_STATUS_COMPLETED,
  cancelled: AppointmentStatus.APPOINTMENT_STATUS_CANCELLED,
  no_show: AppointmentStatus.APPOINTMENT_STATUS_NO_SHOW,
};
const APPOINTMENT_STATUS_FROM_PROTO = new Map(
  Object.entries(APPOINTMENT_STATUS_TO_PROTO).map(([k, v]) => [v, k as DomainAppointmentStatus]),
);

export function tenantStatusToProto(status: DomainTenantStatus): TenantStatus {
  return TENANT_STATUS_TO_PROTO[status];
}

/** A status filter; UNSPECIFIED means none. */
export function tenantStatusFilter(status: TenantStatus): DomainTenantStatus | undefined {
  if (status === TenantStatus.TENANT_STATUS_UNSPECIFIED) return undefined;
  const found = Object.entries(TENANT_STATUS_TO_PROTO).find(([, v]) => v === status);
  if (!found) throw invalidArgument('status is not a known TenantStatus');
  return found[0] as DomainTenantStatus;
}

/** A proto appointment status to the stored one; UNSPECIFIED gives `fallback` or is rejected. */
export function appointmentStatusFromProto(
  status: AppointmentStatus,
  field: string,
  fallback?: DomainAppointmentStatus,
): DomainAppointmentStatus {
  if (status === AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED && fallback) return fallback;
  const found = APPOINTMENT_STATUS_FROM_PROTO.get(status);
  if (!found)
    throw invalidArgument(`${field} must be a known AppointmentStatus other than UNSPECIFIED`);
  return found;
}

export function tenantToProto(t: TenantRecord): Tenant {
  return {
    clientId: t.clientId,
    status: tenantStatusToProto(t.status),
    shard: t.shard,
    schema: t.schema,
    schemaVersion: t.schemaVersion,
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
    churnedAt: t.churnedAt ?? undefined,
    placementEpoch: t.placementEpoch,
  };
}

export function appointmentToProto(a: AppointmentRecord): Appointment {
  return {
    id: a.id,
    clientPhone: a.clientPhone,
    scheduledAt: a.scheduledAt,
    serviceType: a.serviceType,
    status: APPOINTMENT_STATUS_TO_PROTO[a.status],
    createdAt: a.createdAt,
    updatedAt: a.updatedAt,
  };
}

export function handoffToProto(h: HandoffRecord): Handoff {
  return {
    id: h.id,
    fromAgent: h.fromAgent,
    toAgent: h.toAgent,
    version: h.version,
    summary: h.summary,
    createdAt: h.createdAt,
  };
}

export function stateToProto(s: StateRecord): State {
  return { document: s.document, version: s.version, updatedAt: s.updatedAt ?? undefined };
}
