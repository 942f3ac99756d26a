// The configuration names of DESIGN §6 in the forms operators write them
// (issue 7, bug 9: libpq's multi-host url and a list of brokers were refused).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, loadConfig } from '../../src/config.ts'

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env)
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    return err.problems
  }
  return []
}

test("MAYFLY_DATABASE_URL takes one url or libpq's multi-host form", () => {
  for (const url of [
    'postgres://mayfly@db:5432/mayfly',
    'postgres://mayfly:pw@h1:5432,h2:5433,h3:5434/mayfly',
    'postgresql://u@h1,h2/db?target_session_attrs=read-write',
    'postgres://u@[::1]:5432,127.0.0.1:5433/db',
  ]) {
    assert.equal(loadConfig({ MAYFLY_DATABASE_URL: url }).MAYFLY_DATABASE_URL, url)
  }
  assert.equal(loadConfig({ MAYFLY_DATABASE_URL: ' ' }).MAYFLY_DATABASE_URL, undefined)
})

test('MAYFLY_DATABASE_READ_URLS: a comma starts a new url only at a scheme, so each may list hosts', () => {
  const c = loadConfig({ MAYFLY_DATABASE_READ_URLS: 'postgres://u@r1:5432,r2:5433/db, postgresql://u@r3/db' })
  assert.deepEqual(c.MAYFLY_DATABASE_READ_URLS, ['postgres://u@r1:5432,r2:5433/db', 'postgresql://u@r3/db'])
})

test('MAYFLY_AMQP_URL is the list of a cluster\'s brokers', () => {
  const c = loadConfig({ MAYFLY_AMQP_URL: 'amqp://guest:guest@r1:5672, amqp://guest:guest@r2:5673,amqps://r3' })
  assert.deepEqual(c.MAYFLY_AMQP_URL, ['amqp://guest:guest@r1:5672', 'amqp://guest:guest@r2:5673', 'amqps://r3'])
  assert.equal(loadConfig({}).MAYFLY_AMQP_URL, undefined)
})

test('status visibility, trusted proxies and the CLI url', () => {
  assert.equal(loadConfig({}).MAYFLY_PUBLIC_STATUS, undefined, 'absent: the command decides')
  assert.equal(loadConfig({ MAYFLY_PUBLIC_STATUS: 'true' }).MAYFLY_PUBLIC_STATUS, true)
  assert.equal(loadConfig({ MAYFLY_PUBLIC_STATUS: '0' }).MAYFLY_PUBLIC_STATUS, false)
  assert.deepEqual(loadConfig({ MAYFLY_TRUSTED_PROXIES: '10.0.0.1, ::1' }).MAYFLY_TRUSTED_PROXIES, ['10.0.0.1', '::1'])
  assert.equal(loadConfig({}).MAYFLY_URL, 'http://localhost:5000')
})

test('every bad value is reported, each under its name', () => {
  const found = problems({
    MAYFLY_DATABASE_URL: 'postgres://u@h1:5432,,h3/db',
    MAYFLY_DATABASE_READ_URLS: 'mysql://r1/db',
    MAYFLY_AMQP_URL: 'http://broker',
    MAYFLY_PUBLIC_STATUS: 'maybe',
    MAYFLY_TRUSTED_PROXIES: 'proxy.local',
    MAYFLY_URL: 'ftp://x',
  })
  for (const name of ['MAYFLY_DATABASE_URL', 'MAYFLY_DATABASE_READ_URLS', 'MAYFLY_AMQP_URL', 'MAYFLY_PUBLIC_STATUS', 'MAYFLY_TRUSTED_PROXIES', 'MAYFLY_URL']) {
    assert.ok(found.some((p) => p.startsWith(name)), `${name} in ${JSON.stringify(found)}`)
  }
})
