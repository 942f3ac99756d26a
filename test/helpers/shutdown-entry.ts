// A process that shuts down with the CLI's closeOnSignal (src/cli/lifecycle.ts),
// for tests of its order and its deadline: an embedded PGlite store under
// argv[2] closed `last`, and steps that log to argv[3] as they run. With
// argv[4] = 'hang' the second step never ends. argv[5]: the deadline (ms).
import { appendFileSync } from 'node:fs'
import { createEmbeddedMetadataStore } from '../../src/adapters/embedded/metadata.ts'
import { closeOnSignal } from '../../src/cli/lifecycle.ts'
import { createLogger } from '../../src/log.ts'

const [dataDir, journal, mode, deadline] = process.argv.slice(2) as [string, string, string, string]
const log = createLogger('info', { svc: 'shutdown-entry' })
const store = await createEmbeddedMetadataStore({ dataDir, log })
const note = (what: string) => appendFileSync(journal, `${what}\n`)
closeOnSignal(
  log,
  {
    steps: [
      async () => note('first'),
      () => (mode === 'hang' ? new Promise<void>(() => note('second hangs')) : Promise.resolve(note('second'))),
      async () => note('third'),
    ],
    last: async () => {
      await store.close()
      note('store closed')
    },
  },
  Number(deadline),
)
process.stdout.write('ready\n')
