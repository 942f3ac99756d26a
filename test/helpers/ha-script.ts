// What the tests' HA topologies share: scripts/redis-ha.sh and
// scripts/patroni-ha.sh start one in a fresh directory and describe it in
// DIR/topology and DIR/mayfly.env (NAME=value lines).
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** NAME=value lines */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

/** `script start` in a new directory (stopped and removed again if it fails); the directory and its topology. */
export async function startScriptTopology(script: string, prefix: string, timeoutMs: number): Promise<{ dir: string; topology: Record<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  try {
    await run('sh', [script, 'start', dir], { timeout: timeoutMs })
  } catch (err) {
    await run('sh', [script, 'stop', dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  return { dir, topology: parseEnvFile(await readFile(join(dir, 'topology'), 'utf8')) }
}
