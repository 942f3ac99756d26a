// `mayfly download ID`: a limited link counts every GET, so everything that
// can fail on this side is checked before the bytes are asked for (the link
// is alive and the password right, by HEAD, which counts nothing; the target
// is free, the folder writable and roomy enough), the bytes go to a temp file
// beside the target and only a whole, checked download is moved into place.
import { createHash, randomBytes } from 'node:crypto'
import { link, lstat, open, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { request } from 'undici'
import { cleanFileName } from '../core/mime.ts'
import { formatBytes } from '../core/bytes.ts'
import { failure, progressBar, type ClientOptions } from './client.ts'
import { describeFsError } from './fs-problems.ts'

export interface DownloadOptions extends ClientOptions {
  output?: string
  password?: string
}

export async function downloadCommand(id: string, options: DownloadOptions): Promise<void> {
  const url = `${options.url}/api/download/${encodeURIComponent(id)}`
  const headers: Record<string, string> = {}
  // in UTF-8, whatever the password's letters (a header string goes out byte per character)
  if (options.password !== undefined) headers['x-mayfly-password'] = Buffer.from(options.password, 'utf8').toString('latin1')

  const head = await request(url, { method: 'HEAD', headers })
  await head.body.dump()
  if (head.statusCode !== 200) throw new Error(await refusal(options, id, head.statusCode, String(head.headers['retry-after'] ?? '')))
  const size = Number(head.headers['content-length'] ?? 0)
  const target = await targetPath(options.output, nameFrom(String(head.headers['content-disposition'] ?? '')) ?? id)
  const temp = await openBeside(target, size)

  const progress = progressBar(size, 'downloading')
  let interrupted = false
  const onInterrupt = () => {
    interrupted = true
    progress.stop()
    // the bytes so far are of no use: leave nothing behind
    void rm(temp.path, { force: true }).finally(() => process.exit(130))
  }
  process.once('SIGINT', onInterrupt)
  try {
    const res = await request(url, { headers })
    if (res.statusCode !== 200) await failure(res)
    const hash = createHash('sha256')
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        hash.update(chunk)
        callback(null, chunk)
      },
    })
    try {
      // the stream closes the handle at its end, after an fsync (flush)
      await pipeline(res.body, hashing, progress.counter, temp.handle.createWriteStream({ flush: true }))
    } catch (err) {
      // an fs error names its system call; anything else is the connection
      const why = (err as NodeJS.ErrnoException).syscall !== undefined ? describeFsError(err, temp.path) : (err as Error).message
      throw new Error(`the download broke off (${why}): nothing was saved, and a link with a download limit has counted it`, { cause: err })
    }
    const expected = /^"?([0-9a-f]{64})"?$/.exec(String(res.headers.etag ?? ''))?.[1]
    const got = hash.digest('hex')
    if (expected !== undefined && got !== expected) {
      throw new Error(`the bytes received do not match the file's sha256 (${expected}): nothing was saved`)
    }
    await moveIntoPlace(temp.path, target)
  } catch (err) {
    await temp.handle.close().catch(() => {})
    if (!interrupted && !(err instanceof KeptDownload)) await rm(temp.path, { force: true })
    throw err
  } finally {
    process.off('SIGINT', onInterrupt)
    progress.stop()
  }
  process.stderr.write(`saved ${target}\n`)
}

/** What a refused HEAD means (a HEAD answer has no body to read the gateway's message from). */
async function refusal(options: DownloadOptions, id: string, status: number, retryAfter: string): Promise<string> {
  if (status === 404) return `no file with the id ${id}`
  if (status === 429) {
    const when = /^\d+$/.test(retryAfter) ? `in ${retryAfter} s` : 'later'
    return `too many attempts from this address (wrong passwords or downloads): try again ${when}`
  }
  if (status === 401) {
    return options.password === undefined ? 'this file is protected by a password: give it with --password' : 'wrong password'
  }
  if (status === 410) {
    // the file's info (which counts nothing) says why
    const info = await request(`${options.url}/api/files/${encodeURIComponent(id)}`).catch(() => null)
    const body = info?.statusCode === 200 ? ((await info.body.json().catch(() => ({}))) as { status?: string }) : {}
    if (info !== null && info.statusCode !== 200) await info.body.dump()
    const why = { expired: 'it has expired', download_limit_reached: 'it has reached its download limit', deleted: 'it was deleted' }
    return `this link is gone: ${why[body.status as keyof typeof why] ?? 'it expired, was used up or was deleted'}`
  }
  return `the gateway answered ${status} to HEAD ${options.url}/api/download/${id}`
}

/** The file's name from Content-Disposition (RFC 6266: filename* first), made safe to save under. */
function nameFrom(disposition: string): string | undefined {
  const extended = /filename\*=UTF-8''([^;]+)/i.exec(disposition)?.[1]
  let name: string | undefined
  if (extended !== undefined) {
    try {
      name = decodeURIComponent(extended)
    } catch {
      name = undefined
    }
  }
  name ??= /filename="([^"]*)"/i.exec(disposition)?.[1]
  return name === undefined || name.trim() === '' ? undefined : cleanFileName(name)
}

/** -o FILE, -o FOLDER (the file's name inside it), or the file's name here; refused when it exists. */
async function targetPath(output: string | undefined, name: string): Promise<string> {
  let target = output ?? name
  if (output !== undefined) {
    const existing = await stat(output).catch(() => null)
    if (existing?.isDirectory() === true) target = join(output, name)
  }
  if ((await lstat(target).catch(() => null)) !== null) {
    throw new Error(`${target} already exists: nothing was downloaded and nothing counted; remove it or choose another name with -o`)
  }
  return target
}

/** A new temp file beside `target` (so the final move is a rename in one folder), after checking the folder has room. */
async function openBeside(target: string, size: number): Promise<{ path: string; handle: FileHandle }> {
  const dir = dirname(target)
  const path = join(dir, `.${basename(target).slice(0, 120)}.${randomBytes(4).toString('hex')}.part`)
  let handle: FileHandle
  try {
    handle = await open(path, 'wx', 0o644)
  } catch (err) {
    throw new Error(`cannot save into ${dir}: ${describeFsError(err, dir)}; nothing was downloaded`, { cause: err })
  }
  const room = await statfs(dir).then((s) => s.bavail * s.bsize).catch(() => Infinity)
  if (room < size) {
    await handle.close()
    await rm(path, { force: true })
    throw new Error(`${dir} has ${formatBytes(room)} free, the file needs ${formatBytes(size)}: nothing was downloaded`)
  }
  return { path, handle }
}

/** A download that is whole but could not take its name: its bytes stay where they are. */
class KeptDownload extends Error {}

/** Moves the temp file to `target` without replacing a file that appeared meanwhile. */
async function moveIntoPlace(temp: string, target: string): Promise<void> {
  try {
    // link fails if target exists, where rename would silently replace it
    await link(temp, target)
    await rm(temp, { force: true })
    return
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KeptDownload(`${target} appeared while downloading; the download is kept as ${temp}`)
    }
    // a file system without hard links: the usual rename, after one more look
  }
  if ((await lstat(target).catch(() => null)) !== null) {
    throw new KeptDownload(`${target} appeared while downloading; the download is kept as ${temp}`)
  }
  await rename(temp, target)
}
