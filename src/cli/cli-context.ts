import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CallOptions } from 'nice-grpc';
import {
  createShardgateClient,
  DEFAULT_DEADLINE_MS,
  type ShardgateCallOptions,
  type ShardgateClient,
  type ShardgateTlsOptions,
} from '../client/index.js';
import { usageFailure } from './cli-failure.js';

/** The options every command takes (declared on the program, usable after the command name). */
export interface GlobalOptions {
  readonly address: string;
  readonly json?: boolean;
  readonly deadlineMs?: number;
  /** Bearer secret (`--token` or SHARDGATE_TOKEN). */
  readonly token?: string;
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
}

/** What a command needs: the admin client, the output mode and the call options. */
export class CliContext {
  readonly options: GlobalOptions;
  readonly #client: ShardgateClient;

  constructor(options: GlobalOptions) {
    this.options = options;
    this.#client = createShardgateClient({
      address: options.address,
      defaultDeadlineMs: options.deadlineMs ?? DEFAULT_DEADLINE_MS,
      ...(options.token ? { token: options.token } : {}),
      ...(tlsOptions(options) ?? {}),
    });
  }

  get admin(): ShardgateClient['admin'] {
    return this.#client.admin;
  }

  get json(): boolean {
    return this.options.json === true;
  }

  /** Prints one command's result: one JSON document with `--json`, else the human text. */
  print(doc: unknown, human: () => string): void {
    if (this.json) process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    else process.stdout.write(`${human()}\n`);
  }

  /** One line of a streaming command's `--json` output. */
  printLine(doc: unknown): void {
    process.stdout.write(`${JSON.stringify(doc)}\n`);
  }

  /** Options of a streaming call: no deadline unless `--deadline-ms` asks for one. */
  streamOptions(signal: AbortSignal): CallOptions & ShardgateCallOptions {
    const { deadlineMs } = this.options;
    return deadlineMs === undefined ? { signal } : { signal, deadline: deadlineMs };
  }

  close(): void {
    this.#client.close();
  }
}

/** `{ tls }` from the --tls-* flags, or undefined for plaintext; bad flags are usage errors. */
function tlsOptions(o: GlobalOptions): { tls: ShardgateTlsOptions } | undefined {
  if (o.tlsCa === undefined) {
    if (o.tlsCert !== undefined || o.tlsKey !== undefined)
      throw usageFailure('--tls-cert and --tls-key need --tls-ca (the CA of the gateway)');
    return undefined;
  }
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined))
    throw usageFailure('--tls-cert and --tls-key go together (mutual TLS)');
  return {
    tls: {
      ca: readPem(o.tlsCa, '--tls-ca'),
      ...(o.tlsCert !== undefined && o.tlsKey !== undefined
        ? { cert: readPem(o.tlsCert, '--tls-cert'), key: readPem(o.tlsKey, '--tls-key') }
        : {}),
    },
  };
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw usageFailure(
      `${flag} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/** Runs a command body with a context built from the global options, closing the channel after. */
export async function withContext(
  command: Command,
  body: (ctx: CliContext) => Promise<void>,
): Promise<void> {
  const ctx = new CliContext(command.optsWithGlobals<GlobalOptions>());
  try {
    await body(ctx);
  } finally {
    ctx.close();
  }
}
