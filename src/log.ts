// The root pino logger. JSON to stdout; children carry context ({ svc }).
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-mayfly-password"]',
        'req.headers["x-delete-token"]',
        'secret',
        'password',
        'deleteToken',
      ],
      censor: '[redacted]',
    },
  })
}
