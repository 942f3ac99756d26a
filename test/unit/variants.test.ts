// Image variants on the real photos of test/fixtures/photos and on images the
// tests make: rotated, geotagged, transparent, animated, tiny, corrupt, bombs.
import { describe, test } from 'node:test'
import { PHOTOS } from '../helpers/http.ts'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import sharp, { type Metadata } from 'sharp'
import {
  COMPRESSED_BOX, MAX_INPUT_PIXELS, NOT_SMALLER, THUMBNAIL_BOX,
  makeVariant, makeVariants, rawSharpBaseline, type VariantOutcome, type VariantResult,
} from '../../src/services/worker/variants.ts'

const photos = readdirSync(PHOTOS).filter((f) => f.endsWith('.jpg')).sort().map((f) => join(PHOTOS, f))

function ready(outcome: VariantOutcome | undefined): Extract<VariantOutcome, { state: 'ready' }> {
  assert.ok(outcome !== undefined)
  assert.equal(outcome.state, 'ready', outcome.state === 'ready' ? '' : outcome.reason)
  return outcome
}

function byName(results: VariantResult[], name: string): VariantResult {
  const found = results.find((r) => r.name === name)
  assert.ok(found, `no ${name} result`)
  return found
}

/** The output really is what the outcome claims, and carries no metadata at all. */
async function assertClean(outcome: Extract<VariantOutcome, { state: 'ready' }>): Promise<Metadata> {
  const meta = await sharp(outcome.data).metadata()
  assert.equal(`image/${meta.format}`, outcome.mime)
  assert.equal(meta.width, outcome.width)
  assert.equal(meta.pageHeight ?? meta.height, outcome.height)
  assert.equal(meta.exif, undefined, 'no EXIF')
  assert.equal(meta.xmp, undefined, 'no XMP')
  assert.equal(meta.iptc, undefined, 'no IPTC')
  assert.equal(meta.icc, undefined, 'no ICC profile')
  assert.equal(meta.orientation, undefined, 'no orientation tag')
  return meta
}

describe('variants of the real photos', () => {
  assert.equal(photos.length, 7, `expected the 7 test photos in ${PHOTOS}`)
  for (const path of photos) {
    test(path.split('/').pop() ?? path, async () => {
      const original = readFileSync(path)
      const source = await sharp(original).metadata()
      const results = await makeVariants(original, original.length)
      assert.deepEqual(results.map((r) => r.name), ['thumbnail', 'compressed'])

      const thumb = ready(byName(results, 'thumbnail'))
      assert.equal(thumb.mime, 'image/webp')
      assert.ok(thumb.width <= THUMBNAIL_BOX && thumb.height <= THUMBNAIL_BOX)
      assert.ok(thumb.width === THUMBNAIL_BOX || thumb.height === THUMBNAIL_BOX, 'fills the box on its long side')
      assertSameShape(thumb, source)
      await assertClean(thumb)

      const compressed = byName(results, 'compressed')
      if (compressed.state === 'skipped') {
        assert.equal(compressed.reason, NOT_SMALLER)
      } else {
        const c = ready(compressed)
        assert.equal(c.mime, 'image/jpeg', 'JPEG stays JPEG')
        assert.ok(c.data.length < original.length, 'smaller than the original')
        assert.ok(c.width <= COMPRESSED_BOX && c.height <= COMPRESSED_BOX)
        assert.equal(Math.max(c.width, c.height), Math.min(COMPRESSED_BOX, Math.max(source.width, source.height)))
        assertSameShape(c, source)
        await assertClean(c)
      }
    })
  }

  test('a path works as input, and one variant alone', async () => {
    const path = photos[0]
    assert.ok(path !== undefined)
    const thumb = ready(await makeVariant('thumbnail', path, statSync(path).size))
    assert.equal(thumb.mime, 'image/webp')
    assert.ok(Math.max(thumb.width, thumb.height) === THUMBNAIL_BOX)
  })

  test('rawSharpBaseline does the same work without failing', async () => {
    const path = photos[0]
    assert.ok(path !== undefined)
    await rawSharpBaseline(path)
  })
})

function assertSameShape(out: { width: number; height: number }, source: Metadata): void {
  const want = source.width / source.height
  const got = out.width / out.height
  assert.ok(Math.abs(got - want) / want < 0.02, `aspect ratio ${got} vs ${want}`)
}

describe('orientation and metadata', () => {
  test('EXIF orientation is applied and the GPS position is gone', async () => {
    // 400×200: top half red, bottom half blue; orientation 6 means "rotate 90° clockwise to display",
    // so upright the picture is 200×400 with red on the right and blue on the left.
    const width = 400
    const height = 200
    const raw = Buffer.alloc(width * height * 3)
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) raw.set(y < height / 2 ? [220, 20, 20] : [20, 20, 220], (y * width + x) * 3)
    }
    const geotagged = await sharp(raw, { raw: { width, height, channels: 3 } })
      .withExif({
        IFD0: { Copyright: 'mayfly test', Make: 'MayflyCam' },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 30/1', GPSLongitudeRef: 'E', GPSLongitude: '2/1 17/1 40/1', GPSMapDatum: 'WGS-84' },
      })
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 95 })
      .toBuffer()
    const source = await sharp(geotagged).metadata()
    assert.equal(source.orientation, 6)
    assert.ok(source.exif?.includes('WGS-84'), 'the test image does carry GPS data')

    const results = await makeVariants(geotagged, geotagged.length)
    for (const result of results) {
      const out = ready(result)
      await assertClean(out)
      assert.ok(!out.data.includes('WGS-84') && !out.data.includes('MayflyCam'), `${result.name}: no EXIF bytes left`)
      assert.ok(out.height > out.width, `${result.name} is upright (portrait)`)
      const { data, info } = await sharp(out.data).removeAlpha().raw().toBuffer({ resolveWithObject: true })
      const pixel = (x: number, y: number): number[] => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)]
      const mid = Math.floor(info.height / 2)
      const [lr, , lb] = pixel(2, mid)
      const [rr, , rb] = pixel(info.width - 3, mid)
      assert.ok(lb! > 150 && lr! < 100, `${result.name}: blue on the left`)
      assert.ok(rr! > 150 && rb! < 100, `${result.name}: red on the right`)
    }
    const compressed = ready(byName(results, 'compressed'))
    assert.deepEqual([compressed.width, compressed.height], [200, 400], 'never enlarged')
  })
})

describe('other formats', () => {
  test('a PNG with transparency: compressed is WebP and keeps the alpha channel', async () => {
    const png = await sharp(photos[1]).resize(1200).ensureAlpha(0.5).png().toBuffer()
    const results = await makeVariants(png, png.length)
    for (const result of results) {
      const out = ready(result)
      assert.equal(out.mime, 'image/webp')
      const meta = await assertClean(out)
      assert.equal(meta.hasAlpha, true, `${result.name} keeps transparency`)
    }
    const compressed = ready(byName(results, 'compressed'))
    assert.equal(compressed.width, 1200)
    assert.ok(compressed.data.length < png.length)
  })

  test('a tiny image whose compressed copy would not be smaller: skipped', async () => {
    const tiny = await sharp({ create: { width: 10, height: 10, channels: 3, background: '#336699' } }).jpeg().toBuffer()
    const [thumb, compressed] = await makeVariants(tiny, tiny.length)
    assert.deepEqual([ready(thumb).width, ready(thumb).height], [10, 10], 'a thumbnail is never enlarged')
    assert.deepEqual(compressed, { name: 'compressed', state: 'skipped', reason: NOT_SMALLER })
  })

  test('an animated GIF: a still thumbnail of the first frame, an animated WebP compressed copy', async () => {
    const width = 320
    const frameHeight = 200
    const frames = 4
    // each frame a different crop of a photo, so that frames differ
    const strips = await Promise.all(Array.from({ length: frames }, (_, i) =>
      sharp(photos[2]).extract({ left: i * 300, top: i * 100, width, height: frameHeight }).removeAlpha().raw().toBuffer()))
    const gif = await sharp(Buffer.concat(strips), { raw: { width, height: frameHeight * frames, channels: 3, pageHeight: frameHeight } })
      .gif({ delay: Array(frames).fill(100), loop: 0 })
      .toBuffer()
    const source = await sharp(gif).metadata()
    assert.equal(source.pages, frames)

    const [thumbResult, compressedResult] = await makeVariants(gif, gif.length)
    const thumb = ready(thumbResult)
    assert.equal(thumb.mime, 'image/webp')
    assert.deepEqual([thumb.width, thumb.height], [256, 160])
    const thumbMeta = await assertClean(thumb)
    assert.ok((thumbMeta.pages ?? 1) === 1, 'a still thumbnail')
    const [firstFrame] = strips
    assert.ok(firstFrame !== undefined)
    const expected = await sharp(firstFrame, { raw: { width, height: frameHeight, channels: 3 } }).resize(256).raw().toBuffer()
    const got = await sharp(thumb.data).removeAlpha().raw().toBuffer()
    assert.ok(meanAbsoluteDifference(expected, got) < 12, 'the thumbnail shows the first frame')

    const compressed = ready(compressedResult)
    assert.equal(compressed.mime, 'image/webp')
    assert.deepEqual([compressed.width, compressed.height], [width, frameHeight])
    const meta = await sharp(compressed.data, { pages: -1 }).metadata()
    assert.equal(meta.pages, frames, 'still animated')
    assert.ok(compressed.data.length < gif.length)
  })
})

function meanAbsoluteDifference(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length)
  let sum = 0
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!)
  return sum / a.length
}

describe('bad input fails cleanly', () => {
  test('a truncated JPEG', async () => {
    const whole = readFileSync(photos[0]!)
    const truncated = whole.subarray(0, Math.floor(whole.length / 2))
    for (const result of await makeVariants(truncated, truncated.length)) {
      assert.equal(result.state, 'failed', result.name)
      assert.ok(result.state === 'failed' && result.reason.length > 0)
    }
  })

  test('random bytes labelled as an image', async () => {
    const junk = randomBytes(64 * 1024)
    const results = await makeVariants(junk, junk.length)
    assert.deepEqual(results.map((r) => r.state), ['failed', 'failed'])
    for (const r of results) assert.match(r.state === 'failed' ? r.reason : '', /not a readable image/)
  })

  test('an empty file, and a missing path', async () => {
    assert.equal((await makeVariant('thumbnail', Buffer.alloc(0), 0)).state, 'failed')
    assert.equal((await makeVariant('compressed', '/nonexistent/mayfly.jpg', 1)).state, 'failed')
  })

  test('a decompression bomb is refused before decoding', async () => {
    // a valid PNG header claiming 20000×20000 (400 MP) over a few bytes of data
    const bomb = pngClaiming(20_000, 20_000)
    assert.ok(20_000 * 20_000 > MAX_INPUT_PIXELS)
    const results = await makeVariants(bomb, bomb.length)
    for (const r of results) {
      assert.equal(r.state, 'failed')
      assert.match(r.state === 'failed' ? r.reason : '', /too large: 400 megapixels/)
    }
  })
})

function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const out = Buffer.alloc(8 + data.length + 4)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(crc32(body), 8 + data.length)
    return out
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 2, 0, 0, 0], 8) // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}
