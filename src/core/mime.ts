// What a file is and how it may be served. Browsers must never run uploaded
// active content (HTML, SVG, XML, scripts) from the app's origin.

/** Recognises the image formats we make variants of from their first bytes. */
export function sniffImageMime(head: Buffer): string | null {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg'
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png'
  if (head.length >= 6 && /^GIF8[79]a$/.test(head.subarray(0, 6).toString('latin1'))) return 'image/gif'
  if (head.length >= 12 && head.subarray(0, 4).toString('latin1') === 'RIFF' && head.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp'
  if (head.length >= 12 && head.subarray(4, 8).toString('latin1') === 'ftyp') {
    const brand = head.subarray(8, 12).toString('latin1')
    if (brand === 'avif' || brand === 'avis') return 'image/avif'
    if (brand === 'heic' || brand === 'heix' || brand === 'mif1') return 'image/heic'
  }
  return null
}

const MIME_SHAPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}$/

/** A declared content type, lower-cased and without parameters, or octet-stream when it is not one. */
export function normalizeMime(declared: string | undefined): string {
  const bare = (declared ?? '').split(';')[0]!.trim().toLowerCase()
  return MIME_SHAPE.test(bare) ? bare : 'application/octet-stream'
}

const INLINE_SAFE = /^(image\/(jpeg|png|gif|webp|avif)|video\/(mp4|webm|ogg)|audio\/(mpeg|ogg|wav|webm|flac|mp4)|text\/plain)$/

/** Whether a browser may show this type inline; everything else is an attachment. */
export function isInlineSafe(mime: string): boolean {
  return INLINE_SAFE.test(mime)
}

/** The Content-Type to serve: active content is sent as opaque bytes. */
export function servedMime(mime: string): string {
  return isInlineSafe(mime) || !/(html|xml|svg|javascript|ecmascript|x-sh)/.test(mime) ? mime : 'application/octet-stream'
}

/** A file name safe to keep and to echo: no path, no control characters, at most 255 bytes. */
export function cleanFileName(name: string | undefined): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? ''
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').trim()
  const trimmed = Buffer.from(clean).subarray(0, 255).toString().replace(/\uFFFD+$/, '')
  return trimmed === '' || trimmed === '.' || trimmed === '..' ? 'file' : trimmed
}

/**
 * RFC 6266 Content-Disposition: `filename*` carries the UTF-8 name (RFC 8187),
 * `filename` an ASCII fallback for old clients (accents dropped, anything
 * else non-ASCII, quotes, backslashes and % as `_`).
 */
export function contentDisposition(kind: 'inline' | 'attachment', name: string): string {
  const ascii = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\x20-\x7e]|["\\%]/g, '_')
  // encodeURIComponent leaves ' ( ) * as they are, but RFC 8187's attr-char has none of them (' ends the charset)
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encoded}`
}
