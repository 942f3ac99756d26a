// POST /api/upload at the route level (buildGateway(deps).inject(), storage
// nodes in this process): the form's fields as DESIGN §3 lists them, checked
// as they arrive; names in UTF-8 from end to end; the error mapping of bad
// forms (issue 7, bugs 1, 10 and 15).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { BlobClient } from '../../src/ports.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway-app.ts'

const NAME = 'фото café.jpg'
const MiB = 1024 * 1024

/** One part of a hand-made form: a field, or a file when it has a filename. */
interface Part {
  name: string
  value: string | Buffer
  filename?: string
  type?: string
}

/** A multipart body byte for byte as curl -F sends it: parts in order, names as raw UTF-8. */
function multipart(parts: Part[]): { payload: Buffer; headers: Record<string, string> } {
  const boundary = '------------------------mayflytest'
  const chunks: Buffer[] = []
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`
    if (part.filename !== undefined) head += `; filename="${part.filename}"\r\nContent-Type: ${part.type ?? 'application/octet-stream'}`
    chunks.push(Buffer.from(`${head}\r\n\r\n`), Buffer.from(part.value), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}

function fileOf(data: string | Buffer, filename = 'f.bin'): Part {
  return { name: 'file', value: data, filename }
}

describe('the upload form (route level)', { timeout: 120_000 }, () => {
  let gw: TestGateway
  /** storage node PUTs the blob store made, by key */
  const puts: string[] = []
  /** pending records the gateway began (metadata.beginBlob), by key */
  const begun: string[] = []

  before(async () => {
    gw = await startTestGateway({
      env: { MAYFLY_MAX_EXPIRES_IN: '604800', MAYFLY_MAX_UPLOAD_BYTES: String(8 * MiB) },
      wrapClient: (client): BlobClient => ({
        ...client,
        put: (url, key, body, options) => {
          puts.push(key)
          return client.put(url, key, body, options)
        },
      }),
    })
    const beginBlob = gw.metadata.beginBlob.bind(gw.metadata)
    gw.metadata.beginBlob = (key, now, owner) => {
      begun.push(key)
      return beginBlob(key, now, owner)
    }
  })
  after(() => gw?.close())

  const post = async (parts: Part[]) => {
    const res = await gw.app.inject({ method: 'POST', url: '/api/upload', ...multipart(parts) })
    return { status: res.statusCode, body: res.json<Record<string, unknown>>() }
  }

  test('all the fields at once with a non-ASCII name, as curl -F sends them; then downloaded with the password', async () => {
    const data = Buffer.from('bytes of a photo')
    const { status, body } = await post([
      { name: 'max_downloads', value: '2' },
      { name: 'expires_in', value: '3600' },
      { name: 'password', value: 'pw' },
      fileOf(data, NAME),
    ])
    assert.equal(status, 201, JSON.stringify(body))
    assert.equal(body.name, NAME)
    assert.equal(body.max_downloads, 2)
    assert.equal(body.downloads_remaining, 2)
    assert.equal(Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at)), 3600_000)
    const id = String(body.id)
    const stored = (await gw.metadata.getFile(id))!
    assert.equal(stored.name, NAME)
    assert.equal(stored.maxDownloads, 2)

    const url = `/api/download/${id}`
    const locked = await gw.app.inject({ url })
    assert.deepEqual([locked.statusCode, locked.json().error], [401, 'password_required'])
    const res = await gw.app.inject({ url, headers: { 'x-mayfly-password': 'pw' } })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.rawPayload, data)
    const disposition = res.headers['content-disposition'] as string
    const encoded = /filename\*=UTF-8''([^;]+)/.exec(disposition)?.[1]
    assert.equal(decodeURIComponent(encoded!), NAME, disposition)
    const fallback = /filename="([^"]*)"/.exec(disposition)?.[1]
    assert.match(fallback!, /^[\x20-\x7e]+$/, 'the fallback is ASCII')
    assert.match(fallback!, /cafe\.jpg$/)
    const info = await gw.app.inject({ url: `/api/files/${id}`, headers: { 'x-mayfly-password': 'pw' } })
    assert.deepEqual([info.json().name, info.json().downloads_remaining], [NAME, 1])

    // one download left, until the hour is up
    gw.clock.advance(3600_000 + 1000)
    const late = await gw.app.inject({ url, headers: { 'x-mayfly-password': 'pw' } })
    assert.deepEqual([late.statusCode, late.json().error], [410, 'expired'])
  })

  test('the name arrives intact from FormData (as browsers and the CLI send it) and as RFC 5987 filename*', async () => {
    const form = new FormData()
    form.append('file', new Blob(['x']), NAME)
    const fromForm = await gw.app.inject({ method: 'POST', url: '/api/upload', payload: form })
    assert.equal(fromForm.json().name, NAME)
    const boundary = 'b5987'
    const payload = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''${encodeURIComponent(NAME)}\r\n\r\nx\r\n--${boundary}--\r\n`,
    )
    const ext = await gw.app.inject({ method: 'POST', url: '/api/upload', payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } })
    assert.equal(ext.json().name, NAME)
  })

  test('a blank optional field means "not set", as a browser sends an empty number box', async () => {
    const { status, body } = await post([
      { name: 'max_downloads', value: '' },
      { name: 'expires_in', value: '' },
      { name: 'password', value: '' },
      fileOf('x'),
    ])
    assert.equal(status, 201, JSON.stringify(body))
    assert.equal(body.max_downloads, null)
    assert.equal(body.password_protected, false)
    assert.equal(Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at)), 86400_000)
  })

  test('expires_in: any whole number of seconds is capped at the maximum; 0, negatives and non-numbers are refused', async () => {
    for (const value of ['99999999999', '1'.repeat(400), ' 700000 ']) {
      const { status, body } = await post([{ name: 'expires_in', value }, fileOf('x')])
      assert.equal(status, 201, `${value}: ${JSON.stringify(body)}`)
      assert.equal(Date.parse(String(body.expires_at)) - Date.parse(String(body.created_at)), 604800_000, value)
    }
    for (const value of ['0', '000', '-5', '1.5', '1e3', 'soon', '+60']) {
      const { status, body } = await post([{ name: 'expires_in', value }, fileOf('x')])
      assert.deepEqual([status, body.error], [400, 'invalid_field'], value)
      assert.match(String(body.message), /expires_in/)
    }
  })

  test('a bad field before the file is refused before any node gets a byte of it, and leaves no pending record', async () => {
    const big = Buffer.alloc(3 * MiB, 1)
    for (const fields of [[{ name: 'max_downloads', value: '0' }], [{ name: 'max_downloads', value: 'ten' }], [{ name: 'colour', value: 'blue' }]]) {
      const putsBefore = puts.length
      const begunBefore = begun.length
      const { status, body } = await post([...fields, fileOf(big)])
      assert.equal(status, 400, JSON.stringify(body))
      assert.equal(body.error, fields[0]!.name === 'colour' ? 'unknown_field' : 'invalid_field')
      assert.equal(puts.length, putsBefore, `${fields[0]!.name}=${fields[0]!.value}: no storage node was sent the file`)
      assert.equal(begun.length, begunBefore, 'no pending record was begun')
    }
    // the same form with good fields begins its record (what the checks above count)
    const begunBefore = begun.length
    assert.equal((await post([{ name: 'max_downloads', value: '1' }, fileOf(big)])).status, 201)
    assert.equal(begun.length, begunBefore + 1)
  })

  test('a `file` sent as text (no filename) gets a message that says so', async () => {
    const { status, body } = await post([{ name: 'file', value: 'hello' }])
    assert.deepEqual([status, body.error], [400, 'missing_file'])
    assert.match(String(body.message), /filename/)
    assert.doesNotMatch(String(body.message), /unknown field/)
  })

  test('a file input left empty (what a browser sends: filename="" and no bytes) is no file, not an empty file named "file"', async () => {
    const putsBefore = puts.length
    const { status, body } = await post([{ name: 'max_downloads', value: '' }, { name: 'file', value: '', filename: '' }])
    assert.deepEqual([status, body.error], [400, 'missing_file'], JSON.stringify(body))
    assert.match(String(body.message), /no file was chosen/)
    assert.equal(puts.length, putsBefore)
  })

  test('bad forms map to clear errors', async () => {
    const expect = (res: { statusCode: number; json(): Record<string, unknown> }, status: number, code: string) => {
      assert.equal(res.statusCode, status, res.json().message as string)
      assert.equal(res.json().error, code)
      assert.equal(typeof res.json().message, 'string')
    }
    const inject = (parts: Part[]) => gw.app.inject({ method: 'POST', url: '/api/upload', ...multipart(parts) })
    expect(await inject([fileOf('a'), fileOf('b')]), 400, 'duplicate_file')
    expect(await inject([{ name: 'max_downloads', value: '3' }]), 400, 'missing_file')
    expect(await inject([{ name: 'password', value: 'a' }, { name: 'password', value: 'b' }, fileOf('x')]), 400, 'duplicate_field')
    expect(await inject([{ name: 'photo', value: 'x', filename: 'p.jpg' }]), 400, 'unexpected_field')
    expect(await inject([{ name: 'max_downloads', value: '2000000001' }, fileOf('x')]), 400, 'invalid_field')
    expect(await inject([{ name: 'password', value: 'p'.repeat(5000) }, fileOf('x')]), 400, 'invalid_field')
    // the three fields, the file and one more part
    expect(await inject([{ name: 'max_downloads', value: '1' }, { name: 'expires_in', value: '60' }, { name: 'password', value: 'p' }, fileOf('x'), { name: 'extra', value: '1' }]), 400, 'invalid_form')
    expect(await gw.app.inject({ method: 'POST', url: '/api/upload', payload: 'plain', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type')
    expect(await gw.app.inject({ method: 'POST', url: '/api/upload', payload: 'x', headers: { 'content-type': 'multipart/form-data; nothing=here' } }), 400, 'invalid_form')
    const declared = { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(9 * MiB) }
    expect(await gw.app.inject({ method: 'POST', url: '/api/upload', payload: 'x', headers: declared }), 413, 'too_large')
  })
})
