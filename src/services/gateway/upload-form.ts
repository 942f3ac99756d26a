// Reads a multipart upload as it arrives: the `file` part streams straight
// into the BlobStore (never buffered whole), the other fields are collected
// and validated once the form ends. Busboy does the parsing.
import type { IncomingMessage } from 'node:http'
import { pipeline, Transform, type Readable } from 'node:stream'
import busboy from 'busboy'
import { Invalid, TooLarge } from '../../core/errors.ts'
import { cleanFileName, normalizeMime, sniffImageMime } from '../../core/mime.ts'
import type { WrittenBlob } from '../../ports.ts'

const UPLOAD_FIELDS = ['max_downloads', 'expires_in', 'password'] as const
type UploadField = (typeof UPLOAD_FIELDS)[number]

export interface ReceivedUpload {
  fields: Partial<Record<UploadField, string>>
  name: string
  mime: string
  written: WrittenBlob
}

/**
 * Parses the form and hands the file part to `store`. Rejects with Invalid
 * for a form that is not one, has no `file`, has two, or unknown fields;
 * TooLarge past maxBytes. If the form fails after the file was stored, the
 * caller gets the error and `onOrphan` gets the stored blob to remove.
 */
export function receiveUpload(
  req: IncomingMessage,
  maxBytes: number,
  store: (source: Readable) => Promise<WrittenBlob>,
  onOrphan: (written: WrittenBlob) => void,
): Promise<ReceivedUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy
    try {
      parser = busboy({
        headers: req.headers,
        limits: { files: 1, fields: UPLOAD_FIELDS.length, fieldSize: 4096, parts: UPLOAD_FIELDS.length + 1 },
      })
    } catch (err) {
      reject(new Invalid('the upload must be multipart/form-data with a `file` field', 'invalid_form', { cause: err }))
      return
    }
    const fields: Partial<Record<UploadField, string>> = {}
    let file: { name: string; declaredMime: string; sniffed: string | null; stored: Promise<WrittenBlob> } | null = null
    let failure: Error | null = null
    let ended = false
    let fileStream: Readable | null = null

    const fail = (err: Error) => {
      if (failure !== null) return
      failure = err
      req.unpipe(parser)
      req.resume()
      // a file still arriving is abandoned at once: its store() fails and removes what it wrote
      if (fileStream !== null && !fileStream.readableEnded) fileStream.destroy(err)
      finish()
    }

    const finish = () => {
      if (failure === null && !ended) return
      const pending = file
      if (pending === null) {
        if (failure !== null) reject(failure)
        else reject(new Invalid('the form has no `file` field', 'missing_file'))
        return
      }
      pending.stored.then(
        (written) => {
          if (failure !== null) {
            onOrphan(written)
            reject(failure)
          } else {
            resolve({ fields, name: pending.name, mime: pending.sniffed ?? pending.declaredMime, written })
          }
        },
        (err: Error) => reject(failure ?? err),
      )
    }

    parser.on('file', (fieldName, stream, info) => {
      if (failure !== null) {
        // the form was refused already: nothing of it may be stored
        stream.resume()
        return
      }
      if (fieldName !== 'file') {
        stream.resume()
        return fail(new Invalid(`unexpected file field \`${fieldName}\`; the file goes in \`file\``, 'unexpected_field'))
      }
      const peek = peekHead((head) => {
        if (file !== null) file.sniffed = sniffImageMime(head)
      })
      // pipeline carries an abandoned file's error into `peek`, where store() sees it
      pipeline(stream, peek, () => {})
      fileStream = stream
      file = { name: cleanFileName(info.filename), declaredMime: normalizeMime(info.mimeType), sniffed: null, stored: store(peek) }
      file.stored.catch((err: Error) => fail(err))
    })
    parser.on('field', (name, value, info) => {
      if (!(UPLOAD_FIELDS as readonly string[]).includes(name)) {
        return fail(new Invalid(`unknown field \`${name}\`; allowed: file, ${UPLOAD_FIELDS.join(', ')}`, 'unknown_field'))
      }
      if (info.valueTruncated) return fail(new Invalid(`field \`${name}\` is too long`, 'invalid_field'))
      if (fields[name as UploadField] !== undefined) return fail(new Invalid(`field \`${name}\` appears twice`, 'duplicate_field'))
      fields[name as UploadField] = value
    })
    parser.on('filesLimit', () => fail(new Invalid('the form has more than one file; send exactly one `file`', 'duplicate_file')))
    parser.on('fieldsLimit', () => fail(new Invalid('the form has too many fields', 'invalid_form')))
    parser.on('partsLimit', () => fail(new Invalid('the form has too many parts', 'invalid_form')))
    parser.on('error', (err: Error) => fail(new Invalid(`the form is malformed: ${err.message}`, 'invalid_form', { cause: err })))
    parser.on('close', () => {
      ended = true
      finish()
    })
    req.on('error', (err) => fail(err))
    req.on('close', () => {
      if (!req.complete) fail(new Invalid('the client went away or stalled during the upload', 'aborted'))
    })
    req.pipe(parser)
  })
}

/** Passes bytes through and reports the first 16 of them once. */
function peekHead(onHead: (head: Buffer) => void): Transform {
  let head: Buffer | null = Buffer.alloc(0)
  return new Transform({
    transform(chunk: Buffer, _enc, callback) {
      if (head !== null) {
        head = Buffer.concat([head, chunk.subarray(0, 16)])
        if (head.length >= 16) {
          onHead(head)
          head = null
        }
      }
      callback(null, chunk)
    },
    flush(callback) {
      if (head !== null) onHead(head)
      callback()
    },
  })
}

export interface UploadOptions {
  maxDownloads: number | null
  expiresInSeconds: number
  password: string | null
}

/** Validates the upload's fields (DESIGN §3); expires_in is capped at the server maximum. */
export function parseUploadOptions(
  fields: Partial<Record<UploadField, string>>,
  defaults: { defaultExpiresInSeconds: number; maxExpiresInSeconds: number },
): UploadOptions {
  const maxDownloads = fields.max_downloads === undefined ? null : positiveInt('max_downloads', fields.max_downloads)
  const expiresIn =
    fields.expires_in === undefined ? defaults.defaultExpiresInSeconds : positiveInt('expires_in', fields.expires_in)
  const password = fields.password === undefined || fields.password === '' ? null : fields.password
  if (password !== null && password.length > 1024) throw new Invalid('password is longer than 1024 characters', 'invalid_field')
  return { maxDownloads, expiresInSeconds: Math.min(expiresIn, defaults.maxExpiresInSeconds), password }
}

function positiveInt(name: string, raw: string): number {
  const value = raw.trim()
  if (!/^\d{1,10}$/.test(value) || Number(value) < 1 || Number(value) > 2_000_000_000) {
    throw new Invalid(`${name} must be a whole number from 1 to 2000000000, got ${JSON.stringify(raw)}`, 'invalid_field')
  }
  return Number(value)
}

export function checkDeclaredLength(header: string | undefined, maxBytes: number): void {
  // multipart framing adds well under 64 KiB; a body far larger cannot fit
  if (header !== undefined && Number(header) > maxBytes + 64 * 1024) {
    throw new TooLarge(`the upload is larger than the limit of ${maxBytes} bytes`)
  }
}
