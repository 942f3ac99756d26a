// Where the project's test photos are: test/fixtures/photos, in the
// repository (test/fixtures/README.md says where they come from and under
// which licenses), so that a clone anywhere runs its tests and benchmarks.
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url))
export const PHOTOS = join(FIXTURES, 'photos')
