// Reads a multipart upload as it arrives: each field is checked the moment it
// arrives (upload-fields.ts), the `file` part streams straight into the
// BlobStore (never buffered whole). Fields sent before the file, as curl -F
// and browsers send them, are refused before a byte of the file is stored.
// Busboy does the parsing.
import type { IncomingMessage } from 'node:http'
import { pipeline, Transform, type Readable } from 'node:stream'
import busboy from 'busboy'
import { Invalid, TooLarge } from '../../core/errors.ts'
import { cleanFileName, normalizeMime, sniffImageMime } from '../../core/mime.ts'
import type { WrittenBlob } from '../../ports.ts'
import { applyUploadField, defaultUploadOptions, isUploadField, UPLOAD_FIELDS, type ExpiryLimits, type UploadOptions } from './upload-fields.ts'

export interface ReceivedUpload {
  options: UploadOptions
  name: string
  mime: string
  written: WrittenBlob
}

export interface UploadLimits extends ExpiryLimits {
  maxBytes: number
}

/** The code of the Invalid a client that went away mid-upload gets (nobody reads it: it is for the log). */
export const CLIENT_GONE = 'aborted'

/**
 * Parses the form and hands the file part to `store` (called at most once,
 * when the file part begins). Rejects with Invalid for a form that is not
 * one, has no `file`, has two, an unknown or bad field; TooLarge past
 * maxBytes. It settles only after what `store` returned settled; cleaning
 * up what store() wrote for a form that failed is the caller's (one place).
 */
export function receiveUpload(
  req: IncomingMessage,
  limits: UploadLimits,
  store: (source: Readable) => Promise<WrittenBlob>,
): Promise<ReceivedUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy
    try {
      parser = busboy({
        headers: req.headers,
        // names as curl, the CLI and browsers send them: UTF-8, not busboy's default latin1 (issue 7, bug 10)
        defParamCharset: 'utf8',
        // busboy refuses on reaching `parts` (the others on passing theirs): one more than a full form
        limits: { files: 1, fields: UPLOAD_FIELDS.length, fieldSize: 4096, parts: UPLOAD_FIELDS.length + 2 },
      })
    } catch (err) {
      reject(new Invalid('the upload must be multipart/form-data with a `file` field', 'invalid_form', { cause: err }))
      return
    }
    const options = defaultUploadOptions(limits)
    const given = new Set<string>()
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
          if (failure !== null) reject(failure)
          else resolve({ options, name: pending.name, mime: pending.sniffed ?? pending.declaredMime, written })
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
      if (info.filename === undefined || info.filename === '') {
        // filename="" (busboy reports no filename): what a browser sends for a file input left empty
        stream.resume()
        return fail(new Invalid('no file was chosen: the `file` part has an empty filename', 'missing_file'))
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
      if (failure !== null) return
      if (name === 'file') {
        if (file !== null) return fail(new Invalid('the form has more than one `file`; send exactly one', 'duplicate_file'))
        // a part with no filename is text to every form parser: the bytes never came as a file
        return fail(new Invalid('`file` arrived as a text field, without a filename; send the file itself: curl -F "file=@photo.jpg"', 'missing_file'))
      }
      if (!isUploadField(name)) {
        return fail(new Invalid(`unknown field \`${name}\`; allowed: file, ${UPLOAD_FIELDS.join(', ')}`, 'unknown_field'))
      }
      if (info.valueTruncated) return fail(new Invalid(`field \`${name}\` is too long`, 'invalid_field'))
      if (given.has(name)) return fail(new Invalid(`field \`${name}\` appears twice`, 'duplicate_field'))
      given.add(name)
      try {
        applyUploadField(options, name, value, limits)
      } catch (err) {
        fail(err as Error)
      }
    })
    parser.on('filesLimit', () => fail(new Invalid('the form has more than one file; send exactly one `file`', 'duplicate_file')))
    parser.on('fieldsLimit', () => fail(new Invalid(`the form has too many fields; allowed: file, ${UPLOAD_FIELDS.join(', ')}`, 'invalid_form')))
    parser.on('partsLimit', () => fail(new Invalid('the form has too many parts', 'invalid_form')))
    parser.on('error', (err: Error) => fail(new Invalid(`the form is malformed: ${err.message}`, 'invalid_form', { cause: err })))
    parser.on('close', () => {
      ended = true
      finish()
    })
    // a client that hangs up makes the request emit 'error' (ECONNRESET) and then 'close': one failure, ours
    const gone = () => fail(new Invalid('the client went away or stalled during the upload', CLIENT_GONE))
    req.on('error', gone)
    req.on('close', () => {
      // a request read to its end closes too (and one made by inject() never says it is `complete`)
      if (!req.complete && !req.readableEnded) gone()
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

export function checkDeclaredLength(header: string | undefined, maxBytes: number): void {
  // multipart framing adds well under 64 KiB; a body far larger cannot fit
  if (header !== undefined && Number(header) > maxBytes + 64 * 1024) {
    throw new TooLarge(`the upload is larger than the limit of ${maxBytes} bytes`)
  }
}
