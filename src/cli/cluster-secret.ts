// Where the client and operator commands find the cluster secret, the same
// way for all of them: MAYFLY_CLUSTER_SECRET, else --secret-file, else the
// file `mayfly up` keeps it in (<MAYFLY_DATA_DIR>/cluster-secret). The secret
// opens every storage node: one found only by that default goes to a gateway
// on this machine, never to another host unless the user named it.
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { loadConfigOf } from '../config.ts'
import { describeFsError } from './fs-problems.ts'

export interface FoundSecret {
  value: string
  /** where it came from, for messages */
  from: string
  /** the user named it (MAYFLY_CLUSTER_SECRET or --secret-file), rather than the default file being there */
  named: boolean
}

export const SECRET_HINT = 'set MAYFLY_CLUSTER_SECRET or pass --secret-file (default <MAYFLY_DATA_DIR>/cluster-secret)'

/**
 * The cluster secret, or undefined when there is none and none was named
 * (`mayfly status` then asks without one). A named file that cannot be read,
 * or an empty one, is an error; a bad MAYFLY_CLUSTER_SECRET gets the schema's message.
 */
export async function findClusterSecret(secretFile: string | undefined): Promise<FoundSecret | undefined> {
  const fromEnv = loadConfigOf(['MAYFLY_CLUSTER_SECRET']).MAYFLY_CLUSTER_SECRET
  if (fromEnv !== undefined) return { value: fromEnv, from: 'MAYFLY_CLUSTER_SECRET', named: true }
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
  return { value, from: file, named: secretFile !== undefined }
}

/** Whether `secret` may be sent to the gateway at `url`: a named one anywhere, the default file's only to this machine. */
export function maySend(secret: FoundSecret, url: string): boolean {
  return secret.named || isLoopback(url)
}

function isLoopback(url: string): boolean {
  let host: string
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  } catch {
    return false
  }
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return host === '::1'
}

/** What to say when the default file's secret is kept from a gateway elsewhere. */
export function keptBackMessage(secret: FoundSecret, url: string): string {
  return `the cluster secret in ${secret.from} is not sent to ${url}, which is not on this machine: name it with --secret-file or MAYFLY_CLUSTER_SECRET to send it there`
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
