// Raw sharp references for the variant phase: the two variants of a photo
// made with sharp directly, no Mayfly I/O (no upload, queue, blob reads,
// replicated writes or metadata) and none of the worker's checks (no header
// probe, no pixel limits, no timeouts). Two recipes, and the faster one is the
// reference, so that the worker cannot look better than raw sharp by doing
// less image work than the reference does:
// - 'pipelines': rawSharpBaseline from src/services/worker/variants.ts, two
//   pipelines on the original at once (thumbnail with JPEG shrink-on-load);
// - 'chained': the worker's own recipe, the compressed copy first, then the
//   thumbnail from its bytes (one full decode of the original).
// Importing variants.ts gives this process the worker's sharp settings
// (libvips threads per pipeline, no operation cache).
import sharp from 'sharp'
import { COMPRESSED_BOX, QUALITY, rawSharpBaseline, THUMBNAIL_BOX } from '../src/services/worker/variants.ts'

export type RawRecipe = 'pipelines' | 'chained'

export const RAW_RECIPES: Record<RawRecipe, (path: string) => Promise<void>> = {
  pipelines: rawSharpBaseline,
  chained: async (path) => {
    const box = { fit: 'inside', withoutEnlargement: true } as const
    // the test photos are JPEGs: the worker keeps a JPEG a (mozjpeg) JPEG
    const compressed = await sharp(path).autoOrient().resize(COMPRESSED_BOX, COMPRESSED_BOX, box).jpeg({ quality: QUALITY, mozjpeg: true }).toBuffer()
    await sharp(compressed).resize(THUMBNAIL_BOX, THUMBNAIL_BOX, box).webp({ quality: QUALITY }).toBuffer()
  },
}
