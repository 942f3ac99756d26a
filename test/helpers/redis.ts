// Removes a test's Redis keys (everything under its namespace), so that runs
// leave nothing behind; the lock's fencing counters never expire on their own.
import { Redis } from 'ioredis'

export async function deleteNamespaceKeys(url: string, namespace: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  client.on('error', () => {}) // a Redis the test made unreachable: the cleanup fails quietly
  try {
    await client.connect()
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 500)
      if (keys.length > 0) await client.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    client.disconnect()
  }
}
