// Which member of a multi-host url is the primary (libpq's
// target_session_attrs=read-write, and one step further). Every member is
// asked on its own small connection and its own schedule, every PROBE_MS
// while a primary is known and every FAST_PROBE_MS while none is, whether it
// takes writes and on which timeline; the choice is made again after every
// answer. Of the members that take writes the one on the highest timeline
// wins: a promoted replica starts a new timeline, so an orphaned primary (its
// Patroni killed, its postmaster still accepting writes that no synchronous
// replica confirms any more) loses to the new one as soon as both answer.
// Nor is it chosen when the new primary misses a probe or two (a loaded
// machine): a member writing on an older timeline than the newest one seen
// in the last STALE_TIMELINE_MS is a demoted primary that has not noticed,
// and what it commits is rewound away (a chaos run lost acknowledged writes
// so: issue 10). Only once no member has written on the newest timeline for
// that long is an older one trusted again: Patroni 3.0.2 can give the lock
// back to a frozen leader that wakes and demote the member it had just
// promoted (seen in a chaos run), and then the old timeline is the one that
// goes on. Requests wait meanwhile (up to 15 s), so the window costs a pause,
// not errors.
// A member that does not answer within PROBE_TIMEOUT_MS (frozen, gone) takes
// no writes. When the primary changes, `onSwitch` hears of it and the
// executor drops every connection to the old one (pg-db.ts).
import pg from 'pg'
import type { Logger } from '../../log.ts'

/** between probes while a primary is known (ms): a new one is found within about this much of taking writes */
const PROBE_MS = 400
/** between probes while none is (ms) */
const FAST_PROBE_MS = 100
/** a member that answers no probe within this long takes no writes (ms) */
const PROBE_TIMEOUT_MS = 1000
/** an older timeline is refused while a primary on the newest one answered within this long (ms): several missed probes */
const STALE_TIMELINE_MS = 5000

/**
 * in: none. out: in_recovery, read_only (transaction_read_only), wal_file
 * (the current one, on a primary), lsn (a primary's current WAL position, a
 * replica's replayed one), replay_age_s (a replica: since the last replayed
 * commit), receiver (a replica's WAL receiver state).
 */
const PROBE = `
SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') AS read_only,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS wal_file,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_age_s,
  (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS receiver`

/** a WAL position ("16/B374D848") as a number of bytes */
export function lsnBytes(lsn: string): number {
  const [high, low] = lsn.split('/')
  return Number.parseInt(high ?? '0', 16) * 2 ** 32 + Number.parseInt(low ?? '0', 16)
}

export interface MemberState {
  /** host:port */
  name: string
  role: 'primary' | 'replica' | 'unreachable'
  /** the timeline a primary writes on (the first 8 hex digits of its WAL file names) */
  timeline: number | null
  /** a primary's current WAL position, a replica's replayed one */
  lsn: string | null
  /** a replica: bytes of WAL behind the primary of the same probe, and seconds (0 when caught up) */
  lagBytes: number | null
  lagSeconds: number | null
  /** a replica's WAL receiver: streaming, … (null: none, or not allowed to see it) */
  receiver: string | null
  error: string | null
}

export interface PrimaryLocator {
  /** the index of the member to write to, or null while none is known */
  primary(): number | null
  /** the primary's index as soon as one is known, or null after `ms` */
  primaryWithin(ms: number): Promise<number | null>
  /** `index` failed or refused a write: no work goes there until a probe confirms it, which starts now */
  suspect(index: number): void
  /** what the last probe found of every member */
  members(): MemberState[]
  /** when the primary last changed from one member to another */
  lastSwitchAt(): Date | null
  close(): Promise<void>
}

export interface PrimaryLocatorOptions {
  /** one single-host url per member */
  urls: string[]
  names: string[]
  log: Logger
  onSwitch(from: number | null, to: number): void
}

interface Prober {
  client: pg.Client | null
  state: MemberState
}

function unreachable(name: string, error: string): MemberState {
  return { name, role: 'unreachable', timeline: null, lsn: null, lagBytes: null, lagSeconds: null, receiver: null, error }
}

export function createPrimaryLocator(options: PrimaryLocatorOptions): PrimaryLocator {
  const { urls, names, log } = options
  const probers: Prober[] = urls.map((_, i) => ({
    client: null,
    state: unreachable(names[i]!, 'not probed yet'),
  }))
  let primary: number | null = null
  /** the member last found primary, remembered across a spell without one */
  let lastPrimary: number | null = null
  let switchedAt: Date | null = null
  let closed = false
  /** wake every probe loop early (a suspect) */
  let kicks: (() => void)[] = []
  const kick = () => {
    const all = kicks
    kicks = []
    for (const resolve of all) resolve()
  }
  /** work waiting for a primary to be known */
  let waiting: (() => void)[] = []

  function drop(prober: Prober): void {
    const client = prober.client
    prober.client = null
    // end() destroys the socket when a query hangs (a frozen server)
    client?.end().catch(() => undefined)
  }

  async function probeOne(i: number): Promise<MemberState> {
    const prober = probers[i]!
    const name = names[i]!
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS)
    })
    try {
      if (prober.client === null) {
        const client = new pg.Client({ connectionString: urls[i], connectionTimeoutMillis: PROBE_TIMEOUT_MS, application_name: 'mayfly-probe' })
        client.on('error', () => undefined) // a server that goes away: the next probe says so
        prober.client = client
        await Promise.race([client.connect(), timeout])
      }
      const { rows } = await Promise.race([
        prober.client.query<{
          in_recovery: boolean; read_only: string; wal_file: string | null; lsn: string | null
          replay_age_s: number | null; receiver: string | null
        }>(PROBE),
        timeout,
      ])
      const row = rows[0]!
      const seen = { lsn: row.lsn, lagBytes: null, lagSeconds: row.replay_age_s, receiver: row.receiver }
      if (row.in_recovery || row.wal_file === null) return { name, role: 'replica', timeline: null, ...seen, error: null }
      if (row.read_only !== 'off') {
        return { name, role: 'replica', timeline: null, ...seen, error: 'read-only session (default_transaction_read_only)' }
      }
      return { name, role: 'primary', timeline: Number.parseInt(row.wal_file.slice(0, 8), 16), ...seen, lagSeconds: null, error: null }
    } catch (err) {
      drop(prober)
      return unreachable(name, err instanceof Error ? err.message : String(err))
    } finally {
      clearTimeout(timer)
    }
  }

  /** the newest timeline a member wrote on, and when a member last answered as primary on it */
  let newest: { timeline: number; at: number } | null = null

  /** Chooses the primary from what the members said last; called after every probe and suspicion. */
  function decide(): void {
    const states = probers.map((p) => p.state)
    const now = Date.now()
    for (const st of states) {
      if (st.role !== 'primary') continue
      if (newest === null || st.timeline! > newest.timeline) newest = { timeline: st.timeline!, at: now }
      else if (st.timeline === newest.timeline) newest.at = now
    }
    const oldest = newest !== null && now - newest.at < STALE_TIMELINE_MS ? newest.timeline : -1
    const chosen = choosePrimary(states, primary, oldest)
    const primaryLsn = chosen === null ? null : states[chosen]!.lsn
    for (const s of states) {
      if (s.role === 'replica' && s.lsn !== null && primaryLsn !== null) {
        s.lagBytes = Math.max(0, lsnBytes(primaryLsn) - lsnBytes(s.lsn))
        // a replica that replayed all there is is not behind, however long ago the last commit was
        if (s.lagBytes === 0) s.lagSeconds = 0
      }
    }
    const from = primary ?? lastPrimary
    if (chosen !== null && chosen !== from) {
      if (from !== null) {
        switchedAt = new Date()
        log.warn({ from: names[from], to: names[chosen], timeline: states[chosen]!.timeline }, 'the PostgreSQL primary moved')
      }
      options.onSwitch(from, chosen)
    }
    if (chosen !== null) lastPrimary = chosen
    primary = chosen
    if (primary === null) return
    const waiters = waiting
    waiting = []
    for (const resolve of waiters) resolve()
  }

  /** `ms`, or until kick() */
  function pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        kicks = kicks.filter((k) => k !== wake)
        resolve()
      }, ms)
      timer.unref()
      const wake = () => {
        clearTimeout(timer)
        resolve()
      }
      kicks.push(wake)
    })
  }

  // Each member on its own loop, so that one that hangs (frozen) delays nobody's news of another.
  async function probeLoop(i: number): Promise<void> {
    while (!closed) {
      probers[i]!.state = await probeOne(i)
      if (closed) break
      decide()
      await pause(primary === null ? FAST_PROBE_MS : PROBE_MS)
    }
  }
  const running = Promise.all(probers.map((_, i) => probeLoop(i)))

  return {
    primary: () => primary,
    async primaryWithin(ms) {
      if (primary !== null || closed) return primary
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          waiting = waiting.filter((w) => w !== found)
          resolve()
        }, ms)
        const found = () => {
          clearTimeout(timer)
          resolve()
        }
        waiting.push(found)
      })
      return primary
    },
    suspect(index) {
      // no work goes there until its own probe says it takes writes again
      probers[index]!.state = { ...probers[index]!.state, role: 'unreachable', error: 'suspected: a call there failed' }
      if (primary === index) decide()
      kick()
    },
    members: () => probers.map((p) => ({ ...p.state })),
    lastSwitchAt: () => switchedAt,
    async close() {
      closed = true
      kick()
      for (const resolve of waiting) resolve()
      waiting = []
      await running
      for (const prober of probers) drop(prober)
    },
  }
}

/**
 * Of the members that take writes, the one on the highest timeline (the
 * current one on a tie), never one on a timeline below `oldestTimeline`.
 */
export function choosePrimary(states: MemberState[], current: number | null, oldestTimeline: number): number | null {
  let best: number | null = null
  states.forEach((s, i) => {
    if (s.role !== 'primary' || s.timeline! < oldestTimeline) return
    const bestTimeline = best === null ? -1 : states[best]!.timeline!
    if (s.timeline! > bestTimeline || (s.timeline === bestTimeline && i === current)) best = i
  })
  return best
}
