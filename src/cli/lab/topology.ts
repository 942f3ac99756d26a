// The lab's topology (issue 10): every process of the whole HA setup on one
// machine, with its port, data directory and log under the lab directory.
// `mayfly lab up` writes it to DIR/lab.json as it starts each process;
// `status` and `down` read it, so they act on exactly what `up` started.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** A Mayfly process or the gateways' HAProxy, started by the lab. */
export interface LabProcess {
  name: string
  kind: 'gateway' | 'storage-node' | 'worker' | 'replicator' | 'haproxy'
  pid: number
  port?: number
  zone?: string
  log: string
  /** how it was started, so that `mayfly lab start NAME` starts it again the same way */
  command: string
  args: string[]
  env: Record<string, string>
}

/** The infrastructure tiers, each started by its script (scripts/*-ha.sh) in a directory of its own. */
export interface LabTier {
  name: 'redis' | 'postgres' | 'rabbitmq'
  script: string
  dir: string
}

export interface Lab {
  dir: string
  /** where users (and the storage nodes) reach the gateways */
  url: string
  startedAt: string
  /** seconds `up` took */
  startSeconds?: number
  /** the MAYFLY_* environment every Mayfly process of the lab got */
  env: Record<string, string>
  tiers: LabTier[]
  processes: LabProcess[]
}

export const labFile = (dir: string) => join(dir, 'lab.json')

export async function readLab(dir: string): Promise<Lab | null> {
  try {
    return JSON.parse(await readFile(labFile(dir), 'utf8')) as Lab
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

export async function writeLab(lab: Lab): Promise<void> {
  // it holds the cluster secret
  await writeFile(labFile(lab.dir), `${JSON.stringify(lab, null, 2)}\n`, { mode: 0o600 })
}

/** true while `pid` runs and is the process the lab started (its environment names the lab directory) */
export async function isLabProcess(pid: number, dir: string): Promise<boolean> {
  const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => null)
  if (environ === null) return false
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false
  return environ.split('\0').includes(`MAYFLY_LAB_DIR=${dir}`)
}
