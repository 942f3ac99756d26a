// libpq's multi-host connection url (DESIGN §6, MAYFLY_DATABASE_URL):
// postgres://user:pw@h1:5432,h2:5433,h3/db?opts names the members of one
// cluster. node-postgres takes one host per url, so the adapter splits the
// list into one url per member and finds the one that accepts writes itself
// (pg-db.ts).

/** the values of libpq's target_session_attrs that Mayfly implements */
const SESSION_ATTRS = ['read-write', 'any']

/** One single-host url per member, in the order given; throws Error saying what is wrong. */
export function splitPostgresUrl(url: string): string[] {
  const m = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(.*)$/i.exec(url.trim())
  if (m === null) throw new Error('must be a postgres:// or postgresql:// url')
  const [, scheme, userinfo, hostList, rest] = m as unknown as [string, string, string | undefined, string, string]
  const hosts = hostList.split(',')
  if (hosts.some((h) => h.trim() === '')) throw new Error('names an empty host (postgres://user@h1:5432,h2:5433/db)')
  const members = hosts.map((host) => {
    const single = `${scheme}${userinfo === undefined ? '' : `${userinfo}@`}${host.trim()}${rest}`
    let parsed: URL
    try {
      parsed = new URL(single)
    } catch {
      throw new Error(`host ${JSON.stringify(host)} is not host[:port]`)
    }
    if (parsed.hostname === '') throw new Error(`host ${JSON.stringify(host)} is not host[:port]`)
    return single
  })
  const attrs = new URL(members[0]!).searchParams.get('target_session_attrs')
  if (attrs !== null && !SESSION_ATTRS.includes(attrs)) {
    throw new Error(`target_session_attrs must be ${SESSION_ATTRS.join(' or ')}, got ${JSON.stringify(attrs)}`)
  }
  return members
}

/**
 * Whether only a member that accepts writes will do (libpq's
 * target_session_attrs=read-write): as the url says, else when it names
 * several members (DESIGN §6: writes go to the one that accepts them). A
 * single url (a server, or HAProxy in front of Patroni) takes what it reaches.
 */
export function wantsReadWrite(url: string): boolean {
  const members = splitPostgresUrl(url)
  const attrs = new URL(members[0]!).searchParams.get('target_session_attrs')
  return attrs === null ? members.length > 1 : attrs === 'read-write'
}

/** host:port of one member's url, never its credentials. */
export function memberName(memberUrl: string): string {
  const u = new URL(memberUrl)
  return `${u.hostname}:${u.port || '5432'}`
}

/** host:port,…/db of a url (one member or several), never its credentials. */
export function describePostgresUrl(url: string): string {
  try {
    const members = splitPostgresUrl(url)
    return `${members.map(memberName).join(',')}${new URL(members[0]!).pathname}`
  } catch {
    return '(invalid url)'
  }
}
