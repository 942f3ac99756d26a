// libpq's multi-host connection url (DESIGN §6, MAYFLY_DATABASE_URL):
// postgres://user:pw@h1:5432,h2:5433,h3/db?opts names the members of one
// cluster. node-postgres takes one host per url, so the adapter splits the
// list into one url per member and finds the one that accepts writes itself.

/** One single-host url per member, in the order given; throws Error saying what is wrong. */
export function splitPostgresUrl(url: string): string[] {
  const m = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(.*)$/i.exec(url.trim())
  if (m === null) throw new Error('must be a postgres:// or postgresql:// url')
  const [, scheme, userinfo, hostList, rest] = m as unknown as [string, string, string | undefined, string, string]
  const hosts = hostList.split(',')
  if (hosts.some((h) => h.trim() === '')) throw new Error('names an empty host (postgres://user@h1:5432,h2:5433/db)')
  return hosts.map((host) => {
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
}
