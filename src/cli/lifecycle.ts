// Start-up and shutdown shared by every long-running command: parse the
// config once (exit with every problem listed), and on SIGTERM/SIGINT stop
// what was started in a given order and close the store last, giving up
// after a deadline.
import { ConfigError, loadConfig, type Config } from '../config.ts'
import { createLogger, type Logger } from '../log.ts'

export function configOrExit(overrides: Record<string, string | undefined> = {}): Config {
  try {
    const env = { ...process.env }
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) env[k] = v
    return loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mayfly: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

export function rootLogger(config: Config, svc: string): Logger {
  return createLogger(config.MAYFLY_LOG_LEVEL, { svc })
}

export function requireSecret(config: Config): string {
  if (config.MAYFLY_CLUSTER_SECRET === undefined) {
    process.stderr.write('mayfly: MAYFLY_CLUSTER_SECRET is required (the secret shared by gateways, workers and storage nodes)\n')
    process.exit(2)
  }
  return config.MAYFLY_CLUSTER_SECRET
}

/**
 * What a process stops on SIGTERM or SIGINT. `steps` run one after another in
 * the order given: first what accepts work (the gateway), then what makes
 * work (the replication manager, the worker), then what the work needs (the
 * storage nodes). `last` runs after them: the store, which must be closed
 * cleanly even when a step hangs (PGlite left open is a crash to recover from).
 */
export interface Shutdown {
  steps: (() => Promise<unknown>)[]
  last?: () => Promise<unknown>
}

/** of the deadline, kept for `last` when the steps take too long */
const LAST_RESERVE_MS = 2_000

/**
 * Runs `shutdown` on the first SIGTERM or SIGINT, then exits: 0 when every
 * step finished within the deadline, 1 otherwise. Steps still running when
 * the deadline less LAST_RESERVE_MS has passed are abandoned and `last` runs
 * anyway; the process exits at the deadline whatever is still pending (issue
 * 7, bug 8).
 */
export function closeOnSignal(log: Logger, shutdown: Shutdown, deadlineMs = 10_000): void {
  let closing = false
  const run = async (signal: string) => {
    if (closing) return
    closing = true
    log.info({ signal }, 'shutting down')
    // timers that stay referenced: the process ends by process.exit, never by running out of work mid-way
    setTimeout(() => {
      log.error('shutdown took too long; exiting anyway')
      process.exit(1)
    }, deadlineMs)
    let stepsDone = false
    const steps = (async () => {
      for (const step of shutdown.steps) {
        await step().catch((err: unknown) => log.warn({ err }, 'a step of the shutdown failed'))
      }
      stepsDone = true
    })()
    await Promise.race([steps, sleep(Math.max(0, deadlineMs - LAST_RESERVE_MS))])
    if (!stepsDone) log.error('shutdown: a step is still running at the deadline; closing the store anyway')
    if (shutdown.last !== undefined) await shutdown.last().catch((err: unknown) => log.warn({ err }, 'closing the store failed'))
    process.exit(stepsDone ? 0 : 1)
  }
  process.once('SIGTERM', () => void run('SIGTERM'))
  process.once('SIGINT', () => void run('SIGINT'))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
