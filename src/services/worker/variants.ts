// Image variants (DESIGN §1, worker): the thumbnail and the compressed copy of
// an uploaded image, made with sharp. Pure image work: bytes or a path in,
// encoded bytes out, no Mayfly I/O. Never throws for bad input: an image sharp
// cannot read is a `failed` outcome with its reason (DESIGN §5.10).
//
// Rules:
// - thumbnail: fits inside 256×256, WebP q80, first frame of an animation;
// - compressed: fits inside 2048×2048, never enlarged; JPEG in -> JPEG out
//   (mozjpeg q80), anything else -> WebP q80; an animated GIF/WebP stays
//   animated (animated WebP); kept only when smaller than the original;
// - both: EXIF orientation applied, then every piece of metadata dropped
//   (sharp writes none unless asked with keepMetadata/withMetadata: no EXIF,
//   no GPS, no ICC: pixels are converted to sRGB);
// - inputs over MAX_INPUT_PIXELS are refused before decoding (bombs; an
//   animation counts all its frames for the compressed copy), and
//   every pipeline has a timeout so a pathological file cannot hang a worker.
import { availableParallelism } from 'node:os'
import sharp, { type Metadata, type Sharp, type SharpOptions } from 'sharp'
import { VARIANT_NAMES, type VariantName } from '../../core/file.ts'

export type VariantOutcome =
  | { state: 'ready'; data: Buffer; mime: string; width: number; height: number }
  | { state: 'skipped' | 'failed'; reason: string }

export type VariantResult = VariantOutcome & { name: VariantName }

/** Largest input we decode, in pixels (all frames of an animation together). 100 MP ≈ 300 MB of RGB. */
export const MAX_INPUT_PIXELS = 100_000_000
/** A pipeline running longer than this is abandoned (sharp's own timeout). */
export const PIPELINE_TIMEOUT_SECONDS = 60

export const THUMBNAIL_BOX = 256
export const COMPRESSED_BOX = 2048
export const QUALITY = 80

export const NOT_SMALLER = 'not smaller than the original'

// The worker runs the two variants of an image side by side, so each libvips
// pipeline gets half the cores (1 on a 2-core machine, which is also sharp's
// own default on glibc, where more threads mostly fragment memory). The
// operation cache only pays off for repeated identical work, which a worker
// that sees every image once never does; off, it holds no memory.
sharp.concurrency(Math.max(1, Math.floor(availableParallelism() / 2)))
sharp.cache(false)

const INPUT_OPTIONS: SharpOptions = {
  limitInputPixels: MAX_INPUT_PIXELS,
  // untrusted input: any decoder warning (a truncated JPEG) is a failure
  failOn: 'warning',
}

/**
 * Makes the named variants (both by default) of one image. The header is read
 * once; each variant then runs its own pipeline on the same input, so a JPEG's
 * thumbnail decodes at 1/8 scale (shrink-on-load) instead of sharing a full
 * decode. The two run in parallel. Results come in the order of `names`.
 */
export async function makeVariants(
  input: Buffer | string,
  originalSize: number,
  names: readonly VariantName[] = VARIANT_NAMES,
): Promise<VariantResult[]> {
  const probe = await probeImage(input)
  if ('reason' in probe) return names.map((name) => ({ name, ...probe }))
  return Promise.all(names.map(async (name) => ({ name, ...(await render(name, input, probe.meta, originalSize)) })))
}

/** One variant of one image. */
export async function makeVariant(name: VariantName, input: Buffer | string, originalSize: number): Promise<VariantOutcome> {
  const [result] = await makeVariants(input, originalSize, [name])
  if (result === undefined) throw new Error('unreachable: one name, one result')
  const { name: _name, ...outcome } = result
  return outcome
}

type Probe = { meta: Metadata } | { state: 'failed'; reason: string }

async function probeImage(input: Buffer | string): Promise<Probe> {
  let meta: Metadata
  try {
    // header only, nothing decoded yet: no pixel limit here, so that the check below can say why
    meta = await sharp(input, { ...INPUT_OPTIONS, limitInputPixels: false }).metadata()
  } catch (err) {
    return { state: 'failed', reason: `not a readable image: ${messageOf(err)}` }
  }
  // sharp checks limitInputPixels too; this says why in megapixels, before any decoding
  const pixels = meta.width * frameHeight(meta)
  if (pixels > MAX_INPUT_PIXELS) return { state: 'failed', reason: tooLarge('image', pixels) }
  return { meta }
}

async function render(name: VariantName, input: Buffer | string, meta: Metadata, originalSize: number): Promise<VariantOutcome> {
  const frames = meta.pages ?? 1
  const animated = frames > 1 && (meta.format === 'gif' || meta.format === 'webp')
  try {
    if (name === 'thumbnail') {
      // default pages: 1, the first frame: a still thumbnail is what a list of files shows
      const out = await encode(
        pipeline(input, {}).resize(THUMBNAIL_BOX, THUMBNAIL_BOX, { fit: 'inside', withoutEnlargement: true }).webp({ quality: QUALITY }),
      )
      return { state: 'ready', mime: 'image/webp', ...out }
    }
    if (animated && meta.width * frameHeight(meta) * frames > MAX_INPUT_PIXELS) {
      return { state: 'skipped', reason: tooLarge('animation', meta.width * frameHeight(meta) * frames) }
    }
    const resized = pipeline(input, animated ? { pages: -1 } : {})
      .resize(COMPRESSED_BOX, COMPRESSED_BOX, { fit: 'inside', withoutEnlargement: true })
    const jpeg = meta.format === 'jpeg'
    const out = await encode(jpeg ? resized.jpeg({ quality: QUALITY, mozjpeg: true }) : resized.webp({ quality: QUALITY }))
    if (out.data.length >= originalSize) return { state: 'skipped', reason: NOT_SMALLER }
    return { state: 'ready', mime: jpeg ? 'image/jpeg' : 'image/webp', ...out }
  } catch (err) {
    return { state: 'failed', reason: `could not convert the image: ${messageOf(err)}` }
  }
}

function pipeline(input: Buffer | string, options: SharpOptions): Sharp {
  return sharp(input, { ...INPUT_OPTIONS, ...options }).autoOrient().timeout({ seconds: PIPELINE_TIMEOUT_SECONDS })
}

async function encode(image: Sharp): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await image.toBuffer({ resolveWithObject: true })
  // an animation's info.height is every frame stacked; the displayed height is one page
  return { data, width: info.width, height: info.pageHeight ?? info.height }
}

function frameHeight(meta: Metadata): number {
  return meta.pageHeight ?? meta.height
}

function tooLarge(what: string, pixels: number): string {
  return `${what} too large: ${Math.round(pixels / 1e6)} megapixels (limit ${MAX_INPUT_PIXELS / 1e6})`
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * The same two variants of a file with plain sharp and nothing else (no
 * header probe, no checks, default sharp settings otherwise): the benchmark's
 * reference for what makeVariants costs on top of raw sharp.
 */
export async function rawSharpBaseline(path: string): Promise<void> {
  await Promise.all([
    sharp(path).autoOrient().resize(THUMBNAIL_BOX, THUMBNAIL_BOX, { fit: 'inside', withoutEnlargement: true })
      .webp({ quality: QUALITY }).toBuffer(),
    sharp(path).autoOrient().resize(COMPRESSED_BOX, COMPRESSED_BOX, { fit: 'inside', withoutEnlargement: true })
      .jpeg({ quality: QUALITY, mozjpeg: true }).toBuffer(),
  ])
}
