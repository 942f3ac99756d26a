// The file system calls of a blob read or write, on raw descriptors.
//
// Each call that may wait for the disk goes to the libuv pool, and on this
// kind of machine (32 pool threads, 2 cores) one pool round trip costs
// 25-35 µs of CPU in thread wake-ups alone, more than the call itself: a
// 4 KiB read through FileHandle (open, read, fstat, close) took about 100 µs
// of CPU, the same calls made directly about 7 µs. So a blob read or write
// makes as few pool calls as it can, on plain descriptors (a FileHandle adds
// its own promise and close bookkeeping). close() is made synchronously: it
// never waits for the disk here (the file was opened read-only, or already
// fsynced), so a pool round trip would cost more than the call.
import { closeSync, fdatasync, fstat, fsync, open, read, writev, type Stats } from 'node:fs'
import { promisify } from 'node:util'

export const openFd: (path: string, flags: string) => Promise<number> = promisify(open)
export const fstatFd: (fd: number) => Promise<Stats> = promisify(fstat)
export const fsyncFd: (fd: number) => Promise<void> = promisify(fsync)
export const fdatasyncFd: (fd: number) => Promise<void> = promisify(fdatasync)

/** `length` bytes at `position` into `buffer`; fewer only at the end of the file. */
export function readFd(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, 0, length, position, (err, bytesRead) => (err === null ? resolve(bytesRead) : reject(err)))
  })
}

/** One writev at `position`; may write less than asked. */
export function writevFd(fd: number, buffers: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    writev(fd, buffers, position, (err, bytesWritten) => (err === null ? resolve(bytesWritten) : reject(err)))
  })
}

/** Closes without a pool round trip (see above); throws what close(2) reports. */
export function closeFd(fd: number): void {
  closeSync(fd)
}

/** On a path that already failed: an error of the close itself is of no interest. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd)
  } catch {
    // the first error is the one to report
  }
}

/**
 * A file opened for reading. close() waits for the calls in flight: a
 * descriptor's number is reused as soon as it is closed, so a read still
 * queued in the pool would read some other file.
 */
export interface ReadOnlyFile {
  /** bytes read into `buffer` at 0: `length`, fewer only at the end of the file */
  read(buffer: Buffer, length: number, position: number): Promise<number>
  /** fstat, made once */
  stat(): Promise<Stats>
  /** idempotent; calls after it reject */
  close(): Promise<void>
}

export async function openReadOnly(path: string): Promise<ReadOnlyFile> {
  const fd = await openFd(path, 'r')
  let inFlight = 0
  let drained: (() => void) | null = null
  let closing: Promise<void> | null = null
  let stats: Promise<Stats> | null = null
  const track = <T>(call: () => Promise<T>): Promise<T> => {
    if (closing !== null) return Promise.reject(new Error('the blob file is closed'))
    inFlight++
    return call().finally(() => {
      if (--inFlight === 0) drained?.()
    })
  }
  return {
    read: (buffer, length, position) => track(() => readFd(fd, buffer, length, position)),
    stat: () => (stats ??= track(() => fstatFd(fd))),
    close: () =>
      (closing ??= (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve))).then(() => closeFd(fd))),
  }
}
