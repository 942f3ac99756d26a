// End-to-end image variant throughput: the test photos uploaded to Mayfly
// (each `copies` times), timed from the first upload until every variant of
// every one is ready or failed (GET /api/files/:id); next to raw sharp doing
// the same two variants (256 px WebP thumbnail, ≤ 2048 px compressed copy)
// on the same photos in this process (raw-sharp.ts), as many at once as the
// worker runs jobs (MAYFLY_WORKER_CONCURRENCY, default 2).
import { PHOTOS } from '../test/helpers/testdata.ts'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MayflyCluster } from './mayfly.ts'
import { multipartBody } from './multipart.ts'
import { RAW_RECIPES, type RawRecipe } from './raw-sharp.ts'

/** the test photos in the repository (test/fixtures/photos), or the directory BENCH_PHOTOS names */
export const PHOTO_DIR = process.env.BENCH_PHOTOS ?? PHOTOS
export const WORKER_CONCURRENCY = 2
const UPLOAD_CONCURRENCY = 4
const TIMEOUT_MS = 300_000

export interface Photo {
  path: string
  name: string
  form: { contentType: string; body: Buffer }
}

export interface VariantResult {
  photos: number
  seconds: number
  photosPerSec: number
  /** photos whose variants were not all ready or skipped */
  failed: number
}

export async function loadPhotos(): Promise<Photo[]> {
  const names = (await readdir(PHOTO_DIR)).filter((f) => /\.(jpe?g|png|webp|gif)$/i.test(f)).sort()
  if (names.length === 0) throw new Error(`no photos in ${PHOTO_DIR}`)
  return Promise.all(
    names.map(async (name) => {
      const path = join(PHOTO_DIR, name)
      return { path, name, form: multipartBody(await readFile(path), name, 'image/jpeg') }
    }),
  )
}

function repeat<T>(items: T[], copies: number): T[] {
  return Array.from({ length: copies }, () => items).flat()
}

/** Raw sharp: both variants of each photo with one recipe, WORKER_CONCURRENCY photos at a time. */
export async function rawSharp(photos: Photo[], copies: number, recipe: RawRecipe): Promise<VariantResult> {
  const make = RAW_RECIPES[recipe]
  await make(smallest(photos).path) // warm-up: libvips loaded, first-call costs paid
  const list = repeat(photos, copies)
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: WORKER_CONCURRENCY }, async () => {
      while (next < list.length) await make(list[next++]!.path)
    }),
  )
  const seconds = (performance.now() - started) / 1000
  return { photos: list.length, seconds, photosPerSec: list.length / seconds, failed: 0 }
}

/** Mayfly end to end: upload, queue, worker (read, sharp, store 3 copies of each variant), recorded. */
export async function mayflyVariants(cluster: MayflyCluster, photos: Photo[], copies: number): Promise<VariantResult> {
  const warm = smallest(photos)
  await waitDone(cluster, [(await cluster.upload(warm.form.contentType, warm.form.body, warm.form.body.length)).id], () => true)

  const list = repeat(photos, copies)
  const ids: string[] = []
  let next = 0
  let uploading = true
  const started = performance.now()
  const uploads = Promise.all(
    Array.from({ length: UPLOAD_CONCURRENCY }, async () => {
      while (next < list.length) {
        const { form } = list[next++]!
        ids.push((await cluster.upload(form.contentType, form.body, form.body.length)).id)
      }
    }),
  ).finally(() => {
    uploading = false
  })
  const [, failed] = await Promise.all([uploads, waitDone(cluster, ids, () => !uploading)])
  const seconds = (performance.now() - started) / 1000
  return { photos: list.length, seconds, photosPerSec: list.length / seconds, failed }
}

/**
 * Waits until every id in `ids` (which may still grow until `complete()`)
 * has no pending variant; returns how many ended with a failed one. Looks at
 * one file at a time, oldest first (jobs run roughly in upload order), so the
 * polling costs the gateway, which shares its process with the worker,
 * a few requests per second at most.
 */
async function waitDone(cluster: MayflyCluster, ids: string[], complete: () => boolean): Promise<number> {
  const deadline = Date.now() + TIMEOUT_MS
  let done = 0
  let failed = 0
  for (;;) {
    if (done < ids.length) {
      const variants = await cluster.variants(ids[done]!)
      if (!variants.some((v) => v.state === 'pending')) {
        if (variants.some((v) => v.state === 'failed')) failed++
        done++
        continue
      }
    } else if (complete()) {
      return failed
    }
    if (Date.now() > deadline) throw new Error(`variants not done after ${TIMEOUT_MS / 1000} s (${done} of ${ids.length} files)`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function smallest(photos: Photo[]): Photo {
  return photos.reduce((a, b) => (b.form.body.length < a.form.body.length ? b : a))
}
