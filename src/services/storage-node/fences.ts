// Node-side fencing. The replication manager sends the token of its lease
// with every delete and copy it asks of a node (X-Mayfly-Fence:
// <lease name>:<token>). A node remembers the highest token it has seen for
// each lease name, in <data dir>/fences.json, and refuses a request carrying a
// lower one: a manager that was paused past its lease and resumes cannot
// delete or overwrite anything once its successor has spoken to the node.
// Requests without the header (gateways, workers) are not fenced.
import { open, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface Fences {
  /** False when a higher token of this lease was seen; otherwise records the token (durably when it is new) and true. */
  admit(name: string, token: number): Promise<boolean>
}

const FILE = 'fences.json'

export async function openFences(dataDir: string): Promise<Fences> {
  const path = join(dataDir, FILE)
  let highest: Record<string, number> = {}
  try {
    highest = JSON.parse(await readFile(path, 'utf8')) as Record<string, number>
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // one write at a time, so a lower token never overwrites a higher one on disk
  let writing: Promise<unknown> = Promise.resolve()

  async function persist(): Promise<void> {
    const tmp = `${path}.tmp`
    await writeFile(tmp, JSON.stringify(highest))
    const fh = await open(tmp, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
    const dir = await open(dataDir, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }

  return {
    async admit(name, token) {
      const seen = highest[name] ?? 0
      if (token < seen) return false
      if (token === seen) return true
      highest = { ...highest, [name]: token }
      const done = writing.then(persist)
      writing = done.catch(() => undefined)
      await done
      return true
    },
  }
}
