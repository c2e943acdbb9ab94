import {
  type CallOptions,
  ChannelCredentials,
  type ChannelOptions,
  type ClientMiddlewareCall,
  createChannel,
  createClientFactory,
  Metadata,
  Status,
} from 'nice-grpc';
import { randomUUID } from 'node:crypto';
import { type DeadlineOptions, deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { type RetryOptions, retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { type AdminServiceClient, AdminServiceDefinition } from '../gen/shardgate/v1/admin.js';
import {
  type AppointmentServiceClient,
  AppointmentServiceDefinition,
} from '../gen/shardgate/v1/appointment.js';
import {
  type HandoffServiceClient,
  HandoffServiceDefinition,
} from '../gen/shardgate/v1/handoff.js';
import { type SharedServiceClient, SharedServiceDefinition } from '../gen/shardgate/v1/shared.js';
import { type StateServiceClient, StateServiceDefinition } from '../gen/shardgate/v1/state.js';
import { type TenantServiceClient, TenantServiceDefinition } from '../gen/shardgate/v1/tenant.js';
import { pushbackRetryMiddleware } from './pushback-retry.js';

/** Deadline of a unary call that passes no `deadline` of its own. Streaming calls get none. */
export const DEFAULT_DEADLINE_MS = 10_000;

/**
 * Retry of reads and keyed creates. `maxAttempts` counts the first attempt, so 3 means up to two
 * retries; after UNAVAILABLE the delay before retry n is drawn from [d/2, d] with
 * d = min(maxDelayMs, baseDelayMs·2ⁿ); after RESOURCE_EXHAUSTED with RetryInfo
 * (`resourceExhausted`) it is the server's delay, plus up to 10 % jitter.
 */
export const DEFAULT_RETRY = {
  maxAttempts: 3,
  baseDelayMs: 100,
  maxDelayMs: 2_000,
  resourceExhausted: true,
} as const;

/** setTimeout fires at once for longer delays, which would turn a long deadline into none at all. */
const MAX_TIMER_MS = 2_147_483_647;

/** Leading verbs of the methods that only read, after an AIP-231 `Batch` prefix; these are retried. */
export const READ_VERBS = ['Get', 'List', 'Locate'] as const;

/**
 * The creates that take an idempotency key (`request_id`, AIP-155). The client gives each call one
 * when the caller did not, the same for every attempt, so these are retried like reads: a retry of
 * a create that did land returns its first result instead of creating twice.
 */
export const KEYED_CREATES = [
  'CreateAppointment',
  'BatchCreateAppointments',
  'AppendHandoff',
  'BatchAppendHandoffs',
  'AddKnowledgeEntry',
] as const;
/** A verb from READ_VERBS. */
export type ReadVerb = (typeof READ_VERBS)[number];

/** How a ShardgateClient reaches the gateway and how its calls behave. */
export interface ShardgateClientOptions {
  /** `host:port` of the gateway. */
  address: string;
  /** Default: insecure (plaintext) for a `host:port` address, or TLS built from `tls`. */
  credentials?: ChannelCredentials;
  /**
   * A bearer token secret, sent as `authorization: Bearer <secret>` on every call (a call's own
   * `authorization` metadata wins). Get one with `shardctl tokens create`.
   */
  token?: string;
  /**
   * TLS to the gateway: `ca` is the PEM CA bundle that signed the gateway's certificate; `cert`
   * and `key` (both or neither) are this client's PEM certificate and key for mutual TLS.
   */
  tls?: ShardgateTlsOptions;
  /** Deadline of every unary call without its own `deadline`; default DEFAULT_DEADLINE_MS. */
  defaultDeadlineMs?: number;
  /**
   * Retry of reads and keyed creates (never other writes or streams); defaults in DEFAULT_RETRY.
   * They are retried on UNAVAILABLE with exponential backoff, and on RESOURCE_EXHAUSTED that
   * carries a google.rpc.RetryInfo after the server's delay (server pushback) unless
   * `resourceExhausted` is false. Both share `maxAttempts` per call, and no wait runs past the
   * call's deadline: when the server's delay and another attempt (as long as the refused one) do
   * not fit, the RESOURCE_EXHAUSTED error is thrown at once, RetryInfo and all, for the caller.
   */
  retry?: {
    maxAttempts?: number;
    baseDelayMs?: number;
    maxDelayMs?: number;
    resourceExhausted?: boolean;
  };
  /** Sent on every call; a call's own metadata wins for the keys it sets. */
  metadata?: Metadata | Record<string, string>;
  /** Passed to the grpc-js channel. */
  channelOptions?: ChannelOptions;
}

/** PEM material for a TLS channel; strings or Buffers. */
export interface ShardgateTlsOptions {
  ca: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
}

/**
 * Options of every client method: nice-grpc's CallOptions plus `deadline` (ms from now or a Date).
 * `deadline: undefined` turns the default deadline off for that call.
 */
export type ShardgateCallOptions = DeadlineOptions;

/** One client per service of shardgate.v1, all on one channel. */
export interface ShardgateClient {
  readonly tenants: TenantServiceClient<ShardgateCallOptions>;
  readonly appointments: AppointmentServiceClient<ShardgateCallOptions>;
  readonly handoffs: HandoffServiceClient<ShardgateCallOptions>;
  readonly state: StateServiceClient<ShardgateCallOptions>;
  readonly shared: SharedServiceClient<ShardgateCallOptions>;
  readonly admin: AdminServiceClient<ShardgateCallOptions>;
  /** Closes the shared channel; calls made afterwards fail. */
  close(): void;
}

/**
 * True for a method that only reads, judged by its leading verb (`GetState`, `ListTenants`,
 * `Locate`, `BatchGetAppointments`). An unknown verb counts as a write, so a new method is never
 * retried by accident.
 */
export function isReadMethod(methodName: string): boolean {
  const verb = /^(?:Batch)?([A-Z][a-z]*)/.exec(methodName)?.[1];
  return verb !== undefined && (READ_VERBS as readonly string[]).includes(verb);
}

/** True for a method the client retries on UNAVAILABLE: a read, or a create with a request_id. */
export function isRetriedMethod(methodName: string): boolean {
  return isReadMethod(methodName) || (KEYED_CREATES as readonly string[]).includes(methodName);
}

/**
 * Creates the typed client. Unary calls get the default deadline; unary reads and keyed creates
 * are retried on UNAVAILABLE and, after the server's delay, on RESOURCE_EXHAUSTED with RetryInfo;
 * other writes and streams are never retried, and streams have no default deadline. Errors with
 * details (RESOURCE_EXHAUSTED's RetryInfo) arrive as nice-grpc-error-details' RichClientError, a
 * ClientError whose `extra` holds them.
 */
export function createShardgateClient(options: ShardgateClientOptions): ShardgateClient {
  const policy = resolvePolicy(options);
  const metadata = defaultMetadata(options);
  const channel = createChannel(
    options.address,
    channelCredentials(options),
    options.channelOptions,
  );
  // Attached first runs last. Outermost, callDefaults: every attempt carries the same request_id
  // and metadata. Pushback sees the call's deadline and passes it down as one absolute deadline,
  // so it spans every attempt; the deadline middleware aborts an UNAVAILABLE backoff sleep;
  // errors reach both retry layers with their details decoded.
  const attempts = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .use(retryMiddleware)
    .use(deadlineMiddleware);
  const factory = (policy.pushback ? attempts.use(pushbackRetryMiddleware) : attempts).use(
    callDefaultsMiddleware(metadata),
  );
  return {
    tenants: factory.create(
      TenantServiceDefinition,
      channel,
      callDefaults(TenantServiceDefinition, policy),
    ),
    appointments: factory.create(
      AppointmentServiceDefinition,
      channel,
      callDefaults(AppointmentServiceDefinition, policy),
    ),
    handoffs: factory.create(
      HandoffServiceDefinition,
      channel,
      callDefaults(HandoffServiceDefinition, policy),
    ),
    state: factory.create(
      StateServiceDefinition,
      channel,
      callDefaults(StateServiceDefinition, policy),
    ),
    shared: factory.create(
      SharedServiceDefinition,
      channel,
      callDefaults(SharedServiceDefinition, policy),
    ),
    admin: factory.create(
      AdminServiceDefinition,
      channel,
      callDefaults(AdminServiceDefinition, policy),
    ),
    close: () => channel.close(),
  };
}

/** `credentials`, or TLS from `tls`, or undefined (plaintext); both at once is a mistake. */
function channelCredentials(options: ShardgateClientOptions): ChannelCredentials | undefined {
  const { tls } = options;
  if (!tls) return options.credentials;
  if (options.credentials) throw new RangeError('pass either credentials or tls, not both');
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new RangeError('tls.cert and tls.key go together (mutual TLS): pass both or neither');
  }
  const pem = (v: Buffer | string | undefined): Buffer | null =>
    v === undefined ? null : Buffer.from(v);
  return ChannelCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** The client's default metadata, with the bearer token when one is given. */
function defaultMetadata(options: ShardgateClientOptions): Metadata {
  const metadata = Metadata(options.metadata);
  if (options.token !== undefined) {
    if (options.token === '' || /\s/.test(options.token)) {
      throw new RangeError('token must be a bearer secret without whitespace');
    }
    metadata.set('authorization', `Bearer ${options.token}`);
  }
  return metadata;
}

type InternalCallOptions = CallOptions & DeadlineOptions & RetryOptions;

interface CallPolicy {
  readonly deadlineMs: number;
  readonly readRetry: RetryOptions;
  /** Whether retried methods follow RESOURCE_EXHAUSTED's RetryInfo. */
  readonly pushback: boolean;
}

/** The parts of a ts-proto generic definition that decide a method's defaults. */
interface ServiceShape {
  readonly methods: Record<
    string,
    { readonly name: string; readonly requestStream: boolean; readonly responseStream: boolean }
  >;
}

function resolvePolicy(options: ShardgateClientOptions): CallPolicy {
  const deadlineMs = options.defaultDeadlineMs ?? DEFAULT_DEADLINE_MS;
  const maxAttempts = options.retry?.maxAttempts ?? DEFAULT_RETRY.maxAttempts;
  const baseDelayMs = options.retry?.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs;
  const maxDelayMs = options.retry?.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs;
  if (!(deadlineMs > 0 && deadlineMs <= MAX_TIMER_MS)) {
    throw new RangeError(`defaultDeadlineMs must be between 1 and ${MAX_TIMER_MS}`);
  }
  if (!(maxAttempts >= 1 && (Number.isInteger(maxAttempts) || maxAttempts === Infinity))) {
    throw new RangeError('retry.maxAttempts must be an integer of at least 1, or Infinity');
  }
  if (!(baseDelayMs >= 0 && maxDelayMs >= 0)) {
    throw new RangeError('retry.baseDelayMs and retry.maxDelayMs must not be negative');
  }
  return {
    deadlineMs,
    pushback: options.retry?.resourceExhausted ?? DEFAULT_RETRY.resourceExhausted,
    readRetry: {
      retry: maxAttempts > 1,
      // The middleware counts retries, not attempts.
      retryMaxAttempts: maxAttempts - 1,
      retryBaseDelayMs: baseDelayMs,
      retryMaxDelayMs: maxDelayMs,
      retryableStatuses: [Status.UNAVAILABLE],
    },
  };
}

/**
 * Per-method default options, keyed like the generated client's methods. Streaming methods get
 * neither a deadline (a watch lives until its caller aborts it) nor retry (the middleware never
 * retries streams; a caller that re-watches must catch up on what it missed with a List call).
 */
function callDefaults(
  definition: ServiceShape,
  policy: CallPolicy,
): Record<string, InternalCallOptions> {
  const defaults: Record<string, InternalCallOptions> = { '*': { retry: false } };
  for (const [key, method] of Object.entries(definition.methods)) {
    if (method.requestStream || method.responseStream) continue;
    defaults[key] = {
      deadline: policy.deadlineMs,
      ...(isRetriedMethod(method.name) ? policy.readRetry : { retry: false }),
    };
  }
  return defaults;
}

/**
 * What every call gets before its retries, in one middleware layer: the client's metadata merged
 * under the call's own (nice-grpc replaces, rather than merges, default `metadata` when a call
 * passes any), and for a keyed create without a request_id a fresh one, so every attempt shares
 * it. A caller that passes `requestId: ''` opts out of deduplication.
 */
function callDefaultsMiddleware(defaults: Metadata) {
  const noDefaults = defaults[Symbol.iterator]().next().done === true;
  return async function* callDefaults<Request, Response>(
    call: ClientMiddlewareCall<Request, Response>,
    options: CallOptions,
  ) {
    const request = call.requestStream
      ? call.request
      : withRequestId(call.request, call.method.path);
    if (noDefaults && options.metadata === undefined) return yield* call.next(request, options);
    // Copies the value arrays: a later middleware's append() must not leak into other calls.
    const metadata = Metadata();
    for (const [key, values] of defaults) metadata.set(key, [...values]);
    for (const [key, values] of options.metadata ?? []) metadata.set(key, [...values]);
    return yield* call.next(request, { ...options, metadata });
  };
}

/** The request, with a fresh request_id if it is a keyed create that has none. */
function withRequestId<Request>(request: Request, path: string): Request {
  // Absent only: an explicit '' asks for no deduplication (and so no retry is safe then).
  if ((request as { requestId?: unknown }).requestId !== undefined) return request;
  const method = path.slice(path.lastIndexOf('/') + 1);
  if (!(KEYED_CREATES as readonly string[]).includes(method)) return request;
  return { ...request, requestId: randomUUID() };
}
