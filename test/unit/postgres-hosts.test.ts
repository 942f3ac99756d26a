// libpq's multi-host url as the PostgreSQL adapter reads it (hosts.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { describePostgresUrl, splitPostgresUrl, wantsReadWrite } from '../../src/adapters/postgres/hosts.ts'

test('a multi-host url splits into one url per member, keeping credentials, database and options', () => {
  assert.deepEqual(splitPostgresUrl('postgres://u:pw@h1:5432,h2:5433,h3/mayfly?sslmode=disable'), [
    'postgres://u:pw@h1:5432/mayfly?sslmode=disable',
    'postgres://u:pw@h2:5433/mayfly?sslmode=disable',
    'postgres://u:pw@h3/mayfly?sslmode=disable',
  ])
  assert.throws(() => splitPostgresUrl('postgres://u@h1,,h2/db'), /empty host/)
  assert.throws(() => splitPostgresUrl('mysql://h1/db'), /postgres:\/\//)
})

test('only a member that takes writes will do when the url says so or names several members', () => {
  assert.equal(wantsReadWrite('postgres://u@h1:5432,h2:5433/db'), true)
  assert.equal(wantsReadWrite('postgres://u@haproxy:5000/db'), false)
  assert.equal(wantsReadWrite('postgres://u@haproxy:5000/db?target_session_attrs=read-write'), true)
  assert.equal(wantsReadWrite('postgres://u@h1,h2/db?target_session_attrs=any'), false)
  assert.throws(() => splitPostgresUrl('postgres://u@h1,h2/db?target_session_attrs=standby'), /target_session_attrs must be read-write or any/)
})

test('a url is described without its credentials', () => {
  assert.equal(describePostgresUrl('postgres://u:secret@h1:5432,h2/mayfly'), 'h1:5432,h2:5432/mayfly')
  assert.equal(describePostgresUrl('nonsense'), '(invalid url)')
})
