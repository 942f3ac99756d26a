// Issue 8, locks: a Redis lease is only a lease. Replication is asynchronous,
// so a failover can lose a lease and hand it to a second holder while the
// first still believes it holds it; a holder paused past its lease wakes up
// believing the same. What a lease guards must therefore check its fencing
// token where the write lands: here the storage node, which refuses a token
// lower than the highest it has seen for the lease (the sweeper's deletes
// carry it). Real processes: the Redis topology of scripts/redis-ha.sh and
// a storage node; two contenders with connections of their own.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createRedisLock } from '../../src/adapters/redis/lock.ts'
import { createBlobClient } from '../../src/adapters/storage-node/client.ts'
import { LeaseLost } from '../../src/core/errors.ts'
import { newId } from '../../src/core/ids.ts'
import { createLogger } from '../../src/log.ts'
import type { BlobClient, Lease, Lock } from '../../src/ports.ts'
import { startRedisHa, type RedisHa } from '../helpers/redis-ha.ts'
import { startStorageNodeProcess, type StorageNodeProcess } from '../helpers/storage-node-process.ts'
import { waitFor } from '../helpers/wait.ts'

const silent = createLogger('silent')

describe('locks over Redis Sentinel: a second holder, and the first one\'s late writes', { timeout: 120_000 }, () => {
  let ha: RedisHa
  let node: StorageNodeProcess
  let client: BlobClient
  const secret = randomBytes(24).toString('base64url')
  const namespace = `t-${randomUUID().slice(0, 8)}`
  const cleanups: (() => Promise<unknown>)[] = []

  before(async () => {
    ha = await startRedisHa()
    cleanups.push(() => ha.stop())
    node = await startStorageNodeProcess({ zone: 'a', secret })
    cleanups.push(() => node.stop())
    client = createBlobClient({ secret, timeoutMs: 3000 })
    cleanups.push(() => client.close())
  })
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
  })

  const contender = (): Lock => {
    const sentinels = ha.sentinelPorts.map((port) => ({ host: '127.0.0.1', port }))
    const lock = createRedisLock({ sentinels, masterName: ha.masterName, namespace, log: silent, reconnectDelayMs: 100 })
    cleanups.push(() => lock.close())
    return lock
  }
  const blob = async () => {
    const key = newId()
    await client.put(node.url, key, randomBytes(1024))
    return key
  }
  /** acquire, retried while the backend fails over or the lease is held */
  const take = (lock: Lock, name: string, ttlMs: number, timeoutMs = 15_000) =>
    waitFor(`the lease ${name}`, async () => (await lock.acquire(name, ttlMs).catch(() => null)) ?? undefined, timeoutMs, 50) as Promise<Lease>

  test('a holder that dies: its lease lapses and the other contender takes it, with a larger token', async () => {
    const [a, b] = [contender(), contender()]
    const first = await take(a, 'sweeper-1', 1500)
    assert.equal(await b.acquire('sweeper-1', 1500), null, 'held: the other waits')
    const diedAt = Date.now()
    await a.close() // gone without releasing
    const second = await take(b, 'sweeper-1', 1500, 5000)
    const waited = Date.now() - diedAt
    assert.ok(waited >= 1000 && waited < 3000, `taken once the lease lapsed: ${waited} ms`)
    assert.ok(second.token > first.token)
    await second.release()
  })

  test('a holder paused past its lease wakes to find it lost, and its late delete is refused where it lands', async () => {
    const [a, b] = [contender(), contender()]
    const name = `${namespace}:sweeper-2`
    const [keyA, keyB] = [await blob(), await blob()]
    const paused = await take(a, name, 1000)
    await sleep(1500) // paused: no renewal
    const next = await take(b, name, 10_000)
    await client.delete(node.url, keyB, { fence: { name, token: next.token } })
    // the paused holder wakes
    assert.equal(await paused.renew(), false, 'its lease is gone')
    await assert.rejects(client.delete(node.url, keyA, { fence: { name, token: paused.token } }), LeaseLost, 'its late delete is fenced')
    assert.equal((await client.head(node.url, keyA)).key, keyA, 'and the blob it meant to delete is still there')
    await next.release()
  })

  test('a lease lost in a failover goes to a second holder; the first one\'s late delete is refused', async () => {
    const [a, b] = [contender(), contender()]
    const name = `${namespace}:sweeper-3`
    const [keyA, keyB] = [await blob(), await blob()]
    const old = await ha.master()
    // the lease taken while no replica is linked: it exists on the master only. The replicas are
    // frozen first (or they would link again at once), then the master drops their links.
    const replicas = (['redis-1', 'redis-2', 'redis-3'] as const).filter((n) => n !== old.name)
    for (const r of replicas) await ha.signal(r, 'SIGSTOP')
    await ha.direct(old.name).call('CLIENT', 'KILL', 'TYPE', 'replica')
    const first = await take(a, name, 30_000)
    await ha.signal(old.name, 'SIGKILL')
    for (const r of replicas) await ha.signal(r, 'SIGCONT')
    const promoted = await waitFor('a replica promoted', async () => {
      const m = await ha.master().catch(() => old)
      return m.name !== old.name ? m : undefined
    }, 20_000)
    assert.equal(await ha.direct(promoted.name).exists(`${namespace}:lock:${name}`), 0, 'the failover lost the lease')

    // the second holder: the lease looked free
    const second = await take(b, name, 30_000)
    assert.ok(second.token > first.token, `tokens still grow across the failover (${first.token} then ${second.token})`)
    await client.delete(node.url, keyB, { fence: { name, token: second.token } })
    // the first holder still believes it holds the lease, and acts on it
    await assert.rejects(client.delete(node.url, keyA, { fence: { name, token: first.token } }), LeaseLost, 'the first holder\'s late delete is fenced')
    assert.equal((await client.head(node.url, keyA)).key, keyA)
    assert.equal(await first.renew(), false, 'and it finds out at its next renewal')
    await second.release()
  })
})
