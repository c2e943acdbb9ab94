import { invalidArgument, notFound, ShardgateError } from '../core/errors.js';
import type {
  Appointment,
  AppointmentServiceImplementation,
  UpdateAppointmentRequest,
} from '../gen/shardgate/v1/appointment.js';
import { appointments, type AppointmentFields } from '../shards/appointments.js';
import { appointmentStatusFromProto, appointmentToProto } from './convert.js';
import { withClient, type GatewayContext } from './gateway-context.js';
import { createOnce, requestKeyOf } from './idempotency.js';
import {
  answerBudgetBytes,
  cursorDate,
  cursorString,
  decodePageToken,
  fitPage,
  pageOf,
  refuseUnlessAnswerFits,
} from './page-token.js';
import * as v from './validate.js';

const MUTABLE_PATHS = ['client_phone', 'scheduled_at', 'service_type', 'status'] as const;
type MutablePath = (typeof MUTABLE_PATHS)[number];

/** AppointmentService: each call runs in the client's own schema on its shard. */
export function createAppointmentService(ctx: GatewayContext): AppointmentServiceImplementation {
  return {
    async createAppointment(req, { signal }) {
      if (!req.appointment) throw invalidArgument('appointment is required');
      const fields = newAppointment(req.appointment, 'appointment');
      const key = requestKeyOf(req.requestId, 'CreateAppointment', fields);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const row = await createOnce(
          ctx,
          scope,
          key,
          () => appointments.create(scope.db, scope.schema, fields, signal, key),
          signal,
        );
        return { appointment: appointmentToProto(row) };
      });
    },

    async batchCreateAppointments(req, { signal }) {
      v.batchSize(req.appointments.length, 'appointments');
      const items = req.appointments.map((a, i) => newAppointment(a, `appointments[${i}]`));
      // The answer repeats every item with its id and timestamps: refuse, before writing, a
      // batch whose answer could not be sent (the rows would be stored, the caller told failure).
      refuseUnlessAnswerFits(
        responseBytes(items),
        ctx.config.limits.maxMessageBytes,
        `appointments: the answer to these ${items.length} would`,
        'send fewer per call',
      );
      const key = requestKeyOf(req.requestId, 'BatchCreateAppointments', items);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const rows = await createOnce(
          ctx,
          scope,
          key,
          () => appointments.createMany(scope.db, scope.schema, items, signal, key),
          signal,
        );
        return { appointments: rows.map(appointmentToProto) };
      });
    },

    async getAppointment(req, { signal }) {
      const id = v.uuid(req.id);
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        const row = await appointments.get(scope.db, scope.schema, id, signal);
        if (!row) throw appointmentNotFound(req.clientId, id);
        return { appointment: appointmentToProto(row) };
      });
    },

    async batchGetAppointments(req, { signal }) {
      v.batchSize(req.ids.length, 'ids');
      const ids = req.ids.map((id, i) => v.uuid(id, `ids[${i}]`));
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        const distinct = [...new Set(ids)];
        const rows = await appointments.getMany(scope.db, scope.schema, distinct, signal);
        const byId = new Map(rows.map((row) => [row.id, row]));
        const missing = distinct.filter((id) => !byId.has(id));
        if (missing.length > 0) throw appointmentsNotFound(req.clientId, missing);
        const found = ids.map((id) => byId.get(id)!);
        refuseUnlessAnswerFits(
          responseBytes(found),
          ctx.config.limits.maxMessageBytes,
          `ids: these ${found.length} appointments`,
          'ask for fewer ids per call',
        );
        return { appointments: found.map(appointmentToProto) };
      });
    },

    async listAppointments(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const scheduledAfter = v.optionalTimestamp(req.scheduledAfter, 'scheduled_after');
      const scheduledBefore = v.optionalTimestamp(req.scheduledBefore, 'scheduled_before');
      const statuses = req.statuses.map((s) => appointmentStatusFromProto(s, 'statuses'));
      const filters = [
        'appointments',
        req.clientId,
        scheduledAfter?.getTime(),
        scheduledBefore?.getTime(),
        statuses,
      ];
      const cursor = decodePageToken(req.pageToken, filters);
      const after = cursor && {
        scheduledAt: cursorDate(cursor[0]),
        id: v.uuid(cursorString(cursor[1]), 'page_token'),
      };
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        const rows = await appointments.list(
          scope.db,
          scope.schema,
          { scheduledAfter, scheduledBefore, statuses, after, limit: limit + 1 },
          signal,
        );
        const { items, nextPageToken } = pageOf(
          rows,
          limit,
          filters,
          (a) => [a.scheduledAt.getTime(), a.id],
          // 1000 appointments of long service types come to ~730 KB: over a small message limit.
          (page) =>
            fitPage(page, appointmentBytes, answerBudgetBytes(ctx.config.limits.maxMessageBytes)),
        );
        return { appointments: items.map(appointmentToProto), nextPageToken };
      });
    },

    async updateAppointment(req, { signal }) {
      const a = req.appointment;
      if (!a) throw invalidArgument('appointment is required');
      const id = v.uuid(a.id, 'appointment.id');
      const changes = changesFromMask(req, a);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const row = await appointments.update(scope.db, scope.schema, id, changes, signal);
        if (!row) throw appointmentNotFound(req.clientId, id);
        return { appointment: appointmentToProto(row) };
      });
    },

    async cancelAppointment(req, { signal }) {
      const id = v.uuid(req.id);
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const row = await appointments.cancel(scope.db, scope.schema, id, signal);
        if (!row) throw appointmentNotFound(req.clientId, id);
        if (row.status === 'completed') {
          throw new ShardgateError(
            'failed-precondition',
            `appointment ${id} is completed and cannot be cancelled`,
          );
        }
        return { appointment: appointmentToProto(row) };
      });
    },
  };
}

/** The caller-settable fields of a new appointment, validated; `field` prefixes error messages. */
function newAppointment(a: Appointment, field: string): AppointmentFields {
  return {
    clientPhone: v.phone(a.clientPhone, `${field}.client_phone`),
    scheduledAt: v.timestamp(a.scheduledAt, `${field}.scheduled_at`),
    serviceType: v.text(a.serviceType, `${field}.service_type`, 1, 200),
    status: appointmentStatusFromProto(a.status, `${field}.status`, 'scheduled'),
  };
}

function appointmentNotFound(clientId: string, id: string): ShardgateError {
  return notFound(`client '${clientId}' has no appointment ${id}`);
}

/**
 * An upper bound of one appointment's encoded size in a response: its two free-text fields
 * (service_type up to 600 UTF-8 bytes; client_phone ASCII) plus at most 105 bytes for the id, the
 * three timestamps, the status, the tags and the repeated-field framing.
 */
function appointmentBytes(a: { serviceType: string; clientPhone: string }): number {
  return Buffer.byteLength(a.serviceType) + a.clientPhone.length + 128;
}

function responseBytes(items: readonly { serviceType: string; clientPhone: string }[]): number {
  let total = 0;
  for (const a of items) total += appointmentBytes(a);
  return total;
}

/** Ids named in a BatchGetAppointments NOT_FOUND message, at most; the count says the rest. */
const MISSING_IDS_SHOWN = 5;

function appointmentsNotFound(clientId: string, missing: readonly string[]): ShardgateError {
  const shown = missing.slice(0, MISSING_IDS_SHOWN).join(', ');
  const more =
    missing.length > MISSING_IDS_SHOWN ? ` and ${missing.length - MISSING_IDS_SHOWN} more` : '';
  return notFound(
    `client '${clientId}' has no appointment ${shown}${more}; BatchGetAppointments returns all or none`,
  );
}

/**
 * AIP-134: the mask names the fields to change; `*` means all of them; no mask means every field
 * set to a non-default value. Output-only and unknown paths are INVALID_ARGUMENT.
 */
function changesFromMask(
  req: UpdateAppointmentRequest,
  a: Appointment,
): Partial<AppointmentFields> {
  const paths = req.updateMask ?? implicitPaths(a);
  const chosen = new Set<MutablePath>();
  for (const path of paths) {
    if (path === '*') MUTABLE_PATHS.forEach((p) => chosen.add(p));
    else if ((MUTABLE_PATHS as readonly string[]).includes(path)) chosen.add(path as MutablePath);
    else {
      throw invalidArgument(
        `update_mask path '${[...path].slice(0, 64).join('')}' cannot be updated; use ${MUTABLE_PATHS.join(', ')} or *`,
      );
    }
  }
  if (chosen.size === 0) throw invalidArgument('update_mask names no field to update');
  const changes: Partial<AppointmentFields> = {};
  if (chosen.has('client_phone'))
    changes.clientPhone = v.phone(a.clientPhone, 'appointment.client_phone');
  if (chosen.has('scheduled_at'))
    changes.scheduledAt = v.timestamp(a.scheduledAt, 'appointment.scheduled_at');
  if (chosen.has('service_type'))
    changes.serviceType = v.text(a.serviceType, 'appointment.service_type', 1, 200);
  if (chosen.has('status'))
    changes.status = appointmentStatusFromProto(a.status, 'appointment.status');
  return changes;
}

function implicitPaths(a: Appointment): MutablePath[] {
  const paths: MutablePath[] = [];
  if (a.clientPhone !== '') paths.push('client_phone');
  if (a.scheduledAt !== undefined) paths.push('scheduled_at');
  if (a.serviceType !== '') paths.push('service_type');
  if (a.status !== 0) paths.push('status');
  return paths;
}
