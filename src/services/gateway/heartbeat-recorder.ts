// Heartbeats reach the metadata store behind the request, not in it. A beat is
// answered once this gateway has heard it (its node directory keeps the time,
// so the node stays up here while the store cannot take writes, issue 13);
// the newest announcement of each node is written after, one write per node
// at a time, and a beat arriving meanwhile replaces the one waiting. A store
// that is away only delays the record; the log says so once per outage.
import type { NodeAnnouncement } from '../../core/node.ts'
import type { Logger } from '../../log.ts'
import type { MetadataStore } from '../../ports.ts'

export interface HeartbeatRecorder {
  /** Records `announcement` soon; never throws. */
  record(announcement: NodeAnnouncement): void
  /** Waits for the writes in flight; records nothing after. */
  close(): Promise<void>
}

export function createHeartbeatRecorder(metadata: MetadataStore, log: Logger, now: () => Date): HeartbeatRecorder {
  /** the newest announcement of each node not yet sent to the store */
  const waiting = new Map<string, NodeAnnouncement>()
  const writing = new Map<string, Promise<void>>()
  let failing = false
  let closed = false

  function write(id: string): void {
    const announcement = waiting.get(id)
    if (announcement === undefined || closed) return
    waiting.delete(id)
    const done = metadata
      .recordHeartbeat(announcement, now())
      .then(
        () => {
          if (failing) log.info('heartbeats are recorded in the metadata store again')
          failing = false
        },
        (err: unknown) => {
          if (!failing) log.warn({ err }, 'heartbeats cannot be recorded in the metadata store; nodes stay up on the heartbeats this gateway hears')
          failing = true
        },
      )
      .finally(() => {
        writing.delete(id)
        write(id)
      })
    writing.set(id, done)
  }

  return {
    record(announcement) {
      waiting.set(announcement.id, announcement)
      if (!writing.has(announcement.id)) write(announcement.id)
    },
    async close() {
      closed = true
      await Promise.all(writing.values())
    },
  }
}
