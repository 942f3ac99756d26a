// The errors services throw. Each has a stable `code` (the JSON `error` field
// of DESIGN §3) and an HTTP status; http/errors.ts maps them, and
// adapters translate driver errors into these at their boundary.

export class MayflyError extends Error {
  readonly code: string
  readonly status: number
  constructor(status: number, code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.status = status
    this.code = code
  }
}

/** 400: a parameter, field or body is malformed. */
export class Invalid extends MayflyError {
  constructor(message: string, code = 'invalid_request', options?: ErrorOptions) {
    super(400, code, message, options)
  }
}

/** 401: credentials (cluster secret, link password) are missing or wrong. */
export class Unauthorized extends MayflyError {
  constructor(message: string, code = 'unauthorized') {
    super(401, code, message)
  }
}

/** 403: credentials are valid but do not allow this (wrong delete token). */
export class Forbidden extends MayflyError {
  constructor(message: string, code = 'forbidden') {
    super(403, code, message)
  }
}

/** 404: no such file, blob, variant or node. Malformed ids are 404 too. */
export class NotFound extends MayflyError {
  constructor(message: string, code = 'not_found') {
    super(404, code, message)
  }
}

/** 409: the request conflicts with the current state. */
export class Conflict extends MayflyError {
  constructor(message: string, code = 'conflict') {
    super(409, code, message)
  }
}

/** 410: the link died: `expired`, `download_limit_reached` or `deleted`. */
export class Expired extends MayflyError {
  constructor(message: string, code: 'expired' | 'download_limit_reached' | 'deleted' = 'expired') {
    super(410, code, message)
  }
}

/** 413: the upload is larger than MAYFLY_MAX_UPLOAD_BYTES. */
export class TooLarge extends MayflyError {
  constructor(message: string) {
    super(413, 'too_large', message)
  }
}

/** 422: the bytes do not match the checksum the caller announced. */
export class ChecksumMismatch extends MayflyError {
  constructor(message: string) {
    super(422, 'checksum_mismatch', message)
  }
}

/** 503: a dependency is down or too few storage nodes hold the quorum. */
export class Unavailable extends MayflyError {
  constructor(message: string, code = 'unavailable', options?: ErrorOptions) {
    super(503, code, message, options)
  }
}

/** 429 `rate_limited`: this client did too much of something lately; `Retry-After` says when to come back. */
export class RateLimited extends MayflyError {
  readonly retryAfterSeconds: number
  constructor(message: string, retryAfterSeconds: number) {
    super(429, 'rate_limited', message)
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** 408: the client sent too slowly or stalled. */
export class Timeout extends MayflyError {
  constructor(message: string) {
    super(408, 'timeout', message)
  }
}

/** Thrown by a job handler when retrying cannot help (a poison job): dead-letter at once. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'PermanentJobError'
  }
}

/** 415: the body is not of a type this endpoint takes. */
export class UnsupportedMediaType extends MayflyError {
  constructor(message: string) {
    super(415, 'unsupported_media_type', message)
  }
}

/** 409: a fenced write came from a holder whose lease is no longer the live one (a paused old leader). */
export class LeaseLost extends MayflyError {
  constructor(message: string) {
    super(409, 'lease_lost', message)
  }
}

/** 404 `blob_damaged`: a storage node found the blob's first requested bytes damaged and quarantined it, so the blob is gone from that node. */
export class DamagedBlob extends MayflyError {
  constructor(message: string) {
    super(404, 'blob_damaged', message)
  }
}

/** 507: a storage node's disk is full. */
export class InsufficientStorage extends MayflyError {
  constructor(message: string) {
    super(507, 'insufficient_storage', message)
  }
}

/**
 * 502 `peer_unavailable`: in a node-to-node copy, the source node failed
 * (unreachable, an error, a stall or bytes that differ from its sha256); the
 * node that answers this is fine. The client of the copying node throws it too.
 */
export class PeerFailed extends MayflyError {
  constructor(message: string, options?: ErrorOptions) {
    super(502, 'peer_unavailable', message, options)
  }
}
