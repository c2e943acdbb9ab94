#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { parseArg } from './args.js';
import { addTopologyCommands } from './commands.js';
import { EXIT_CODES, oneLine, toCliFailure, usageFailure } from './cli-failure.js';
import { addMoveCommands } from './move-commands.js';
import { addTokenCommands } from './token-commands.js';
import { addAuditCommands } from './audit-commands.js';

/** Where shardctl looks for the gateway without `--address` or SHARDGATE_ADDRESS. */
const DEFAULT_ADDRESS = '127.0.0.1:50051';

/** The shardctl command tree; commander errors are thrown (exitOverride), never exit the process. */
function createProgram(): Command {
  const program = new Command('shardctl')
    .description('operate a shardgate gateway through its gRPC AdminService')
    .addOption(
      new Option('--address <host:port>', 'gateway address')
        .env('SHARDGATE_ADDRESS')
        .default(DEFAULT_ADDRESS)
        .argParser(parseArg.address),
    )
    .option(
      '--json',
      'machine output: one JSON document, or one JSON object per line for move and rebalance',
    )
    .option(
      '--deadline-ms <ms>',
      'deadline of each call (default: 10000 for unary calls, none for streams)',
      parseArg.positiveInt,
    )
    .addOption(
      new Option(
        '--token <secret>',
        'bearer token for a gateway that requires one (prefer the env var: argv is visible to other local users)',
      ).env('SHARDGATE_TOKEN'),
    )
    .option(
      '--tls-ca <file>',
      "connect with TLS, trusting this PEM CA for the gateway's certificate",
    )
    .option('--tls-cert <file>', 'PEM client certificate for mutual TLS (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    // Commander's own message is reformatted in main(); printing it here would say it twice.
    .configureOutput({ outputError: () => undefined });
  addTopologyCommands(program);
  addMoveCommands(program);
  addTokenCommands(program);
  addAuditCommands(program);
  program.addHelpText(
    'after',
    `\nExit codes: 0 ok, 1 refused by the gateway or a move did not succeed, 2 bad usage, 3 gateway unreachable.\nExample: shardctl --address ${DEFAULT_ADDRESS} move acme-hvac shard-2`,
  );
  return program;
}

/** Runs shardctl on `argv` (process.argv shape) and returns the exit code; never throws. */
async function main(argv: readonly string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv]);
    return EXIT_CODES.ok;
  } catch (err) {
    if (err instanceof CommanderError) return reportUsage(program, err, argv);
    const address = String(program.opts().address ?? DEFAULT_ADDRESS);
    const failure = toCliFailure(err, address);
    process.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  }
}

/** Help and version exit 0; every other commander error is a usage error (exit 2). */
function reportUsage(program: Command, err: CommanderError, argv: readonly string[]): number {
  if (err.exitCode === 0) return EXIT_CODES.ok;
  // Commander has printed the help to stderr: what is missing is the command itself.
  const message = err.code === 'commander.help' ? 'a command is required' : err.message;
  const command = program.commands.find((c) => argv.slice(2).includes(c.name()));
  const help = command ? `shardctl ${command.name()} --help` : 'shardctl --help';
  const failure = usageFailure(`${oneLine(message.replace(/^error: /, ''))} (see ${help})`);
  process.stderr.write(`${failure.line}\n`);
  return failure.exitCode;
}

// With TLS to an IP address, grpc-js passes the IP as TLS server name, which Node flags once
// (DEP0123); an operator can do nothing about it and it would garble the one-line reports.
const nodeWarningHandlers = process.listeners('warning');
process.removeAllListeners('warning');
process.on('warning', (warning: Error & { code?: string }) => {
  if (warning.code !== 'DEP0123') for (const handler of nodeWarningHandlers) handler(warning);
});

// The exit code is set rather than process.exit() called, so piped stdout is flushed first.
process.exitCode = await main(process.argv);
