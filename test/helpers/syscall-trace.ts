// A storage node's file system and socket calls as the kernel saw them, by
// strace, for tests that prove an order of durable steps (DESIGN §4, §5.1):
// straceWrapper() runs a storage node or a gateway under strace (the
// `wrapper` of storage-node-process.ts and mayfly-process.ts), parseTrace()
// reads what it wrote, blobCommit() finds the calls that wrote, synced,
// renamed and acknowledged one blob on a node, answersHeard() the storage
// nodes' answers a gateway read.
//
// Order, not clocks: every call is a position in the trace. A thread stays
// stopped at the end of each traced call until strace has written it down,
// so a call that started only because another one had returned (the node's
// next step, on whichever thread) is always written after that one's end.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

/** what a storage node under trace reports: opens and closes, writes (files and sockets), syncs, renames */
export const NODE_CALLS = 'openat,close,write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,fsync,fdatasync,rename,renameat,renameat2'
/** what a gateway under trace reports: what it reads and sends on its sockets */
export const GATEWAY_CALLS = 'read,readv,recvfrom,recvmsg,write,writev,sendto,sendmsg'

/**
 * The command that runs a process under strace into `outFile`. `-D` makes
 * strace a detached grandchild, so the process spawned is the node itself
 * (its pid, its signals); `--seccomp-bpf` stops the node only at the calls
 * traced. Throws when strace is missing: the tests that need it fail, they
 * are never skipped.
 */
export function straceWrapper(outFile: string, calls = NODE_CALLS): string[] {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' })
  } catch (err) {
    throw new Error('strace is not installed: the durability test proves the fsync order from the storage node\'s system calls; install it with `sh scripts/install-system-deps.sh` (Debian package strace)', { cause: err })
  }
  // -ttt: wall-clock seconds.microseconds of each call's start; -T: its duration;
  // -s: enough of a string to see an HTTP answer's status line and the start of its body
  return ['strace', '-D', '-f', '--seccomp-bpf', '-ttt', '-T', '-s', '512', '-o', outFile, '-e', `trace=${calls}`, '--']
}

/** One system call: where it starts and ends in the trace, when it started and how long it took. */
export interface Syscall {
  tid: number
  name: string
  args: string
  /** the return value as strace prints it ("0", "24", "-1 EINVAL (Invalid argument)") */
  result: string
  /** seconds since the epoch (wall clock) */
  startedAt: number
  endedAt: number
  /** index of the trace line that starts it, and of the one that ends it (the same unless another call came between) */
  startLine: number
  endLine: number
}

const COMPLETE = /^(\d+)\s+(\d+\.\d+) (\w+)\((.*)\) += (.*?) <(\d+\.\d+)>$/
const UNFINISHED = /^(\d+)\s+(\d+\.\d+) (\w+)\((.*) <unfinished \.\.\.>$/
const RESUMED = /^(\d+)\s+(\d+\.\d+) <\.\.\. (\w+) resumed>(.*)\) += (.*?) <(\d+\.\d+)>$/

/** The calls of a trace written with -f -ttt -T, in the order they started. */
export function parseTrace(text: string): Syscall[] {
  const calls: Syscall[] = []
  const open = new Map<number, { name: string; args: string; startedAt: number; startLine: number }>()
  const lines = text.split('\n')
  lines.forEach((line, index) => {
    let m = COMPLETE.exec(line)
    if (m !== null) {
      const startedAt = Number(m[2])
      calls.push({ tid: Number(m[1]), name: m[3]!, args: m[4]!, result: m[5]!, startedAt, endedAt: startedAt + Number(m[6]), startLine: index, endLine: index })
      return
    }
    m = UNFINISHED.exec(line)
    if (m !== null) {
      open.set(Number(m[1]), { name: m[3]!, args: m[4]!, startedAt: Number(m[2]), startLine: index })
      return
    }
    m = RESUMED.exec(line)
    if (m !== null) {
      const begun = open.get(Number(m[1]))
      if (begun === undefined || begun.name !== m[3]) return // began before the trace did
      open.delete(Number(m[1]))
      calls.push({ tid: Number(m[1]), ...begun, args: begun.args + m[4]!, result: m[5]!, endedAt: begun.startedAt + Number(m[6]), endLine: index })
    }
    // anything else: signals, exits, a last line cut short
  })
  return calls.sort((a, b) => a.startLine - b.startLine)
}

/** The calls that stored one blob on one node and acknowledged it. */
export interface BlobCommit {
  /** openat of the temp file */
  open: Syscall
  /** the last write of the blob's bytes (or header or block table) into it */
  lastWrite: Syscall
  /** fsync of the temp file */
  fileSync: Syscall
  /** close of the temp file */
  close: Syscall
  /** rename of the temp file to the blob's path */
  rename: Syscall
  /** fsync of the directory the blob's path is in */
  dirSync: Syscall
  /** the write of the HTTP 201 that names the blob */
  ack: Syscall
}

const FILE_WRITES = new Set(['write', 'writev', 'pwrite64', 'pwritev', 'pwritev2'])
const RENAMES = new Set(['rename', 'renameat', 'renameat2'])
const SENDS = new Set(['write', 'writev', 'sendto', 'sendmsg'])
const READS = new Set(['read', 'readv', 'recvfrom', 'recvmsg'])

const firstFd = (call: Syscall) => Number(/^(\d+)/.exec(call.args)?.[1] ?? -1)
const succeeded = (call: Syscall) => !call.result.startsWith('-1')

/**
 * The calls that stored blob `key` on the node whose data directory is
 * `dataDir` (blob-files.ts: tmp/<key>.<rand>.part, renamed to
 * blobs/<key[0..2]>/<key>), or null when the trace holds no 201 for it yet.
 * Each step is found by what it is, not by where it is: the order is for the
 * caller to check. Throws naming the step missing when the 201 is there but
 * a step is not.
 */
export function blobCommit(calls: Syscall[], dataDir: string, key: string): BlobCommit | null {
  const ack = sentCreated(calls, key)
  if (ack === undefined) return null
  const missing = (step: string): never => {
    throw new Error(`the trace of ${dataDir} has the 201 for ${key} but no ${step}`)
  }
  const before = (call: Syscall) => calls.filter((c) => c.endLine < call.startLine)
  const tmpPrefix = `"${join(dataDir, 'tmp', key)}.`
  const open = calls.find((c) => c.name === 'openat' && c.args.includes(tmpPrefix) && c.args.includes('O_CREAT') && succeeded(c)) ?? missing('open of its temp file')
  const tmpPath = /"([^"]+\.part)"/.exec(open.args)?.[1] ?? missing('temp file path')
  // the temp file's descriptor is its number from the open to its close (a number is reused only after that)
  const fd = Number(open.result)
  const close = calls.find((c) => c.startLine > open.endLine && c.name === 'close' && firstFd(c) === fd) ?? missing('close of its temp file')
  const onFile = calls.filter((c) => c.startLine > open.endLine && c.endLine < close.startLine && firstFd(c) === fd)
  const lastWrite = onFile.filter((c) => FILE_WRITES.has(c.name)).at(-1) ?? missing('write into its temp file')
  const fileSync = onFile.filter((c) => c.name === 'fsync' && c.result === '0').at(-1) ?? missing('fsync of its temp file')
  const finalPath = join(dataDir, 'blobs', key.slice(0, 2), key)
  const rename = calls.find((c) => RENAMES.has(c.name) && c.args.includes(`"${tmpPath}"`) && c.args.includes(`"${finalPath}"`) && c.result === '0') ?? missing('rename into place')
  // the last fsync of the blob's directory before the 201
  const dirPath = `"${join(dataDir, 'blobs', key.slice(0, 2))}",`
  const dirSyncs = before(ack).flatMap((dirOpen) => {
    if (dirOpen.name !== 'openat' || !dirOpen.args.includes(dirPath) || !succeeded(dirOpen)) return []
    const dirFd = Number(dirOpen.result)
    const dirClose = calls.find((c) => c.startLine > dirOpen.endLine && c.name === 'close' && firstFd(c) === dirFd)
    return calls.filter((c) => c.startLine > dirOpen.endLine && (dirClose === undefined || c.endLine < dirClose.startLine) && c.name === 'fsync' && firstFd(c) === dirFd && c.result === '0')
  })
  const dirSync = dirSyncs.sort((a, b) => a.startLine - b.startLine).at(-1) ?? missing('fsync of its directory before it')
  return { open, lastWrite, fileSync, close, rename, dirSync, ack }
}

/** A call that sent an HTTP 201 whose text holds `marker` (a blob key, a file id, a sha256), or undefined. */
export function sentCreated(calls: Syscall[], marker: string): Syscall | undefined {
  return calls.find((c) => SENDS.has(c.name) && c.args.includes('HTTP/1.1 201 ') && c.args.includes(marker))
}

/** The key of the blob a storage node's 201 (sent or read) names together with `sha256`, or null. */
export function keyOfCreated(calls: Syscall[], sha256: string): string | null {
  for (const c of calls) {
    if (!(SENDS.has(c.name) || READS.has(c.name)) || !c.args.includes('HTTP/1.1 201 ') || !c.args.includes(sha256)) continue
    // strace shows the body's quotes escaped: {\"key\":\"…\"
    const key = /\\"key\\":\\"([A-Za-z0-9_-]+)\\"/.exec(c.args)?.[1]
    if (key !== undefined) return key
  }
  return null
}

/** The reads of a storage node's 201 for blob `key` that ended before `call` began, one per connection (descriptor). */
export function answersHeard(calls: Syscall[], key: string, call: Syscall): Syscall[] {
  const reads = calls.filter((c) => READS.has(c.name) && c.endLine < call.startLine && c.args.includes('HTTP/1.1 201 ') && c.args.includes(key))
  return [...new Map(reads.map((c) => [firstFd(c), c])).values()]
}
