// The ports: what services need from the outside world, in domain words.
// Each has an embedded adapter (one process, `mayfly up`) and a real one
// (PostgreSQL, Redis, RabbitMQ, storage nodes over HTTP). Only wiring.ts picks.
import type { Readable } from 'node:stream'
import type { BlobRecord, FileRecord, VariantName, VariantRecord } from './core/file.ts'
import type { GatewayAnnouncement, GatewayRecord } from './core/gateway.ts'
import type { NodeAnnouncement, NodeRecord, NodeState } from './core/node.ts'

/** A dependency's state for /ready and /api/cluster. */
export interface DependencyStatus {
  name: string
  kind: string
  ok: boolean
  detail: Record<string, unknown>
}

export interface NewFile {
  id: string
  blob: BlobRecord
  /** nodes holding a fsynced copy of the blob */
  replicas: string[]
  name: string
  mime: string
  createdAt: Date
  expiresAt: Date
  maxDownloads: number | null
  passwordHash: string | null
  deleteTokenHash: string
  /** variants to create as `pending` (images), or `skipped` with their reason */
  variants: { name: VariantName; state: 'pending' | 'skipped'; reason: string | null }[]
}

export type ClaimResult =
  /** `claim` names this claim; a refund passes it back */
  | { ok: true; file: FileRecord; claim: string }
  | { ok: false; reason: 'not_found' }
  | { ok: false; reason: 'expired' | 'download_limit_reached' | 'deleted'; file: FileRecord }

/** A dead file whose bytes are still on nodes: its blobs and where they are. */
export interface PurgeItem {
  fileId: string
  blobs: { key: string; nodeIds: string[] }[]
}

/**
 * Durable metadata: files, blobs, replicas, variants and nodes. PostgreSQL in
 * production, PGlite embedded; both run the same migrations and SQL.
 * Every method throws Unavailable when the store cannot be reached.
 */
export interface MetadataStore {
  /**
   * Records a blob as being written, so that an upload that dies halfway is
   * found and cleaned. `owner`: the gateway writing it (GatewayRegistry), so
   * that the cluster cleans up after that gateway once it is dead; null for
   * blobs nobody beats for (variants). Idempotent.
   */
  beginBlob(key: string, now: Date, owner?: string | null): Promise<void>
  /** Forgets a pending blob whose write failed (its bytes were removed or never landed). Idempotent. */
  abandonBlob(key: string): Promise<void>
  /** Pending blobs without an owner begun before `before`: variants whose worker died. */
  listStalePendingBlobs(before: Date, limit: number): Promise<string[]>

  /**
   * In one transaction: the blob becomes active with its replicas, the file
   * and its variant rows exist. Throws Conflict on a duplicate id (another
   * file's; a retry of this very call whose answer was lost returns the file),
   * and Unavailable when the blob was abandoned meanwhile (its gateway was
   * taken for dead and its bytes removed: the upload must be sent again).
   */
  createFile(file: NewFile): Promise<FileRecord>
  /** The file, dead or alive, or null when the id is unknown (or purged long ago). */
  getFile(id: string): Promise<FileRecord | null>
  /**
   * Atomically counts one download if the link is alive and below its limit.
   * With N concurrent callers and max_downloads = N - k, exactly N - k get ok.
   * The claim that takes the last download sets exhaustedAt. Counted once
   * even when the store retries it after losing its answer.
   */
  claimDownload(id: string, now: Date): Promise<ClaimResult>
  /**
   * Adds downloads (file id -> count) of links without a limit. Not atomic
   * with anything: such links need no claim, so the gateway counts them in
   * batches off the download path. Ids of limited or unknown files are
   * ignored. A batch counts once per `receipt` (the caller's name for it),
   * however often it is sent: resend a batch that failed under its receipt.
   */
  addDownloads(counts: Map<string, number>, receipt: string): Promise<void>
  /** Gives back a claimed download (`claim` from its ClaimResult) that failed before any byte was sent; once, however often called. */
  refundDownload(id: string, claim: string): Promise<void>
  /** Forgets up to `limit` receipts of writes older than `before` (a claim can no longer be refunded after); how many. */
  forgetReceipts(before: Date, limit: number): Promise<number>
  /** Kills the link (deletedAt = now). Idempotent; false when the id is unknown. */
  deleteFile(id: string, now: Date): Promise<boolean>

  /**
   * Records a variant's outcome; a ready variant's blob and replicas in the same transaction. Idempotent.
   * Throws NotFound when the file is unknown or already purged (then delete the blob you wrote).
   */
  setVariant(variant: VariantRecord, replicas: string[]): Promise<void>
  listVariants(fileId: string): Promise<VariantRecord[]>
  /** Files of live links with a variant still pending since before `before` (their job may be lost). */
  listStalePendingVariants(before: Date, limit: number): Promise<string[]>

  /** Nodes holding a replica of the blob. */
  listReplicas(blobKey: string): Promise<string[]>
  /** Idempotent. Throws NotFound when the blob row is gone (purged or abandoned): delete that copy. */
  addReplica(blobKey: string, nodeId: string): Promise<void>
  /** Idempotent. */
  removeReplica(blobKey: string, nodeId: string): Promise<void>

  /** Files that died before `diedBefore` and are not purged, with their blobs and replicas. */
  listPurgeable(diedBefore: Date, limit: number): Promise<PurgeItem[]>
  /**
   * Marks the file purged and drops its blob rows, once no blob of it has a replica left; while one
   * has, nothing changes and the file stays in listPurgeable (check getFile(id).purgedAt). Idempotent.
   */
  markPurged(fileId: string, now: Date): Promise<void>

  /**
   * A node announced itself or sent a heartbeat. The store stamps it with its
   * own clock (issue 7, bug 7); `now`, the caller's clock, is ignored and
   * stays only so that existing callers compile. Idempotent.
   */
  recordHeartbeat(node: NodeAnnouncement, now?: Date): Promise<void>
  /** Every node, with the age of its last heartbeat by the store's clock (NodeRecord.heartbeatAgeMs). */
  listNodes(): Promise<NodeRecord[]>

  /** The replication manager's side of the same store. */
  readonly replication: ReplicationStore
  /** The gateways' heartbeats, and the uploads of dead ones. */
  readonly gateways: GatewayRegistry

  status(): Promise<DependencyStatus>
  close(): Promise<void>
}

/**
 * The gateways as the metadata store knows them (issue 10): each beats under
 * an id of its own, and the uploads of one that died are cleaned up by the
 * sweeper, not by the dead process. Times are the store's clock.
 */
export interface GatewayRegistry {
  /** A heartbeat, stamped with the store's clock. Idempotent. */
  beat(gateway: GatewayAnnouncement): Promise<void>
  /** A clean stop: the gateway is `stopped` and its pending uploads are the sweeper's. */
  leave(id: string): Promise<void>
  /** Gateways heard from within the last hour, newest start first (stale-tolerant). */
  list(): Promise<GatewayRecord[]>
  /**
   * Pending uploads of gateways that stopped, or stayed silent `silentMs`
   * while another gateway beat, or that began before `before`: each becomes
   * an abandoned tombstone, which createFile refuses (a gateway that was only
   * frozen cannot record a file over bytes the sweeper removes). Their keys.
   */
  abandonOrphanedUploads(silentMs: number, before: Date, limit: number): Promise<string[]>
  /** Tombstones whose bytes are not yet confirmed gone from every node, oldest first. */
  listAbandonedUploads(limit: number): Promise<string[]>
  /** Every node confirmed the bytes of this tombstone removed. */
  markCleared(key: string): Promise<void>
  /** Forgets up to `limit` tombstones cleared before `before`, and the gateways silent since then; how many rows. */
  forget(before: Date, limit: number): Promise<number>
}

/** A lease name and token that a write must still hold to take effect. */
export interface Fence {
  name: string
  token: number
}

/** A blob and the nodes recorded as holding it. */
export interface BlobPlacement extends BlobRecord {
  nodeIds: string[]
}

/** What the metadata says of a blob found on a node (reconciliation). */
export type BlobFate =
  /** a live link owns it: keep it where it is recorded, copy it where it is needed */
  | { kind: 'live'; blob: BlobPlacement; createdAt: Date }
  /** an upload or variant still being written (or one that died: the sweeper's) */
  | { kind: 'pending' }
  /** every owner died or was purged: its bytes are garbage */
  | { kind: 'dead' }
  /** no trace at all: an upload that has not recorded its row yet, or a leftover */
  | { kind: 'unknown' }

export interface ReplicationBacklog {
  /** live blobs with fewer copies than the factor on nodes that are not draining */
  blobsBelowFactor: number
  /** bytes to copy to bring them to the factor */
  bytesToCopy: number
  /** live blobs with more copies than the factor */
  blobsAboveFactor: number
  /** live blobs at their factor whose copies span fewer zones than they could */
  blobsBelowZoneSpread: number
  /** live blobs with no copy recorded anywhere */
  blobsWithoutReplica: number
}

export interface NodeUsage {
  nodeId: string
  replicas: number
  bytes: number
}

/** A small shared document (the manager's status, a rebalance request). */
export interface ControlDocument {
  value: unknown
  version: number
  updatedAt: Date
}

/**
 * What the replication manager reads and changes. Its changes are fenced:
 * they take effect only while the given lease is the live one, and throw
 * LeaseLost otherwise, so a paused old leader cannot act.
 */
export interface ReplicationStore {
  /** A lease timed by the store's clock; null while another holder's lease is live. */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease | null>

  /**
   * Live blobs below `factor` (counting nodes that are not draining), above
   * it, or spanning fewer than `zones` zones, in key order after `after`,
   * created at least minAgeMs ago.
   */
  listWork(factor: number, zones: number, after: string, limit: number, minAgeMs: number): Promise<BlobPlacement[]>
  /** `zones`: how many zones a blob's copies can span now (core/replication.ts reachableSpread). */
  backlog(factor: number, zones: number): Promise<ReplicationBacklog>
  /** What each node holds according to the metadata. */
  nodeUsage(): Promise<NodeUsage[]>
  /** The blobs recorded on a node, in key order after `after`, with all their replicas; `live` when a live link owns it. */
  listNodeBlobs(nodeId: string, after: string, limit: number): Promise<(BlobPlacement & { live: boolean })[]>
  describeBlobs(keys: string[]): Promise<Map<string, BlobFate>>

  /** Records a copy; false (nothing recorded) when the blob is no longer live: delete that copy. */
  addReplica(blobKey: string, nodeId: string, fence: Fence): Promise<boolean>
  removeReplica(blobKey: string, nodeId: string, fence: Fence): Promise<void>
  /** The node is lost: drops its replica rows (but a live blob's last one) and sets lostAt; returns the rows dropped. */
  declareNodeLost(nodeId: string, fence: Fence): Promise<number>
  /** A returning node was reconciled by inventory: clears lostAt. */
  markNodeReconciled(nodeId: string, fence: Fence): Promise<void>

  /** Operators: false when the node is unknown. */
  setNodeDraining(nodeId: string, draining: boolean): Promise<boolean>
  readControl(name: string): Promise<ControlDocument | null>
  /** With a fence, written only while that lease holds (LeaseLost otherwise). */
  writeControl(name: string, value: unknown, fence?: Fence): Promise<void>
  /** Deletes the document if its version is still `version`. */
  clearControl(name: string, version: number): Promise<void>

  /** Copies of blobs the metadata does not know, held for an operator instead of deleted. */
  readonly orphans: OrphanStore
}

/** What an operator decided about an orphan copy, or that nobody has yet. */
export type OrphanState = 'held' | 'kept' | 'released'

/**
 * A copy on a node of a blob no metadata knows, which the replication
 * manager holds instead of deleting (a restored metadata store, or more of
 * them at once than it deletes on its own: docs/replication.md).
 */
export interface OrphanCopy {
  nodeId: string
  key: string
  size: number
  /** held: waiting for an operator; kept: never deleted; released: the manager deletes it */
  state: OrphanState
  heldAt: Date
}

export interface OrphanCount {
  nodeId: string
  state: OrphanState
  copies: number
  bytes: number
}

/**
 * The orphan copies. The manager's changes are fenced like the rest of
 * ReplicationStore (LeaseLost when its lease is gone); operators' are not.
 */
export interface OrphanStore {
  /** The node's orphan copies by key. */
  onNode(nodeId: string): Promise<Map<string, OrphanCopy>>
  /** Holds copies; idempotent: a copy recorded already keeps its state. */
  hold(nodeId: string, copies: readonly { key: string; size: number }[], fence: Fence): Promise<void>
  /** Forgets copies (deleted from the node, gone from it, or known again). Idempotent. */
  forget(nodeId: string, keys: readonly string[], fence: Fence): Promise<void>
  /** Copies and bytes per node and state. */
  counts(): Promise<OrphanCount[]>
  /** Copies in (node id, key) order after the cursor. */
  list(after: { nodeId: string; key: string } | null, limit: number): Promise<OrphanCopy[]>
  /**
   * An operator's decision: copies with one of `from` states (those with
   * `keys` only, when given) move to `to`. Returns how many did. Idempotent.
   */
  decide(from: readonly OrphanState[], to: OrphanState, keys: readonly string[] | null): Promise<number>
}

/** What Cache.lookup found: the value, or a miss with the ticket that may fill the key. */
export type CacheLookup =
  | { hit: true; value: string }
  /** `ticket` is null when the cache is unreachable: read the source and do not fill */
  | { hit: false; ticket: string | null }

/**
 * A cache of small strings in front of a source of truth (the metadata
 * store). Never throws: an unreachable cache is a miss (logged) and a write
 * or delete it cannot make is dropped, so it slows the gateway down and
 * breaks nothing. Entries lapse after their TTL, which also bounds staleness
 * when an invalidation was lost.
 *
 * Filling after a miss never brings back a state older than a change that was
 * already invalidated (issue 7; memcached's leases). A reader:
 *   1. lookup(key, reserveMs): a hit, or a miss with a ticket;
 *   2. reads the source;
 *   3. fill(key, ticket, value, ttlMs): stored only while the ticket is still
 *      the key's reservation, i.e. no delete(), set() or fill() of the key
 *      came after the lookup that issued it, and it has not lapsed or been evicted.
 * A writer changes the source first, then calls delete(key). Once delete(key)
 * has returned, every value the key can show was read from the source after
 * the change: a reader that may have read before it holds a ticket the delete
 * voided. No tombstone is needed: tickets are random, so a reservation made
 * after the delete is another one, and a lapsed reservation only fails fills.
 *
 * What this does not cover: a delete that is lost (the cache unreachable at
 * that moment, or a Sentinel failover, since Redis replicates asynchronously).
 * A stale value then stays until its TTL lapses, and a fill under way may still
 * land while its reservation stands: at most reserveMs + ttlMs after the change.
 */
export interface Cache {
  /**
   * True when a delete() that returned is seen by every later read, wherever
   * it is made: one process, nothing in between (the embedded cache). False
   * for a cache shared over a network, which can lose a delete (Redis
   * unreachable at that moment, a write lost in a Sentinel failover): then
   * what the cache says of a source that can change must be confirmed with
   * the source before it decides anything (FileLookup does so).
   */
  readonly coherent: boolean
  /** The value, or null: a miss, a key only reserved, or an unreachable cache. Reserves nothing. */
  get(key: string): Promise<string | null>
  /**
   * The value, or on a miss a ticket for fill(). A miss on a free key reserves
   * it for reserveMs under a new random ticket; a miss while a reservation
   * stands gets that reservation's ticket (concurrent readers may all try to
   * fill; the first fill wins). A reservation is no value: get() and lookup()
   * still miss. Idempotent apart from making the reservation.
   */
  lookup(key: string, reserveMs: number): Promise<CacheLookup>
  /**
   * Stores `value` for ttlMs if `ticket` is still the key's reservation, in
   * one atomic step: a concurrent delete() comes either first (the fill fails)
   * or after (it removes the value). True when stored; false, and nothing
   * changes, once the key was deleted, set or filled since the ticket was
   * issued, or the reservation lapsed or was evicted; false too when no
   * answer came (the cache unreachable; a fill whose answer was lost may
   * still have been stored, which is as safe as storing it).
   */
  fill(key: string, ticket: string, value: string, ttlMs: number): Promise<boolean>
  /** Stores `value` for ttlMs unconditionally; voids any reservation of the key. */
  set(key: string, value: string, ttlMs: number): Promise<void>
  /**
   * Removes the key's value or reservation, voiding every ticket issued for it
   * so far. Call it after the source changed. Idempotent. When the cache is
   * unreachable nothing is removed (see above: the TTL bounds that).
   */
  delete(key: string): Promise<void>
  status(): Promise<DependencyStatus>
  close(): Promise<void>
}

/** A held lease. `token` grows with every acquisition of the same name (fencing). */
export interface Lease {
  readonly name: string
  readonly token: number
  /** Extends the lease; false when it was lost (expired and taken by another). */
  renew(): Promise<boolean>
  /** Idempotent; releases only if still ours. */
  release(): Promise<void>
}

/** Leases with a TTL: only one holder at a time per name, until it lapses. */
export interface Lock {
  /** The lease, or null when someone else holds it. Throws Unavailable when the backend is down. */
  acquire(name: string, ttlMs: number): Promise<Lease | null>
  close(): Promise<void>
}

/** So many per window: a bucket of `count` that refills `count` per `windowMs`, evenly. */
export interface RateLimit {
  count: number
  windowMs: number
}

export interface RateDecision {
  allowed: boolean
  /** when refused: ms until one more is allowed; 0 when allowed */
  retryAfterMs: number
}

/**
 * Token buckets per key (a client's address and what it does), shared by
 * every gateway (Redis) or in one process (embedded). A bucket that was never
 * touched, or was left alone for a window, is full.
 */
export interface RateLimiter {
  /**
   * Takes one token from the bucket `key` (cost 1), or gives one back (cost
   * -1, never above full). Refused when the bucket is empty: nothing is taken.
   * Throws Unavailable when the backend cannot answer; the caller decides
   * whether that opens or closes the door.
   */
  take(key: string, limit: RateLimit, cost?: 1 | -1): Promise<RateDecision>
  close(): Promise<void>
}

export interface JobContext {
  /** 1 on first delivery */
  attempt: number
}

export type JobHandler = (job: Record<string, unknown>, ctx: JobContext) => Promise<void>

export interface QueueDepth {
  queue: string
  ready: number
  unacked: number
  retrying: number
  dead: number
  consumers: number
}

export interface Consumer {
  /** Stops taking new jobs and waits for the running ones. */
  stop(): Promise<void>
}

/**
 * Durable jobs, delivered at least once: handlers must be idempotent.
 * A handler that throws is retried with backoff; one that throws
 * PermanentJobError, or fails maxAttempts times, goes to the dead-letter queue.
 * A job whose consumer dies before it finishes is delivered again.
 */
export interface JobQueue {
  /** Resolves once the broker has the job durably (publisher confirm). Throws Unavailable. */
  publish(topic: string, job: Record<string, unknown>): Promise<void>
  consume(topic: string, handler: JobHandler, options?: { concurrency?: number }): Promise<Consumer>
  depths(topics: string[]): Promise<QueueDepth[]>
  status(): Promise<DependencyStatus>
  close(): Promise<void>
}

export interface WrittenBlob extends BlobRecord {
  /** nodes that fsynced the blob before write() resolved (at least the write quorum) */
  replicas: string[]
  /** settles when the remaining copies of this write finish, with the nodes that took them */
  remaining: Promise<string[]>
}

/** What BlobStore.write() sets on the error it throws. */
export interface FailedWrite {
  /** settles once the copies the write made are removed: true when every node it reached confirmed (false: one may stay, for the sweeper) */
  copiesRemoved: Promise<boolean>
}

export interface ByteRange {
  start: number
  /** inclusive */
  end: number
}

/**
 * Blobs replicated across storage nodes: placement, fan-out writes with a
 * write quorum, reads that fail over between replicas (also mid-stream).
 */
export interface BlobStore {
  /**
   * Streams `source` to the replication factor's nodes at once, in distinct
   * zones where possible; resolves when the write quorum has fsynced. Throws
   * TooLarge past maxBytes, Unavailable without a quorum. On failure it
   * removes every copy it made (once every node's write settled), and the
   * error says when that is done and whether every node confirmed it
   * (FailedWrite).
   */
  write(source: Readable, options: { key: string; maxBytes: number }): Promise<WrittenBlob>
  /**
   * The blob's bytes (or a range) from a healthy replica. Resolves once a
   * replica has answered, so a caller can still send a clean error; throws
   * NotFound when no replica has it, Unavailable when none answers. If the
   * replica fails mid-stream the stream goes on from the next one (by Range);
   * it errors only when every replica failed.
   */
  open(blob: BlobRecord, replicas: string[], range?: ByteRange): Promise<Readable>
  /**
   * Deletes the blob from the given nodes; returns the nodes where it is now
   * gone. With `fence`, a node that saw a later token of that lease refuses
   * (and is not among those returned).
   */
  remove(key: string, nodeIds: string[], options?: { fence?: Fence }): Promise<string[]>
}

/** A storage node as one process sees it: membership from the metadata, plus its own memory of failed calls. */
export interface NodeView extends NodeRecord {
  state: NodeState
  /** this process saw a call to it fail in the last penaltyMs */
  failing: boolean
}

export interface NodeDirectory {
  /** every known node with its state, refreshed at most every refreshMs */
  all(): Promise<NodeView[]>
  /** nodes to send new work to: up, not failing here, not draining */
  writable(): Promise<NodeView[]>
  /** url of a node by id, or undefined when unknown */
  byId(id: string): Promise<NodeView | undefined>
  /** a call to this node failed or timed out: avoid it for a while */
  reportFailure(nodeId: string): void
  /** a call to this node succeeded */
  reportSuccess(nodeId: string): void
  /**
   * a heartbeat of this node reached this process just now: the node counts
   * as heard from even before (or without) the metadata store recording it,
   * at the url the heartbeat gave
   */
  heard(nodeId: string, url: string): void
}

/** The storage node API (DESIGN §4) as the gateway, workers and the replication manager call it. */
export interface BlobRead {
  /**
   * the bytes; errors with Unavailable if the node fails mid-stream. The node
   * sends only bytes it has verified (per-block CRC32): on damage the body
   * errors right after the last good block, so what came before is right
   * and a reader can resume from there on another replica.
   */
  body: Readable
  /** bytes in this response */
  size: number
  /** bytes of the whole blob */
  totalSize: number
  sha256: string
  /** true for a 206 answer to a range */
  partial: boolean
}

export interface BlobPage {
  blobs: BlobRecord[]
  /** pass as `after` for the next page; null on the last page */
  next: string | null
}

export interface BlobClient {
  /**
   * Streams `body` to the node as blob `key` (create or atomic replace).
   * Resolves once the node has fsynced it, with the sha256 it computed.
   * With `sha256`, the node refuses other bytes: ChecksumMismatch, nothing kept.
   * `size`, when known, is sent as Content-Length. Idempotent for the same
   * bytes. On failure `body` may be left partly read or destroyed.
   */
  put(nodeUrl: string, key: string, body: Readable | Buffer, options?: { sha256?: string; size?: number; signal?: AbortSignal }): Promise<BlobRecord>
  /**
   * Opens the blob (or the inclusive byte range). Resolves once the node
   * answered, so NotFound and Unavailable surface here; the caller must read
   * or destroy `body`. Every byte is verified by the node before it is sent:
   * damage cuts the body off (an error, never a clean end) after the last
   * good byte, and damage before the first byte asked for is NotFound
   * (the node quarantined its copy; the message says so). The node does not
   * check the whole blob's sha256 on reads; a caller reading it whole should
   * (the gateway does). An unsatisfiable range: Invalid('range_not_satisfiable').
   */
  get(nodeUrl: string, key: string, options?: { range?: { start: number; end: number }; signal?: AbortSignal }): Promise<BlobRead>
  /**
   * The whole blob in one Buffer, for blobs small enough to hold (the
   * gateway reads those up to 1 MiB whole): the same request as get(), with
   * no stream in between. The node sends only verified bytes; the caller
   * checks the sha256. NotFound when the node lacks the blob or holds one
   * that is not `size` bytes long; Unavailable when it fails or sends fewer
   * or more bytes than it announced. Aborted through `signal`: the signal's
   * AbortError (as for get()).
   */
  getWhole(nodeUrl: string, key: string, size: number, options?: { signal?: AbortSignal }): Promise<Buffer>
  /** The blob's size and recorded sha256 without its bytes. NotFound when absent. */
  head(nodeUrl: string, key: string): Promise<BlobRecord>
  /**
   * Idempotent: resolves whether or not the node had the blob. With `fence`
   * (the replication manager's lease), LeaseLost when the node has seen a
   * newer token of that lease, and nothing is deleted.
   */
  delete(nodeUrl: string, key: string, options?: { fence?: Fence }): Promise<void>
  /** A page of the node's inventory, in key order (ASCII), keys > after; limit 1..10000, default 1000. */
  list(nodeUrl: string, options?: { after?: string; limit?: number }): Promise<BlobPage>
  /**
   * Makes the node at targetUrl fetch the blob from storage node
   * `sourceNodeId` and store it as a PUT would (checked against the source's
   * sha256). The target finds the source through its control plane, so only a
   * registered node that is not lost can be one. Which node failed:
   * PeerFailed when the source did (unreachable, an error, a stall, bad
   * bytes), Conflict('unknown_source') when the target's control plane knows
   * no live node of that id, NotFound when the source lacks the blob,
   * Unavailable when the target failed (or cannot reach its control plane).
   * Idempotent. The target answers only once the whole blob is stored, so
   * this call waits up to `timeoutMs` (default 60 × the client's timeout) for
   * the answer; aborted through `signal`, the target stops and keeps nothing.
   * `fence` as for delete.
   */
  copy(
    targetUrl: string,
    key: string,
    sourceNodeId: string,
    options?: { timeoutMs?: number; signal?: AbortSignal; fence?: Fence },
  ): Promise<BlobRecord>
  /** The node's GET /health: id, zone, url, version, capacity, free, used, blob count. */
  health(nodeUrl: string): Promise<NodeAnnouncement>
  /** Closes every pooled connection. */
  close(): Promise<void>
}
