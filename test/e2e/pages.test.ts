// Issue 7, bugs 11 and 12, at the route level (app.inject() on buildGateway;
// storage nodes served in this process):
// - the share page's preview is a variant (counts nothing), never the
//   original; its Download control is a POST answered as an attachment, so a
//   click counts exactly one and reloading the page counts nothing;
// - errors reach a browser (Accept: text/html) as an HTML page with the same
//   status and message; API clients (curl's */*, JSON, no Accept) keep the JSON.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { startTestGateway, type TestGateway } from '../helpers/gateway-app.ts'

/** What Chromium sends when it navigates to a page or submits a form. */
const BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8'

/** A multipart/form-data body as curl -F builds it. */
function multipart(fields: Record<string, string>, file: { name: string; data: Buffer }) {
  const boundary = `----mayfly${randomBytes(8).toString('hex')}`
  const parts: Buffer[] = []
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`))
  }
  parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n`))
  parts.push(file.data, Buffer.from(`\r\n--${boundary}--\r\n`))
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}

/** Bytes a sniffer takes for a JPEG (the share page previews images). */
const jpegLike = () => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(4000)])

describe('share page and error pages', { timeout: 120_000 }, () => {
  let gw: TestGateway

  before(async () => {
    gw = await startTestGateway()
  })
  after(async () => {
    await gw?.close()
  })

  async function upload(fields: Record<string, string>, name = 'photo.jpg', data = jpegLike()): Promise<string> {
    const res = await gw.app.inject({ method: 'POST', url: '/api/upload', ...multipart(fields, { name, data }) })
    assert.equal(res.statusCode, 201, res.body)
    return (res.json() as { id: string }).id
  }

  const downloads = async (id: string) => (((await gw.app.inject({ url: `/api/files/${id}` })).json()) as { downloads: number }).downloads

  const postDownload = (id: string, body = '', accept = BROWSER) =>
    gw.app.inject({
      method: 'POST',
      url: `/f/${id}/download`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept },
      payload: body,
    })

  test('the preview is a variant, never the original', async () => {
    const id = await upload({ max_downloads: '2' })
    const page = await gw.app.inject({ url: `/f/${id}`, headers: { accept: BROWSER } })
    assert.equal(page.statusCode, 200)
    const img = /<img[^>]*class="preview"[^>]*>/.exec(page.body)?.[0]
    assert.ok(img !== undefined, `an image gets a preview:\n${page.body}`)
    assert.match(img, new RegExp(`src="/api/files/${id}/(thumbnail|variants/(compressed|thumbnail))"`))
    assert.doesNotMatch(page.body, /\/api\/download\//, 'nothing on the page points at the counted download')
    assert.equal(await downloads(id), 0, 'showing the page counts nothing')
  })

  test('the Download control saves as an attachment and counts exactly one', async () => {
    const id = await upload({ max_downloads: '2' })
    const page = await gw.app.inject({ url: `/f/${id}`, headers: { accept: BROWSER } })
    const form = /<form[^>]*>/.exec(page.body)?.[0] ?? ''
    assert.match(form, /method="post"/i, form)
    const action = /action="([^"]+)"/.exec(form)?.[1]
    assert.equal(action, `/f/${id}/download`)

    // what the browser sends when the button is clicked: an empty form
    const res = await postDownload(id)
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-disposition']), /^attachment;/, 'saved, not shown inline')
    assert.match(String(res.headers['content-disposition']), /filename\*=UTF-8''photo\.jpg/)
    assert.equal(res.rawPayload.length, Number(res.headers['content-length']))
    assert.equal(await downloads(id), 1, 'one click, one download')

    // a reload of the share page afterwards counts nothing
    await gw.app.inject({ url: `/f/${id}`, headers: { accept: BROWSER } })
    assert.equal(await downloads(id), 1)
  })

  test('the share page of a protected file shows neither its name nor its type and size, and still asks for the password', async () => {
    const name = 'salary-review-2026.pdf'
    const data = randomBytes(12_345)
    const id = await upload({ password: 'pw' }, name, data)
    const page = await gw.app.inject({ url: `/f/${id}`, headers: { accept: BROWSER } })
    assert.equal(page.statusCode, 200)
    assert.doesNotMatch(page.body, /salary-review/)
    assert.doesNotMatch(page.body, /12\.1 KiB|12345/)
    assert.match(page.body, /type="password"/)
    const open = await gw.app.inject({ url: `/f/${id}`, headers: { accept: BROWSER } })
    assert.doesNotMatch(open.body, /application\/octet-stream/)
    const unprotected = await upload({}, name, data)
    assert.match((await gw.app.inject({ url: `/f/${unprotected}`, headers: { accept: BROWSER } })).body, /salary-review-2026\.pdf/)
  })

  test('a wrong password: an HTML page for the browser, JSON for API clients, same status and message', async () => {
    const id = await upload({ password: 'right horse battery' })
    const html = await postDownload(id, 'password=wrong')
    assert.equal(html.statusCode, 401)
    assert.match(String(html.headers['content-type']), /^text\/html/)
    assert.match(html.body, /^<!doctype html>/)
    assert.match(html.body, /wrong password/)
    assert.match(html.body, new RegExp(`href="/f/${id}"`), 'a way back to the share page')
    assert.doesNotMatch(html.body, /"error"/)

    const json = await postDownload(id, 'password=wrong', '*/*')
    assert.equal(json.statusCode, 401)
    assert.match(String(json.headers['content-type']), /^application\/json/)
    assert.deepEqual(json.json(), { error: 'wrong_password', message: 'wrong password' })
  })

  test('a used-up link opened directly: an HTML 410 for the browser, JSON for curl and API clients', async () => {
    const id = await upload({ max_downloads: '1' }, 'notes.bin', randomBytes(100))
    assert.equal((await gw.app.inject({ url: `/api/download/${id}` })).statusCode, 200)

    const html = await gw.app.inject({ url: `/api/download/${id}`, headers: { accept: BROWSER } })
    assert.equal(html.statusCode, 410)
    assert.match(String(html.headers['content-type']), /^text\/html/)
    assert.match(html.body, /this link has reached its download limit/)
    assert.match(String(html.headers.vary), /accept/i)

    for (const accept of ['*/*', 'application/json', undefined, 'application/json, text/html']) {
      const res = await gw.app.inject({ url: `/api/download/${id}`, headers: accept === undefined ? {} : { accept } })
      assert.equal(res.statusCode, 410, String(accept))
      assert.match(String(res.headers['content-type']), /^application\/json/, String(accept))
      assert.deepEqual(res.json(), { error: 'download_limit_reached', message: 'this link has reached its download limit' })
    }
    assert.equal(await downloads(id), 1, 'refused requests count nothing')
  })

  test('an unknown route: HTML for a browser, JSON otherwise', async () => {
    const html = await gw.app.inject({ url: '/no/such/page', headers: { accept: BROWSER } })
    assert.equal(html.statusCode, 404)
    assert.match(String(html.headers['content-type']), /^text\/html/)
    assert.match(html.body, /no route for GET \/no\/such\/page/)
    const json = await gw.app.inject({ url: '/no/such/page' })
    assert.equal(json.statusCode, 404)
    assert.equal((json.json() as { error: string }).error, 'not_found')
  })

  test('what a user wrote is escaped on the error page', async () => {
    const res = await gw.app.inject({ url: '/<script>alert(1)</script>', headers: { accept: BROWSER } })
    assert.equal(res.statusCode, 404)
    assert.doesNotMatch(res.body, /<script>alert/)
  })
})
