// A storage node as its own process, for tests (see storage-node-process.ts):
// configured by MAYFLY_* variables, closed gracefully on SIGTERM; the same
// file system thread pool as `mayfly storage-node`.
import '../../src/threadpool.ts'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import { runStorageNode } from '../../src/services/storage-node/index.ts'

const config = loadConfig()
const log = createLogger(config.MAYFLY_LOG_LEVEL)
const node = await runStorageNode(config, log)
let stopping = false
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'close failed')
        process.exit(1)
      },
    )
  })
}
