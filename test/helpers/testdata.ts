// Where the project's test photos are (../shared/testdata, see its README):
// beside this checkout, or beside the checkout it was cloned from (a clone in
// /tmp of a checkout in /work), or where MAYFLY_TESTDATA_DIR says. A missing
// directory fails loudly: tests never quietly run without their photos.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function originCheckout(): string | null {
  try {
    const url = execFileSync('git', ['-C', ROOT, 'config', '--get', 'remote.origin.url'], { encoding: 'utf8' }).trim()
    return isAbsolute(url) ? url : null
  } catch {
    return null
  }
}

function findTestdata(): string {
  const candidates = [
    process.env.MAYFLY_TESTDATA_DIR,
    join(ROOT, '..', 'shared', 'testdata'),
    ...[originCheckout()].filter((o): o is string => o !== null).map((o) => join(o, '..', 'shared', 'testdata')),
  ].filter((c): c is string => c !== undefined && c !== '')
  const found = candidates.find((c) => existsSync(join(c, 'photos')))
  if (found === undefined) {
    throw new Error(`the test photos are not in any of ${candidates.join(', ')}: set MAYFLY_TESTDATA_DIR to the shared/testdata directory`)
  }
  return resolve(found)
}

export const TESTDATA = findTestdata()
export const PHOTOS = join(TESTDATA, 'photos')
