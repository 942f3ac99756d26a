// A multipart/form-data upload with one `file` part, as curl -F sends it.
// Built once per payload as one Buffer (boundary, part headers, bytes,
// closing boundary), so that sending it costs the client what a raw PUT of
// the same bytes costs; or streamed, for the 1 GiB memory phase.
import { randomBytes } from 'node:crypto'

export interface MultipartForm {
  contentType: string
  head: Buffer
  tail: Buffer
  /** total body length: head + file + tail */
  length: number
}

export function multipartFrame(fileName: string, mime: string, fileSize: number): MultipartForm {
  const boundary = `----mayflybench${randomBytes(12).toString('hex')}`
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${fileName}"\r\nContent-Type: ${mime}\r\n\r\n`,
  )
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  return { contentType: `multipart/form-data; boundary=${boundary}`, head, tail, length: head.length + fileSize + tail.length }
}

/** The whole form in one Buffer. */
export function multipartBody(data: Buffer, fileName: string, mime: string): { contentType: string; body: Buffer } {
  const frame = multipartFrame(fileName, mime, data.length)
  return { contentType: frame.contentType, body: Buffer.concat([frame.head, data, frame.tail]) }
}

/** The form as a stream of `repeat` copies of `chunk` (never the whole file in memory). */
export async function* multipartStream(frame: MultipartForm, chunk: Buffer, repeat: number): AsyncGenerator<Buffer> {
  yield frame.head
  for (let i = 0; i < repeat; i++) yield chunk
  yield frame.tail
}
