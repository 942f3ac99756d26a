// Where the client and operator commands find the cluster secret, the same
// way for all of them: MAYFLY_CLUSTER_SECRET, else --secret-file, else the
// file `mayfly up` keeps it in (<MAYFLY_DATA_DIR>/cluster-secret).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfigOf } from '../config.ts'
import { describeFsError } from './fs-problems.ts'

export interface FoundSecret {
  value: string
  /** where it came from, for messages */
  from: string
}

export const SECRET_HINT = 'set MAYFLY_CLUSTER_SECRET or pass --secret-file (default <MAYFLY_DATA_DIR>/cluster-secret)'

/**
 * The cluster secret, or undefined when there is none and none was named
 * (`mayfly status` then asks without one). A named file that cannot be read,
 * or an empty one, is an error; a bad MAYFLY_CLUSTER_SECRET gets the schema's message.
 */
export async function findClusterSecret(secretFile: string | undefined): Promise<FoundSecret | undefined> {
  const fromEnv = loadConfigOf(['MAYFLY_CLUSTER_SECRET']).MAYFLY_CLUSTER_SECRET
  if (fromEnv !== undefined) return { value: fromEnv, from: 'MAYFLY_CLUSTER_SECRET' }
  const file = secretFile ?? join(loadConfigOf(['MAYFLY_DATA_DIR']).MAYFLY_DATA_DIR, 'cluster-secret')
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (secretFile === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read the cluster secret: ${describeFsError(err, file)}`, { cause: err })
  }
  const value = text.trim()
  if (value === '') throw new Error(`the cluster secret file ${file} is empty`)
  return { value, from: file }
}

/** Like findClusterSecret, for commands that cannot do without it. */
export async function requireClusterSecret(secretFile: string | undefined): Promise<FoundSecret> {
  const found = await findClusterSecret(secretFile)
  if (found === undefined) throw new Error(`no cluster secret: ${SECRET_HINT}`)
  return found
}

export function authorization(secret: FoundSecret | undefined): Record<string, string> {
  return secret === undefined ? {} : { authorization: `Bearer ${secret.value}` }
}

/** What to tell someone the gateway answered 401 for a cluster route. */
export function refusedSecretMessage(secret: FoundSecret | undefined): string {
  return secret === undefined
    ? `the gateway shows the cluster only to holders of the cluster secret: ${SECRET_HINT}`
    : `the gateway refused the cluster secret from ${secret.from}: it is not this cluster's; ${SECRET_HINT}`
}
