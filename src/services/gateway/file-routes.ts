// File info and deletion (DESIGN §3). Neither counts a download.
import type { FastifyInstance } from 'fastify'
import { Forbidden, NotFound, Unauthorized } from '../../core/errors.ts'
import { isId } from '../../core/ids.ts'
import { tokenMatches } from '../../core/secrets.ts'
import type { GatewayDeps } from './deps.ts'
import type { FileLookup } from './file-lookup.ts'
import { fileInfoView, lockedFileView } from './file-view.ts'
import { passwordFromHeader, type PasswordCheck } from './link-password.ts'
import { publicBase } from './upload-routes.ts'

type IdParams = { Params: { id: string } }

export function registerFileRoutes(app: FastifyInstance, deps: GatewayDeps, files: FileLookup, checkPassword: PasswordCheck): void {
  const { metadata } = deps
  const now = deps.now ?? (() => new Date())

  app.get<IdParams>('/api/files/:id', async (req, reply) => {
    const file = await knownFile(req.params.id)
    const base = publicBase(req, deps.settings.publicUrl)
    if (file.passwordHash !== null) {
      // what a protected file is, only with its password; without one, only that it needs one
      reply.header('vary', 'X-Mayfly-Password').header('cache-control', 'private, no-store')
      const password = passwordFromHeader(req)
      if (password === undefined) return lockedFileView(base, file, now())
      await checkPassword(req, file, password)
    }
    const [variants, replicas, nodes] = await Promise.all([
      metadata.listVariants(file.id),
      metadata.listReplicas(file.blobKey),
      deps.nodes.all(),
    ])
    return fileInfoView(base, file, variants, replicas, nodes, now())
  })

  app.delete<IdParams>('/api/files/:id', async (req, reply) => {
    const file = await knownFile(req.params.id)
    const token = req.headers['x-delete-token']
    if (typeof token !== 'string' || token === '') throw new Unauthorized('send the delete token in X-Delete-Token', 'delete_token_required')
    if (!tokenMatches(token, file.deleteTokenHash)) throw new Forbidden('wrong delete token', 'wrong_delete_token')
    await metadata.deleteFile(file.id, now())
    // before the 204: no download that starts after it is served, on any gateway (after a lost invalidation: on this one; file-lookup.ts)
    await files.invalidate(file.id, { died: true })
    req.log.info({ fileId: file.id }, 'file deleted by its owner')
    return reply.status(204).send()
  })

  async function knownFile(id: string) {
    // the primary's record: the info shows counts as every gateway does
    const file = isId(id) ? await files.current(id) : null
    if (file === null || file.purgedAt !== null) throw new NotFound('no such file')
    return file
  }
}
