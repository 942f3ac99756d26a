// Image variants (DESIGN §1, worker): the thumbnail and the compressed copy of
// an uploaded image, made with sharp. Pure image work: bytes or a path in,
// encoded bytes out, no Mayfly I/O. Never throws for bad input: an image sharp
// cannot read is a `failed` outcome with its reason (DESIGN §5.10).
//
// Rules:
// - thumbnail: fits inside 256×256, WebP q80, first frame of an animation,
//   made from the compressed copy when there is one (one decode of the original);
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

// Threads per libvips pipeline: half the cores, as a worker runs several jobs
// at once (MAYFLY_WORKER_CONCURRENCY): 1 on a 2-core machine, which is also
// sharp's own default on glibc, where more threads mostly fragment memory.
// Measured on 2 cores: 2 threads per pipeline gained nothing (the mozjpeg
// encoder, most of the work, runs on one thread). The operation cache only
// pays off for repeated identical work, which a worker that sees every image
// once never does; off, it holds no memory.
sharp.concurrency(Math.max(1, Math.floor(availableParallelism() / 2)))
sharp.cache(false)

const INPUT_OPTIONS: SharpOptions = {
  limitInputPixels: MAX_INPUT_PIXELS,
  // untrusted input: any decoder warning (a truncated JPEG) is a failure
  failOn: 'warning',
}

/**
 * Makes the named variants (both by default) of one image; results come in
 * the order of `names`. The original is decoded once: the compressed copy
 * first, then the thumbnail from that copy's bytes (2048 px at most, already
 * upright and sRGB), so a large or progressive JPEG is not decoded a second
 * time. This saves ~12% CPU per photo against two pipelines on the original;
 * the extra lossy step is invisible at thumbnail scale. Only when the
 * compressed copy is not wanted or could not be made does the thumbnail read
 * the original (a JPEG then decodes at 1/8 scale, shrink-on-load).
 */
export async function makeVariants(
  input: Buffer | string,
  originalSize: number,
  names: readonly VariantName[] = VARIANT_NAMES,
): Promise<VariantResult[]> {
  const probe = await probeImage(input)
  if ('reason' in probe) return names.map((name) => ({ name, ...probe }))
  const outcomes = new Map<VariantName, VariantOutcome>()
  let thumbnailSource: Buffer | string = input
  if (names.includes('compressed')) {
    const compressed = await makeCompressed(input, probe.meta)
    if ('reason' in compressed) {
      outcomes.set('compressed', compressed)
    } else {
      thumbnailSource = compressed.data
      outcomes.set('compressed', compressed.data.length < originalSize
        ? { state: 'ready', ...compressed }
        : { state: 'skipped', reason: NOT_SMALLER })
    }
  }
  if (names.includes('thumbnail')) outcomes.set('thumbnail', await makeThumbnail(thumbnailSource))
  return names.map((name) => {
    const outcome = outcomes.get(name)
    if (outcome === undefined) throw new Error(`unreachable: no outcome for ${name}`)
    return { name, ...outcome }
  })
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

interface Encoded {
  data: Buffer
  mime: string
  width: number
  height: number
}

type Failure = { state: 'failed' | 'skipped'; reason: string }

/** The compressed copy, whatever its size (the caller compares it with the original). */
async function makeCompressed(input: Buffer | string, meta: Metadata): Promise<Encoded | Failure> {
  const frames = meta.pages ?? 1
  const animated = frames > 1 && (meta.format === 'gif' || meta.format === 'webp')
  if (animated && meta.width * frameHeight(meta) * frames > MAX_INPUT_PIXELS) {
    return { state: 'skipped', reason: tooLarge('animation', meta.width * frameHeight(meta) * frames) }
  }
  try {
    const resized = pipeline(input, animated ? { pages: -1 } : {})
      .resize(COMPRESSED_BOX, COMPRESSED_BOX, { fit: 'inside', withoutEnlargement: true })
    if (meta.format === 'jpeg') return { mime: 'image/jpeg', ...(await encode(resized.jpeg({ quality: QUALITY, mozjpeg: true }))) }
    return { mime: 'image/webp', ...(await encode(resized.webp({ quality: QUALITY }))) }
  } catch (err) {
    return { state: 'failed', reason: `could not convert the image: ${messageOf(err)}` }
  }
}

/** A still WebP: the default `pages: 1` reads only the first frame of an animation. */
async function makeThumbnail(input: Buffer | string): Promise<VariantOutcome> {
  try {
    const resized = pipeline(input, {}).resize(THUMBNAIL_BOX, THUMBNAIL_BOX, { fit: 'inside', withoutEnlargement: true })
    return { state: 'ready', mime: 'image/webp', ...(await encode(resized.webp({ quality: QUALITY }))) }
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
