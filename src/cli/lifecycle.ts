// Start-up and shutdown shared by every long-running command: parse the
// config once (exit with every problem listed), and on SIGTERM/SIGINT close
// what was opened, newest first, giving up after a deadline.
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

/** Runs `closers` in reverse order on the first SIGTERM or SIGINT, then exits. */
export function closeOnSignal(log: Logger, closers: (() => Promise<unknown>)[], deadlineMs = 10_000): void {
  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    log.info({ signal }, 'shutting down')
    const deadline = setTimeout(() => {
      log.error('shutdown took too long; exiting anyway')
      process.exit(1)
    }, deadlineMs)
    deadline.unref()
    void (async () => {
      for (const close of [...closers].reverse()) {
        await close().catch((err: unknown) => log.warn({ err }, 'close failed during shutdown'))
      }
      process.exit(0)
    })()
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
}
