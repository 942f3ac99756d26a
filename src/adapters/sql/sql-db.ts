// The tiny SQL executor the metadata store runs on. PostgreSQL (a pg Pool) and
// PGlite each provide one, so both run literally the same SQL; everything
// driver-specific (pools, retries, error translation) stays behind it.

export interface QueryOptions {
  /**
   * Running the statement twice has the same effect as once (a read, an upsert,
   * a delete). The PostgreSQL executor may then retry it after a dropped
   * connection; a non-idempotent one is only retried when the server provably
   * did not apply it (read-only transaction after a failover, connect failure).
   */
  idempotent?: boolean
  /**
   * Answer now or fail: no retry, and no wait for a primary while none is
   * known (status and readiness, which must answer within a probe's time).
   */
  fast?: boolean
}

export interface SqlTx {
  /** One statement with $n parameters; its rows. */
  query<T>(text: string, params?: readonly unknown[]): Promise<T[]>
  /** Several statements without parameters (migrations). */
  exec(text: string): Promise<void>
}

export interface SqlDb extends SqlTx {
  /**
   * Runs `fn` in one transaction (READ COMMITTED) on one connection: commits
   * when it resolves, rolls back when it throws. `fn` may run more than once
   * when a retry is allowed (see QueryOptions), so it must only touch `tx`.
   */
  transaction<T>(fn: (tx: SqlTx) => Promise<T>, options?: QueryOptions): Promise<T>
  query<T>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<T[]>
}
