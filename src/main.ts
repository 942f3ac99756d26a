// The `mayfly` command line (DESIGN §2).
import './threadpool.ts'
import { Command } from 'commander'
import { statusCommand, uploadCommand } from './cli/client.ts'
import { downloadCommand } from './cli/download.ts'
import { gatewayCommand, replicatorCommand, storageNodeCommand, workerCommand } from './cli/services.ts'
import { drainCommand, rebalanceCommand, undrainCommand } from './cli/operator.ts'
import { orphansDeleteCommand, orphansHoldCommand, orphansKeepCommand, orphansListCommand } from './cli/orphans.ts'
import { migrateCommand } from './cli/migrate.ts'
import { upCommand } from './cli/up.ts'
import { labDownCommand, labStartCommand, labStatusCommand, labUpCommand } from './cli/lab/lab.ts'
import { ConfigError, loadConfigOf } from './config.ts'

const SECRET_FILE_HELP = 'the cluster secret, when MAYFLY_CLUSTER_SECRET is not set (default: <MAYFLY_DATA_DIR>/cluster-secret)'
const URL_HELP = 'the gateway (default: MAYFLY_URL, else http://localhost:5000)'

/**
 * A client command's action with its gateway url: --url, else MAYFLY_URL. The
 * environment is read only when the flag is absent, and only for that value,
 * so a bad MAYFLY_* variable the command never uses does not stop it.
 */
function withUrl<A extends unknown[], O extends { url?: string }>(action: (...args: [...A, O & { url: string }]) => Promise<void>) {
  // commander passes the arguments, the options, then the command itself
  return (...args: unknown[]) => {
    args.pop()
    const options = args.pop() as O
    const url = options.url ?? loadConfigOf(['MAYFLY_URL']).MAYFLY_URL
    return action(...(args as A), { ...options, url: url.replace(/\/+$/, '') })
  }
}

const program = new Command('mayfly')
  .description('Self-hosted, self-healing store for expiring file and image shares')
  .showHelpAfterError()

program
  .command('up')
  .description('start a local cluster: gateway, three storage nodes (zones a, b, c), a worker and the replication manager')
  .option('--data-dir <dir>', 'where everything is kept (MAYFLY_DATA_DIR)')
  .option('--port <port>', 'gateway port (MAYFLY_PORT)')
  .option('--node-ports <ports>', 'storage node ports, comma-separated', '8001,8002,8003')
  .action(upCommand)

program.command('gateway').description('run a gateway (public API and web UI)').action(gatewayCommand)
program.command('storage-node').description('run a storage node').action(storageNodeCommand)
program.command('worker').description('run a worker (image variants, removal of dead files)').action(workerCommand)
program
  .command('replicator')
  .description('run a replication manager (one is active, others stand by): repair, reconciliation, drain, rebalance')
  .action(replicatorCommand)

program
  .command('upload')
  .description('upload a file and print its link')
  .argument('<file>')
  .option('--max-downloads <n>', 'the link dies after this many downloads')
  .option('--expires-in <duration>', 'e.g. 90s, 15m, 1h, 7d')
  .option('--password <password>', 'protect the link with a password')
  .option('--url <url>', URL_HELP)
  .action(withUrl(uploadCommand))

program
  .command('download')
  .description('download a file by its id')
  .argument('<id>', 'the file id (an older id that starts with - goes after --: mayfly download -- -AbC…)')
  .option('-o, --output <file>', 'where to save it (default: its name)')
  .option('--password <password>', 'the link password')
  .option('--url <url>', URL_HELP)
  .action(withUrl(downloadCommand))

program
  .command('status')
  .description('the cluster as a table')
  .option('--json', 'print the raw JSON')
  .option('--url <url>', URL_HELP)
  .option('--secret-file <file>', SECRET_FILE_HELP)
  .action(withUrl(statusCommand))

const operator = (cmd: Command) =>
  cmd
    .option('--url <url>', URL_HELP)
    .option('--secret-file <file>', SECRET_FILE_HELP)
    .option('--no-wait', 'return at once instead of following the progress')

const node = program.command('node').description('operate on one storage node')
operator(node.command('drain').description('move every copy off a node so that it can be retired').argument('<id>')).action(withUrl(drainCommand))
operator(node.command('undrain').description('let a draining node take new blobs again').argument('<id>')).action(withUrl(undrainCommand))
operator(program.command('rebalance').description('move copies between nodes toward even use (never below the factor)')).action(
  withUrl(rebalanceCommand),
)
const orphans = program
  .command('orphans')
  .description('copies of blobs the metadata does not know (after a restore of it), held instead of deleted: list them, delete or keep them')
const orphanOptions = (cmd: Command) => cmd.option('--url <url>', URL_HELP).option('--secret-file <file>', SECRET_FILE_HELP)
orphanOptions(orphans.command('list').description('the held, kept and released copies, and why they are held'))
  .option('--limit <n>', 'show at most this many copies', '100')
  .option('--json', 'print the raw JSON')
  .action(withUrl(orphansListCommand))
orphanOptions(orphans.command('delete').description('delete the held copies, or the held and kept ones of the given blob keys; without keys, lift the hold'))
  .argument('[keys...]')
  .option('--no-wait', 'return at once instead of following the deletion')
  .action(withUrl(orphansDeleteCommand))
orphanOptions(orphans.command('keep').description('keep the held copies (or those of the given keys) for good; without keys, lift the hold'))
  .argument('[keys...]')
  .action(withUrl(orphansKeepCommand))
orphanOptions(orphans.command('hold').description('hold every copy of an unknown blob from now on (before starting Mayfly on metadata restored by other means)')).action(
  withUrl(orphansHoldCommand),
)
program
  .command('migrate')
  .description("copy an embedded cluster's metadata into PostgreSQL (idempotent); then run `mayfly up` with MAYFLY_DATABASE_URL")
  .requiredOption('--to <url>', 'the PostgreSQL database (one url, or libpq\'s multi-host form)')
  .option('--data-dir <dir>', 'the data dir of `mayfly up` (MAYFLY_DATA_DIR)')
  .action(migrateCommand)

const lab = program
  .command('lab')
  .description('the whole HA topology on this machine, from Debian packages: Redis + Sentinel, Patroni, RabbitMQ, 2 gateways behind HAProxy, 3 nodes, 2 workers, 2 managers')
const labDirOption = (c: Command) => c.option('--dir <dir>', 'where the lab keeps its data, logs and lab.json', 'lab')
labDirOption(lab.command('up').description('start it all (about 30 s)'))
  .option('--port <port>', 'HAProxy in front of the gateways; the gateways take the next two ports', '5000')
  .action(labUpCommand)
labDirOption(lab.command('status').description('every process of the lab, alive or not, with its role')).option('--json', 'as JSON').action(labStatusCommand)
labDirOption(lab.command('start').description('start one killed process of the lab again (a name from `mayfly lab status`, or redis-N, pgN, rabbit-N)').argument('<name>')).action(labStartCommand)
labDirOption(lab.command('down').description('stop only what `mayfly lab up` started')).action(labDownCommand)

// A command whose promise can no longer settle (nothing left to wake it) would
// otherwise end the process with 0 as if it had succeeded.
let settled = false
process.once('beforeExit', () => {
  if (settled) return
  process.stderr.write('mayfly: the command stopped before it finished (a bug: please report it)\n')
  process.exitCode = 1
})

program.parseAsync().then(() => (settled = true), (err: unknown) => {
  settled = true
  process.stderr.write(`mayfly: ${describe(err)}\n`)
  // 2 as the services exit on a bad configuration
  process.exit(err instanceof ConfigError ? 2 : 1)
})

/** What went wrong, in words: a gateway that cannot be reached says where to point the CLI. */
function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return `cannot reach the gateway (${message}): is Mayfly running there? --url or MAYFLY_URL say where it is`
  }
  return message
}
