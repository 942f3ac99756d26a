// Content-Disposition of a download (RFC 6266): the UTF-8 name in filename*
// (RFC 8187, whose attr-char excludes ' ( ) *), an ASCII fallback in filename.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { contentDisposition } from '../../src/core/mime.ts'

/** The value of filename*=UTF-8''…, decoded, failing on any character RFC 8187 does not allow there. */
function extended(header: string): string {
  const value = /filename\*=UTF-8''(.*)$/.exec(header)?.[1]
  assert.ok(value !== undefined, header)
  assert.match(value, /^([A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-F]{2})*$/, `only attr-char and %XX: ${value}`)
  return decodeURIComponent(value)
}

test('a non-ASCII name: filename* carries it whole, filename an ASCII fallback without the accents', () => {
  const header = contentDisposition('attachment', 'фото café.jpg')
  assert.equal(extended(header), 'фото café.jpg')
  assert.match(header, /^attachment; filename="____ cafe\.jpg"; /)
})

test("quotes, apostrophes, parentheses and stars survive both forms", () => {
  const name = `it's "my" (1st)*.png`
  const header = contentDisposition('inline', name)
  assert.equal(extended(header), name)
  assert.equal(/filename="([^"]*)"/.exec(header)?.[1], "it's _my_ (1st)*.png")
})
